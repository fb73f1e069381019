"""Data loader images/s against the model's training step rate: the loader must never be the limit.

Ours: the trainer's loader (``SplitDataset`` over the memory-mapped uint8 split written by the
preprocess job, ``EpochBatchSampler``, ``make_loader``) as ``fit()`` builds it, alone and
followed by the on-device input work (uint8 -> float, batched augmentation, normalisation).
Baseline: the torchvision reference recipe's loader, a JPEG decode plus per-image
``RandomResizedCrop``/flip/``ToTensor``/``Normalize`` in DataLoader workers (one per core), on the
same number of images. Both are compared with the images/s of our training step for the same
batch (``bench.train_step``'s ``TrainerStep``). Run::

    python -m bench.loader --architecture efficientnet_lite0 --image-size 224
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.results import RESULTS_DIR, fullres_dir, median, write_result
from bench.train_step import NUM_CLASSES, TrainerStep
from skinlesion.config import TrainConfig
from skinlesion.data.store import SplitArrays, read_split, write_split
from skinlesion.models import build_model, normalization, to_unit_float
from skinlesion.training.augmentation import BatchAugment
from skinlesion.training.loader import EpochBatchSampler, SplitDataset, make_loader

log = logging.getLogger("bench.loader")
NAME = "loader"


def write_arrays(folder: Path, count: int, size: int) -> None:
    """A train split of ``count`` random uint8 images, as the preprocess job writes it."""
    rng = np.random.default_rng(0)
    write_split(
        folder,
        "train",
        SplitArrays(
            images=rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8),
            labels=rng.integers(0, NUM_CLASSES, count),
            image_ids=[f"img{i}" for i in range(count)],
            lesion_ids=[f"lesion{i}" for i in range(count)],
        ),
    )


def loader_rate(folder: Path, batch_size: int, workers: int, *, augment_size: int = 0) -> float:
    """Images/s of one epoch of the trainer's loader (plus the input work if ``augment_size``)."""
    split = read_split(folder, "train")
    sampler = EpochBatchSampler(len(split), batch_size, seed=0)
    loader = make_loader(SplitDataset(split.images, split.labels), sampler, num_workers=workers)
    augment = BatchAugment(augment_size, seed=0) if augment_size else None
    sampler.set_epoch(1)
    seen = 0
    started = time.perf_counter()
    for images, labels, _metadata in loader:
        if augment is not None:
            augment(to_unit_float(images)).sum()
        else:
            int(images[:, 0, 0, 0].sum()) + int(labels.sum())
        seen += len(labels)
    return seen / (time.perf_counter() - started)


class ReferenceDataset(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """JPEG files through torchvision's reference training transforms, one image at a time."""

    def __init__(self, paths: list[Path], size: int, architecture: str):
        from torchvision import transforms

        mean, std = normalization(architecture)
        self.paths = paths
        self.transform = transforms.Compose(
            [
                transforms.RandomResizedCrop(size),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize(mean, std),
            ]
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        with Image.open(self.paths[index]) as image:
            return self.transform(image.convert("RGB")), index % NUM_CLASSES


def reference_rate(paths: list[Path], size: int, batch_size: int, architecture: str) -> float:
    workers = os.cpu_count() or 1
    loader = torch.utils.data.DataLoader(
        ReferenceDataset(paths, size, architecture),
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
    )
    seen = 0
    started = time.perf_counter()
    for images, _labels, _metadata in loader:
        seen += len(images)
    return seen / (time.perf_counter() - started)


def step_rate(architecture: str, size: int, batch_size: int, steps: int) -> float:
    torch.manual_seed(0)
    config = TrainConfig(architecture=architecture, image_size=size, batch_size=batch_size)
    images = torch.randint(0, 256, (batch_size, size, size, 3), dtype=torch.uint8)
    labels = torch.randint(0, NUM_CLASSES, (batch_size,))
    model = build_model(architecture, NUM_CLASSES, "none", size)
    step = TrainerStep(model, config, torch.device("cpu"), steps + 2, batch=(images, labels))
    step()  # warm-up
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return batch_size / median(times)


def run(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    size, batch = args.image_size, args.batch_size
    model_rate = step_rate(args.architecture, size, batch, args.steps)
    rows: list[dict[str, Any]] = []

    def add(path: str, rate: float) -> None:
        rows.append(
            {
                "path": path,
                "images_per_s": rate,
                "x_step_rate": rate / model_rate,
                "share_of_step_time": model_rate / rate,
            }
        )

    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        folder = Path(tmp)
        write_arrays(folder, args.images, size)
        loader_rate(folder, batch, 0)  # page the memmap in, as epoch 2 onwards finds it
        add("ours: memmapped uint8 loader, in the main process", loader_rate(folder, batch, 0))
        add(
            "ours: loader + uint8->float + batched augmentation",
            loader_rate(folder, batch, 0, augment_size=size),
        )
    source, reason = fullres_dir()
    if source is not None:
        files = sorted(source.rglob("*.jpg"))
        paths = [files[i % len(files)] for i in range(args.images)]
        add(
            "baseline: JPEG + per-image torchvision transforms, "
            f"{os.cpu_count()} workers (600x450 JPEGs)",
            reference_rate(paths, size, batch, args.architecture),
        )
    else:
        log.info("baseline loader skipped: %s", reason)
    summary = {
        "model": f"{args.architecture}, {size} px, batch {batch}",
        "our training step images/s": round(model_rate, 1),
        "goal": "loader images/s >> step images/s (loading a small share of a step)",
    }
    if source is None:
        summary["baseline"] = f"skipped: {reason}"
    return rows, summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--architecture", default="efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--images", type=int, default=2048, help="images per loader epoch")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps")
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS_DIR, help="where the results go"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    rows, summary = run(args)
    table = write_result(
        NAME,
        results_dir=args.results_dir,
        title="Data loader images/s against the training step rate (CPU)",
        rows=rows,
        columns=["path", "images_per_s", "x_step_rate", "share_of_step_time"],
        summary=summary,
        notes=[
            "x_step_rate: loader images/s divided by the training step's images/s; "
            "share_of_step_time: the time the loader adds to a step when it runs in line.",
        ],
    )
    print(table, flush=True)


if __name__ == "__main__":
    main()
