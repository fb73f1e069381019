"""Fixtures for the training tests: a tiny synthetic dataset folder in the preprocess format."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from skinlesion.data.split import class_weights
from skinlesion.data.store import MANIFEST, SplitArrays, write_split
from skinlesion.labels import CLASSES

# One clearly different colour per class, so that a few steps can learn the task.
PALETTE = np.array(
    [
        [220, 40, 40],
        [40, 200, 40],
        [40, 40, 220],
        [220, 220, 40],
        [220, 40, 220],
        [40, 220, 220],
        [240, 240, 240],
        [30, 30, 30],
    ],
    dtype=np.float64,
)


def write_synthetic_dataset(
    path: Path, *, image_size: int = 32, per_class: dict[str, int] | None = None, seed: int = 0
) -> Path:
    """A dataset folder: each class is a noisy disc of its palette colour on a skin-like ground."""
    per_class = per_class or {"train": 12, "val": 6, "test": 4}
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:image_size, :image_size]
    train_labels = None
    for split, count in per_class.items():
        labels = np.repeat(np.arange(len(CLASSES)), count)
        images = np.empty((len(labels), image_size, image_size, 3), np.uint8)
        for i, label in enumerate(labels):
            cx, cy = rng.uniform(0.35, 0.65, size=2) * image_size
            radius = rng.uniform(0.2, 0.35) * image_size
            disc = ((xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2)[..., None]
            ground = np.array([200, 160, 140]) + rng.normal(0, 10, size=3)
            picture = np.where(disc, PALETTE[label], ground)
            picture = picture + rng.normal(0, 12, size=picture.shape)
            images[i] = np.clip(picture, 0, 255).astype(np.uint8)
        ids = [f"ISIC_{split}_{i:05d}" for i in range(len(labels))]
        write_split(path, split, SplitArrays(images, labels.astype(np.int64), ids, ids))
        if split == "train":
            train_labels = labels
    manifest = {
        "classes": list(CLASSES),
        "image_size": image_size,
        "class_weights": class_weights(train_labels),
        "splits": {s: {"count": c * len(CLASSES)} for s, c in per_class.items()},
    }
    (path / MANIFEST).write_text(json.dumps(manifest))
    return path


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("dataset"))


def ml_root_layout(root: Path, dataset: Path, hyperparameters: dict[str, str]) -> dict[str, str]:
    """An /opt/ml-shaped run directory under ``root``; returns the environment for the job."""
    config = root / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "TRAINING_JOB"))}
    env.update(
        {
            "SKINLESION_ML_ROOT": str(root),
            "SM_CHANNEL_TRAIN": str(dataset),
            "OMP_NUM_THREADS": "1",
        }
    )
    return env


def run_train_job(
    env: dict[str, str], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``python -m skinlesion.jobs.train`` as SageMaker would start it."""
    return subprocess.run(
        [sys.executable, "-m", "skinlesion.jobs.train", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
