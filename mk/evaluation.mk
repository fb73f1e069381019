# Evaluation (docs/evaluation.md): score a model bundle on a preprocessed dataset split.

EVAL_SPLIT ?= test
EVAL_OUT ?= build/evaluation

.PHONY: evaluate test-evaluation

evaluate: $(STAMP) ## Score MODEL (folder or model.tar.gz) on DATASET's test split; report in EVAL_OUT
	@test -n "$(DATASET)" -a -n "$(MODEL)" || { echo "usage: make evaluate DATASET=<preprocessed folder> MODEL=<model folder or model.tar.gz> [EVAL_OUT=build/evaluation]"; exit 2; }
	$(PY) -m skinlesion.jobs.evaluate --dataset $(DATASET) --model $(MODEL) --output $(EVAL_OUT) --split $(EVAL_SPLIT)
	@echo "report: $(EVAL_OUT)/report.html"

test-evaluation: $(STAMP) ## Run the evaluation tests (metrics, report, evaluate job)
	$(BIN)/pytest -q tests/evaluation
