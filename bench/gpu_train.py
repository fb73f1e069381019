"""GPU training images/s with AMP, on synthetic tensors and through the trainer's real loader.

For each architecture: a plain fp32 eager step (the baseline of ``bench.train_step``), our
trainer's step with AMP on a batch already on the GPU (synthetic: the GPU's own ceiling), and
``train_one_epoch`` fed by the trainer's loader over memory-mapped uint8 arrays written as the
preprocess job writes them (``SplitDataset`` + ``EpochBatchSampler`` + ``make_loader`` with
pinned memory and workers). If the loader keeps up, the last rate matches the synthetic one.
``bench/gpu.sh`` runs this; ``--out`` also copies the results there. Run::

    python -m bench.gpu_train --architectures efficientnet_b0 resnet50 --batch-size 256
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench.loader import write_arrays
from bench.results import RESULTS_DIR, median, write_result
from bench.train_step import NUM_CLASSES, BaselineStep, TrainerStep, sync
from skinlesion.config import TrainConfig
from skinlesion.data.store import read_split
from skinlesion.models import build_model, normalization, normalize, to_unit_float
from skinlesion.training.loader import EpochBatchSampler, SplitDataset, make_loader

log = logging.getLogger("bench.gpu_train")
NAME = "gpu_train"


def _timed_rate(fn: Any, batch: int, steps: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - started)
    return batch / median(times)


def synthetic_rates(
    architecture: str, size: int, batch: int, steps: int, warmup: int, device: torch.device
) -> tuple[float, float, str]:
    """(fp32 eager images/s, our AMP step images/s, our autocast dtype) on on-device batches."""
    torch.manual_seed(0)
    images = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, device=device)
    labels = torch.randint(0, NUM_CLASSES, (batch,), device=device)
    mean, std = normalization(architecture)
    ready = normalize(to_unit_float(images), mean, std).contiguous()
    baseline = BaselineStep(
        build_model(architecture, NUM_CLASSES, "none", size).to(device), ready, labels
    )
    fp32 = _timed_rate(baseline, batch, steps, warmup, device)
    del baseline
    config = TrainConfig(architecture=architecture, image_size=size, batch_size=batch)
    model = build_model(architecture, NUM_CLASSES, "none", size).to(device)
    ours = TrainerStep(
        model, config, device, total_steps=steps + warmup + 1, batch=(images, labels)
    )
    amp = _timed_rate(ours, batch, steps, warmup, device)
    return fp32, amp, str(ours.dtype)


def loader_rates(
    architecture: str,
    size: int,
    batch: int,
    folder: Path,
    workers: int,
    epochs: int,
    device: torch.device,
) -> tuple[float, float]:
    """(images/s of train_one_epoch fed by the real loader, images/s of the loader alone)."""
    torch.manual_seed(0)
    split = read_split(folder, "train")
    sampler = EpochBatchSampler(len(split), batch, seed=0)
    loader = make_loader(
        SplitDataset(split.images, split.labels),
        sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    config = TrainConfig(architecture=architecture, image_size=size, batch_size=batch)
    model = build_model(architecture, NUM_CLASSES, "none", size).to(device)
    step = TrainerStep(model, config, device, total_steps=(epochs + 1) * len(sampler) + 1)

    def epoch(number: int) -> dict[str, float]:
        sampler.set_epoch(number)
        return step.run(loader)

    epoch(0)  # warm-up: cudnn autotuning, worker start, page cache
    stats = [epoch(n) for n in range(1, epochs + 1)]
    trained = sum(s["images"] for s in stats) / sum(s["seconds"] for s in stats)

    sampler.set_epoch(epochs + 1)
    seen = 0
    started = time.perf_counter()
    for images, _labels, _metadata in loader:
        images.to(device, non_blocking=True)
        seen += len(images)
    sync(device)
    return trained, seen / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--architectures", nargs="+", default=["efficientnet_b0", "resnet50"])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30, help="timed synthetic steps")
    parser.add_argument("--warmup", type=int, default=10, help="untimed synthetic steps")
    parser.add_argument("--images", type=int, default=4096, help="rows of the memmapped split")
    parser.add_argument("--epochs", type=int, default=2, help="timed loader epochs")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, help="also copy the results here")
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS_DIR, help="where the results go"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as fit() does on GPUs
    size, batch = args.image_size, args.batch_size
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        write_arrays(folder, args.images, size)
        log.info("wrote %d uint8 images in %.1f s", args.images, time.perf_counter() - started)
        for architecture in args.architectures:
            log.info("%s: synthetic steps", architecture)
            fp32, amp, dtype = synthetic_rates(
                architecture, size, batch, args.steps, args.warmup, device
            )
            log.info(
                "%s: fp32 %.0f, AMP %.0f images/s; now through the loader", architecture, fp32, amp
            )
            through, loader_only = loader_rates(
                architecture, size, batch, folder, args.workers, args.epochs, device
            )
            log.info(
                "%s: through the loader %.0f, loader alone %.0f images/s",
                architecture,
                through,
                loader_only,
            )
            rows.append(
                {
                    "architecture": architecture,
                    "image_size": size,
                    "batch": batch,
                    "fp32_eager_images_per_s": fp32,
                    "amp_synthetic_images_per_s": amp,
                    "amp_speedup": amp / fp32,
                    "amp_real_loader_images_per_s": through,
                    "loader_vs_synthetic": through / amp,
                    "loader_alone_images_per_s": loader_only,
                    "autocast": dtype,
                }
            )
            if device.type == "cuda":
                torch.cuda.empty_cache()
    table = write_result(
        NAME,
        results_dir=args.results_dir,
        title=f"Training images/s on {device.type}: AMP, synthetic vs the real loader",
        rows=rows,
        columns=[
            "architecture",
            "batch",
            "fp32_eager_images_per_s",
            "amp_synthetic_images_per_s",
            "amp_speedup",
            "amp_real_loader_images_per_s",
            "loader_vs_synthetic",
            "loader_alone_images_per_s",
            "autocast",
        ],
        summary={
            "loader workers": args.workers,
            "memmapped rows": args.images,
            "timed loader epochs": args.epochs,
        },
        notes=[
            "loader_vs_synthetic near 1.0 means the loader does not starve the GPU. "
            "Synthetic: the uint8 batch already on the GPU; real loader: memmapped uint8 "
            "arrays -> DataLoader workers -> pinned memory -> GPU, then the same step.",
        ],
    )
    print(table, flush=True)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        for suffix in (".md", ".jsonl"):
            shutil.copy(args.results_dir / f"{NAME}{suffix}", args.out / f"{NAME}{suffix}")


if __name__ == "__main__":
    main()
