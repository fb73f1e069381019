#!/usr/bin/env bash
# GPU check, one prepared run of a few minutes: training images/s with AMP for efficientnet_b0
# and resnet50 at 224 px, on synthetic tensors and through the trainer's real loader (memmapped
# uint8 arrays -> DataLoader workers -> pinned memory -> GPU), next to a plain fp32 eager step;
# then one epoch of the GPU recipe (pipelines/params/prod.yaml, pipelines.training) through the
# trainer itself (build + train_and_validate + end_epoch) on 8192 synthetic train rows with
# patient metadata: epoch seconds, train images/s, validation seconds, peak GPU memory, and the
# recipe's 30 epochs extrapolated. The GPU machine may be offline, so the recipe epoch starts
# from random weights (--pretrained none; same step time); `--pretrained imagenet` (or
# `auto`) after the script name overrides it: bash bench/gpu.sh --pretrained auto.
# Prints a table; writes bench/results/gpu_train.{md,jsonl}, and copies them to $OUT when set.
# Needs python3 with torch, torchvision, numpy, pillow, pyyaml and tqdm (no install of this
# project: src/ goes on PYTHONPATH). Extra arguments go to bench/gpu_train.py, e.g. --steps 5,
# --recipe pipelines/params/dev.yaml, --recipe-epochs 2, --recipe-set num_workers=8.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
PYTHON="${PYTHON:-python3}"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
fi
"$PYTHON" -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__, "cuda", torch.cuda.is_available())'
# --pretrained none first: a later --pretrained in "$@" wins (argparse keeps the last).
exec "$PYTHON" -m bench.gpu_train --pretrained none "$@" ${OUT:+--out "$OUT"}
