# Skin lesion pipeline: `make help` lists every target.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed

# `make demo DATA=<ISIC folder> ARCH=<architecture>`; empty DATA means the generated sample.
DATA ?=
ARCH ?=
DEMO_DIR ?= build/demo
REAL_DATA ?= $(abspath ../shared/data/ham10000)
ISIC_DIR ?= build/isic2019

.PHONY: help venv demo test test-fast lint sample-data data clean

# Colour only on a terminal (and not under NO_COLOR); the name column is as wide as the longest.
help: ## Show this help
	@colour=0; [ -t 1 ] && [ -z "$${NO_COLOR:-}" ] && colour=1; \
	grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | sort -u | \
		awk -v colour=$$colour 'BEGIN {FS = ":.*?## "} \
			{name[NR] = $$1; text[NR] = $$2; if (length($$1) > width) width = length($$1)} \
			END {for (i = 1; i <= NR; i++) { cell = sprintf("%-" width "s", name[i]); \
				if (colour) cell = "\033[36m" cell "\033[0m"; printf "  %s  %s\n", cell, text[i] }}'

# pip's own output (hundreds of lines on some machines) goes to .venv/install.log; on a
# failure its tail is shown.
$(STAMP): pyproject.toml
	@echo "Installing the project and its tools into $(VENV) (a few minutes the first time; log: $(VENV)/install.log)"
	@$(PYTHON) -m venv $(VENV)
	@{ $(BIN)/pip install --upgrade pip && $(BIN)/pip install -e '.[dev]'; } > $(VENV)/install.log 2>&1 \
		|| { tail -n 30 $(VENV)/install.log; echo "pip failed: see $(VENV)/install.log" >&2; \
			if grep -q "No space left on device" $(VENV)/install.log; then \
				echo "pip ran out of disk space: the venv takes about 7 GB (on x86_64, torch's CUDA build and its libraries), and pip unpacks in TMPDIR (now $${TMPDIR:-/tmp}) first. Free: $$(df -h --output=avail $(VENV) | tail -n 1 | tr -d ' ') where $(VENV) lives, $$(df -h --output=avail $${TMPDIR:-/tmp} | tail -n 1 | tr -d ' ') in TMPDIR." >&2; \
			fi; exit 1; }
	@touch $@

venv: $(STAMP) ## Create .venv and install the project with every extra

demo: $(STAMP) ## Run the training pipeline locally with kfp.local (DATA=<ISIC folder> ARCH=<name> TRAIN_SEED=<n>)
	$(PY) -m pipelines.demo --workdir $(DEMO_DIR) $(if $(DATA),--data $(DATA)) $(if $(ARCH),--architecture $(ARCH)) $(if $(TRAIN_SEED),--train-seed $(TRAIN_SEED))

test: $(STAMP) ## Run the whole test suite (slow tests included)
	SKINLESION_REAL_DATA=$${SKINLESION_REAL_DATA:-$(if $(wildcard $(REAL_DATA)/labels.csv),$(REAL_DATA))} \
		$(BIN)/pytest -q --durations=15

test-fast: $(STAMP) ## Run the tests not marked slow
	$(BIN)/pytest -q -m "not slow"

sample-data: $(STAMP) ## Write the generated ISIC-format sample to build/sample
	$(BIN)/skinlesion sample-data build/sample

# isic-cli comes from the `data` extra, installed here rather than by `make venv`: only this needs it.
data: $(STAMP) ## Download the ISIC 2019 training images and ground truth with isic-cli into ISIC_DIR (needs internet)
	$(BIN)/pip install --quiet -e '.[data]'
	$(BIN)/skinlesion fetch-isic $(ISIC_DIR) --isic-binary $(BIN)/isic

lint: $(STAMP) lint-containers ## ruff, mypy, hadolint and yamllint
	$(BIN)/ruff check src tests components pipelines bench
	$(BIN)/ruff format --check src tests components pipelines bench
	$(BIN)/mypy

clean: ## Remove build outputs (keeps .venv)
	rm -rf build local_outputs .pytest_cache .mypy_cache .ruff_cache

-include mk/*.mk
