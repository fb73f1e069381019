"""Validation and preprocessing of real HAM10000 images (the 264-image class-balanced subset)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from tests.data.csvfiles import read_rows, write_rows

from skinlesion.config import PreprocessConfig
from skinlesion.data.isic import validate_dataset
from skinlesion.data.store import SPLITS, read_split
from skinlesion.jobs.preprocess import run
from skinlesion.labels import CLASSES

pytestmark = pytest.mark.real_data


def test_mini_subset_validates_and_splits_without_lesion_leakage(
    real_data_dir: Path, tmp_path: Path
) -> None:
    checked = validate_dataset(real_data_dir, "subsets/mini.csv")
    assert checked.report.passed and checked.report.valid_rows == 264
    assert checked.report.class_counts == dict.fromkeys(CLASSES, 33)

    manifest = run(
        real_data_dir,
        tmp_path / "ds",
        PreprocessConfig(image_size=64),
        "subsets/mini.csv",
        progress=False,
    )
    assert sum(s["count"] for s in manifest["splits"].values()) == 264

    # Lesion ids come from metadata.csv, and no lesion crosses splits.
    header, meta = read_rows(real_data_dir / "metadata.csv")
    lesion_of = {row[header.index("image")]: row[header.index("lesion_id")] for row in meta}
    lesions_by_split: dict[str, set[str]] = {}
    for split in SPLITS:
        data = read_split(tmp_path / "ds", split)
        assert all(
            lesion_of[i] == lesion
            for i, lesion in zip(data.image_ids, data.lesion_ids, strict=True)
        )
        lesions_by_split[split] = {lesion_of[i] for i in data.image_ids}
        assert (np.bincount(data.labels, minlength=8) > 0).all(), split
        assert data.images.shape[1:] == (64, 64, 3)
    assert not lesions_by_split["train"] & lesions_by_split["val"]
    assert not lesions_by_split["train"] & lesions_by_split["test"]
    assert not lesions_by_split["val"] & lesions_by_split["test"]
    assert manifest["source"]["labels_csv"] == "subsets/mini.csv"
    assert manifest["source"]["generated"] is False  # photographs: no generated.json


def _insert_garbage(path: Path, count: int = 200, seed: int = 0) -> None:
    """Put ``count`` random bytes in the middle of a JPEG's compressed data."""
    data = path.read_bytes()
    middle = len(data) // 2
    garbage = np.random.default_rng(seed).integers(0, 256, count, dtype=np.uint8).tobytes()
    path.write_bytes(data[:middle] + garbage + data[middle:])


def test_corrupt_but_decodable_jpegs_are_excluded_as_corrupt(
    real_data_dir: Path, tmp_path: Path
) -> None:
    from PIL import Image

    from skinlesion.data.images import CorruptImageError, load_image

    header, rows = read_rows(real_data_dir / "labels.csv")
    rows = rows[:6]
    images = tmp_path / "data" / "images"
    images.mkdir(parents=True)
    for row in rows:
        shutil.copy(real_data_dir / "images" / f"{row[0]}.jpg", images)
    write_rows(tmp_path / "data" / "labels.csv", header, rows)
    corrupt = [rows[1][0], rows[4][0]]
    for seed, image_id in enumerate(corrupt):
        _insert_garbage(images / f"{image_id}.jpg", seed=seed)
    truncated = images / f"{rows[2][0]}.jpg"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])

    # What made this check necessary: Pillow decodes the damaged file without a word.
    with Image.open(images / f"{corrupt[0]}.jpg") as opened:
        opened.load()
    with pytest.raises(CorruptImageError, match=r"Corrupt JPEG data|Premature end"):
        load_image(images / f"{corrupt[0]}.jpg", 64)

    report = validate_dataset(tmp_path / "data", max_invalid_fraction=0.5, workers=1).report
    found = {name: sorted(p.examples) for name, p in report.problems.items()}
    assert found == {"corrupt_image": sorted(corrupt), "unreadable_image": [rows[2][0]]}
    assert report.excluded_rows == 3 and report.valid_rows == 3
    assert {"image": corrupt[0], "problem": "corrupt_image"} in report.excluded
    # The intact originals pass the same check.
    assert validate_dataset(real_data_dir, "subsets/mini.csv", workers=1).report.problems == {}
