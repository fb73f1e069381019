# Serving (docs/serving.md): the SageMaker-compatible endpoint app, its tests and its benchmark.

SERVE_MODEL ?= build/train/model
SERVE_PORT ?= 8080
SERVE_CAPTURE ?= build/capture
# e.g. BENCH_SERVING_ARGS="--seconds 20 --server-cpus 0-3 --client-cpus 4-7"
BENCH_SERVING_ARGS ?= --quick

.PHONY: serve test-serving bench-serving bench-serving-soak bench-serving-runtimes

serve: $(STAMP) ## Serve SERVE_MODEL (bundle or model.tar.gz folder) on SERVE_PORT, capturing to SERVE_CAPTURE
	$(BIN)/skinlesion serve --model-dir $(SERVE_MODEL) --port $(SERVE_PORT) --capture-dir $(SERVE_CAPTURE)

test-serving: $(STAMP) ## Run the serving tests (about 1.5 min on 2 cores)
	$(BIN)/pytest -q tests/serving

bench-serving: $(STAMP) ## Serving req/s and p50/p99 at concurrency 1/4/16/64: app vs naive FastAPI (BENCH_SERVING_ARGS)
	$(PY) -m bench.serving $(BENCH_SERVING_ARGS)

bench-serving-soak: $(STAMP) ## 10-minute soak of the app at 80% of its peak rate: errors and memory (RSS)
	$(PY) -m bench.serving --soak 600

bench-serving-runtimes: $(STAMP) ## ms per image of ONNX Runtime, TorchScript, eager fp32 and bf16 by batch size
	$(PY) -m bench.serving.runtimes --out bench/results/serving-runtimes.jsonl
