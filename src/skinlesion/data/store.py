"""The preprocessed dataset as the trainer reads it: one folder per split, decoded uint8 arrays.

Layout of a dataset folder (the KFP ``Dataset`` artifact; a SageMaker channel)::

    manifest.json            classes, image_size, split sizes, class weights, source, validation
    stats.json               the drift monitor's baseline (class counts, channel mean/std, ...)
    validation_report.json   what validation found and excluded
    <split>/images.npy       (N, S, S, 3) uint8, RGB, opened with mmap: no decode at train time
    <split>/labels.npy       (N,) int64, indices into manifest["classes"]
    <split>/index.csv        image,lesion_id,label
    <split>/metadata.csv     image,age_approx,sex,anatom_site (when the source has metadata;
                             empty cells where a value is unknown)
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"
STATS = "stats.json"
VALIDATION_REPORT = "validation_report.json"
SPLIT_METADATA = "metadata.csv"
METADATA_FIELDS = ("age_approx", "sex", "anatom_site")


@dataclass(frozen=True)
class SplitArrays:
    """One split: images (N, S, S, 3) uint8, labels (N,), and the ids of each row."""

    images: np.ndarray
    labels: np.ndarray
    image_ids: list[str]
    lesion_ids: list[str]

    def __len__(self) -> int:
        return len(self.labels)


def write_split(dataset_dir: Path, split: str, data: SplitArrays) -> None:
    """Write one split; images go through ``np.save`` so readers can memory-map them."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}. Accepted: {', '.join(SPLITS)}.")
    if data.images.dtype != np.uint8 or data.images.ndim != 4 or data.images.shape[-1] != 3:
        raise ValueError(
            f"Split images must be uint8 (N, H, W, 3); got {data.images.dtype} {data.images.shape}."
        )
    if not len(data.images) == len(data.labels) == len(data.image_ids) == len(data.lesion_ids):
        raise ValueError("Split images, labels, image ids and lesion ids differ in length.")
    folder = Path(dataset_dir) / split
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "images.npy", data.images)
    np.save(folder / "labels.npy", data.labels.astype(np.int64))
    with (folder / "index.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "lesion_id", "label"])
        writer.writerows(zip(data.image_ids, data.lesion_ids, data.labels.tolist(), strict=True))


def read_split(dataset_dir: Path, split: str, *, mmap: bool = True) -> SplitArrays:
    """Read one split; images are memory-mapped unless ``mmap`` is False."""
    folder = Path(dataset_dir) / split
    if not (folder / "images.npy").exists():
        present = (
            sorted(p.name for p in Path(dataset_dir).iterdir())
            if Path(dataset_dir).is_dir()
            else []
        )
        raise FileNotFoundError(
            f"No {split!r} split in {dataset_dir} (found: {', '.join(present) or 'nothing'}). "
            "Expected the output of the preprocess job."
        )
    images = np.load(folder / "images.npy", mmap_mode="r" if mmap else None)
    labels = np.load(folder / "labels.npy")
    image_ids: list[str] = []
    lesion_ids: list[str] = []
    with (folder / "index.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            image_ids.append(row["image"])
            lesion_ids.append(row["lesion_id"])
    return SplitArrays(images=images, labels=labels, image_ids=image_ids, lesion_ids=lesion_ids)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True))


def read_manifest(dataset_dir: Path) -> dict[str, Any]:
    path = Path(dataset_dir) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"No {MANIFEST} in {dataset_dir}: not a preprocessed dataset.")
    manifest: dict[str, Any] = json.loads(path.read_text())
    return manifest


def write_split_metadata(
    dataset_dir: Path, split: str, image_ids: list[str], rows: dict[str, dict[str, str]]
) -> Path:
    """Write ``<split>/metadata.csv``: one row per image, METADATA_FIELDS (empty if unknown)."""
    path = Path(dataset_dir) / split / SPLIT_METADATA
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", *METADATA_FIELDS])
        for image in image_ids:
            row = rows.get(image, {})
            writer.writerow([image, *(row.get(name, "") for name in METADATA_FIELDS)])
    return path


def read_split_metadata(dataset_dir: Path, split: str) -> dict[str, dict[str, str]] | None:
    """``image -> {age_approx, sex, anatom_site}`` of one split, or None when it has no table."""
    path = Path(dataset_dir) / split / SPLIT_METADATA
    if not path.exists():
        return None
    with path.open(newline="") as handle:
        return {
            row["image"]: {name: (row.get(name) or "").strip() for name in METADATA_FIELDS}
            for row in csv.DictReader(handle)
        }
