#!/usr/bin/env bash
# GPU check, one prepared run of a few minutes: training images/s with AMP for efficientnet_b0
# and resnet50 at 224 px, on synthetic tensors and through the trainer's real loader (memmapped
# uint8 arrays -> DataLoader workers -> pinned memory -> GPU), next to a plain fp32 eager step.
# Prints a table; writes bench/results/gpu_train.{md,jsonl}, and copies them to $OUT when set.
# Needs python3 with torch, torchvision, numpy, pillow and tqdm (no install of this project:
# src/ goes on PYTHONPATH). Extra arguments go to bench/gpu_train.py, e.g. --steps 5.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
PYTHON="${PYTHON:-python3}"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
fi
"$PYTHON" -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__, "cuda", torch.cuda.is_available())'
exec "$PYTHON" -m bench.gpu_train "$@" ${OUT:+--out "$OUT"}
