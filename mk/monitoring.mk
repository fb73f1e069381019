# Monitoring (docs/monitoring.md): drift and model quality of an endpoint's captured requests.

MONITOR_ENDPOINT ?= skinlesion-demo
MONITOR_OUT ?= build/monitoring
MONITOR_ARGS ?=

.PHONY: monitor monitor-baseline bench-monitoring test-monitoring

monitor: $(STAMP) ## Check the demo endpoint's captured requests against its model's baseline (DATASET=, MONITOR_ARGS=)
	$(BIN)/skinlesion monitor run --local-root $(DEMO_DIR)/local --endpoint $(MONITOR_ENDPOINT) \
		--output $(MONITOR_OUT) $(if $(DATASET),--dataset $(DATASET)) $(MONITOR_ARGS)
	@echo "report: $(MONITOR_OUT)/report.html"

monitor-baseline: $(STAMP) ## Build a monitoring baseline: DATASET=<preprocessed> MODEL=<bundle> [BASELINE_OUT=build/baseline]
	@test -n "$(DATASET)" -a -n "$(MODEL)" || { echo "usage: make monitor-baseline DATASET=<preprocessed folder> MODEL=<model folder or model.tar.gz> [BASELINE_OUT=build/baseline]"; exit 2; }
	$(PY) -m skinlesion.jobs.baseline --dataset $(DATASET) --model $(MODEL) --output $(or $(BASELINE_OUT),build/baseline)

bench-monitoring: $(STAMP) ## Drift benchmark on real HAM10000 windows: false alarms and detection per shift
	$(PY) -m bench.monitoring

test-monitoring: $(STAMP) ## Run the monitoring tests (about 2 minutes)
	$(BIN)/pytest -q tests/monitoring
