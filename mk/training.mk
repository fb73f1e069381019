# Training (docs/training.md): the train job on a preprocessed dataset, its tests, its throughput.

TRAIN_DATASET ?= build/sample-dataset
TRAIN_ROOT ?= build/train
TRAIN_ARCH ?= efficientnet_lite0
TRAIN_EPOCHS ?= 3
BENCH_SIZES ?= 96 224

.PHONY: train test-training bench-train

train: $(STAMP) ## Run the train job locally on TRAIN_DATASET (make preprocess-sample first); outputs under TRAIN_ROOT
	@test -f "$(TRAIN_DATASET)/manifest.json" || { echo "no dataset at $(TRAIN_DATASET): run make preprocess-sample, or pass TRAIN_DATASET=<preprocessed folder>"; exit 2; }
	mkdir -p $(TRAIN_ROOT)/input/config
	printf '{"architecture": "%s", "epochs": "%s"}\n' "$(TRAIN_ARCH)" "$(TRAIN_EPOCHS)" > $(TRAIN_ROOT)/input/config/hyperparameters.json
	SKINLESION_ML_ROOT=$(abspath $(TRAIN_ROOT)) SM_CHANNEL_TRAIN=$(abspath $(TRAIN_DATASET)) $(PY) -m skinlesion.jobs.train
	@echo "model: $(TRAIN_ROOT)/model  history: $(TRAIN_ROOT)/output/data/history.json"

test-training: $(STAMP) ## Run the model and training tests (about 1.5 min on 2 cores)
	$(BIN)/pytest -q tests/training

bench-train: $(STAMP) ## Training images/s of TRAIN_ARCH at BENCH_SIZES px, batch 64: fp32 vs channels_last+bf16
	$(PY) bench/train_throughput.py --architecture $(TRAIN_ARCH) --image-size $(BENCH_SIZES)
