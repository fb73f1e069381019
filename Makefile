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

.PHONY: help venv demo test test-fast lint sample-data data clean

help: ## Show this help
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | sort -u | \
		awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(STAMP) ## Create .venv and install the project with every extra

demo: $(STAMP) ## Run the training pipeline locally with kfp.local (DATA=<ISIC folder> ARCH=<name>)
	$(PY) -m pipelines.demo --workdir $(DEMO_DIR) $(if $(DATA),--data $(DATA)) $(if $(ARCH),--architecture $(ARCH))

test: $(STAMP) ## Run the whole test suite (slow tests included)
	SKINLESION_REAL_DATA=$${SKINLESION_REAL_DATA:-$(if $(wildcard $(REAL_DATA)/labels.csv),$(REAL_DATA))} \
		$(BIN)/pytest -q --durations=15

test-fast: $(STAMP) ## Run the tests not marked slow
	$(BIN)/pytest -q -m "not slow"

sample-data: $(STAMP) ## Write the generated ISIC-format sample to build/sample
	$(BIN)/skinlesion sample-data build/sample

data: $(STAMP) ## Download the ISIC 2019 training images and ground truth with isic-cli (needs internet)
	$(BIN)/skinlesion fetch-isic build/isic2019

lint: $(STAMP) lint-containers ## ruff, mypy, hadolint and yamllint
	$(BIN)/ruff check src tests components pipelines bench
	$(BIN)/ruff format --check src tests components pipelines bench
	$(BIN)/mypy

clean: ## Remove build outputs (keeps .venv)
	rm -rf build local_outputs .pytest_cache .mypy_cache .ruff_cache

-include mk/*.mk
