"""Validation and preprocessing of real HAM10000 images (the 264-image class-balanced subset)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.data.csvfiles import read_rows

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
