"""Training throughput (images/s) of one architecture: fp32 NCHW against channels_last + autocast.

Times full training steps (uint8 batch -> batched augmentation -> forward -> backward -> AdamW)
on random data, after warm-up steps, and reports the median step. Example::

    python bench/train_throughput.py --architecture efficientnet_lite0 --image-size 96 224
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from skinlesion.models import autocast, autocast_dtype, build_model, normalization, to_unit_float
from skinlesion.training.augmentation import BatchAugment
from skinlesion.training.loop import InputSpec


def measure(
    architecture: str,
    image_size: int,
    batch_size: int,
    *,
    fast: bool,
    steps: int,
    warmup: int,
    device: torch.device,
) -> dict[str, float | str | int]:
    torch.manual_seed(0)
    model = build_model(architecture, 8, "none", image_size).to(device)
    dtype = autocast_dtype("auto", device) if fast else None
    if fast:
        model = model.to(memory_format=torch.channels_last)
    mean, std = normalization(architecture)
    inputs = InputSpec(image_size, mean, std, channels_last=fast)
    augment = BatchAugment(image_size, seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.randint(0, 256, (batch_size, image_size, image_size, 3), dtype=torch.uint8)
    labels = torch.randint(0, 8, (batch_size,))
    model.train()
    times = []
    for step in range(warmup + steps):
        started = time.perf_counter()
        x = inputs.finish(augment(to_unit_float(images.to(device))))
        with autocast(device, dtype):
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), labels.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= warmup:
            times.append(time.perf_counter() - started)
    median = statistics.median(times)
    return {
        "architecture": architecture,
        "image_size": image_size,
        "batch_size": batch_size,
        "mode": f"channels_last+{dtype}" if fast else "fp32 NCHW",
        "device": str(device),
        "threads": torch.get_num_threads(),
        "median_step_s": round(median, 4),
        "images_per_sec": round(batch_size / median, 1),
        "best_images_per_sec": round(batch_size / min(times), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--architecture", default="efficientnet_lite0")
    parser.add_argument("--image-size", type=int, nargs="+", default=[96, 224])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    for size in args.image_size:
        for fast in (False, True):
            result = measure(
                args.architecture,
                size,
                args.batch_size,
                fast=fast,
                steps=args.steps,
                warmup=args.warmup,
                device=device,
            )
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
