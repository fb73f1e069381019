"""The preprocess job end to end, run the way SageMaker runs it: a process with path arguments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tests.data.csvfiles import read_rows

from skinlesion.config import PreprocessConfig
from skinlesion.data.isic import DataValidationError
from skinlesion.data.store import MANIFEST, SPLITS, STATS, VALIDATION_REPORT, read_split
from skinlesion.jobs.preprocess import run
from skinlesion.labels import CLASSES


def _job(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SKINLESION_LOG_LEVEL": "INFO"}
    return subprocess.run(
        [sys.executable, "-m", "skinlesion.jobs.preprocess", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_job_writes_the_dataset_contract(sample_copy: Path, tmp_path: Path) -> None:
    # The processing-job layout: /opt/ml/processing/input/data -> /opt/ml/processing/output/dataset
    processing = tmp_path / "opt" / "ml" / "processing"
    data = processing / "input" / "data"
    data.parent.mkdir(parents=True)
    sample_copy.rename(data)
    output = processing / "output" / "dataset"
    done = _job(
        "--input", str(data), "--output", str(output), "--image-size", "24", "--workers", "2",
        "--seed", "3", "--source-uri", "s3://bucket/isic/",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Wrote" in done.stderr

    manifest = json.loads((output / MANIFEST).read_text())
    assert manifest["classes"] == list(CLASSES) and manifest["image_size"] == 24
    assert manifest["source"]["uri"] == "s3://bucket/isic/"
    assert manifest["source"]["generated"] is True  # the sample generator marked its folder
    assert manifest["preprocess_config"]["seed"] == 3
    assert len(manifest["class_weights"]) == len(CLASSES)
    assert np.mean(manifest["class_weights"]) == pytest.approx(1.0, abs=1e-4)
    assert manifest["validation"]["valid_rows"] == 80

    _, meta = read_rows(data / "metadata.csv")
    lesion_of = {row[0]: row[1] for row in meta}
    seen_images: set[str] = set()
    lesions: dict[str, set[str]] = {}
    for split in SPLITS:
        arrays = read_split(output, split)
        assert arrays.images.dtype == np.uint8 and arrays.images.shape[1:] == (24, 24, 3)
        assert len(arrays) == manifest["splits"][split]["count"]
        counts = np.bincount(arrays.labels, minlength=len(CLASSES))
        assert (
            dict(zip(CLASSES, counts.tolist(), strict=True))
            == manifest["splits"][split]["class_counts"]
        )
        assert all(
            lesion_of[i] == lesion
            for i, lesion in zip(arrays.image_ids, arrays.lesion_ids, strict=True)
        )
        assert seen_images.isdisjoint(arrays.image_ids)
        seen_images |= set(arrays.image_ids)
        lesions[split] = set(arrays.lesion_ids)
        assert (counts > 0).all()  # 10 images, ~5 lesions per class: every class in every split
    assert len(seen_images) == 80
    assert not (
        lesions["train"] & lesions["val"]
        or lesions["train"] & lesions["test"]
        or lesions["val"] & lesions["test"]
    )

    stats = json.loads((output / STATS).read_text())
    assert stats["train"]["count"] == manifest["splits"]["train"]["count"]
    assert stats["splits"]["test"]["total"] == manifest["splits"]["test"]["count"]
    assert stats["original_size"]["most_common"] == {"32x32": 80}
    assert set(stats["train"]["color_histograms"]) == {"red", "green", "blue"}
    report = json.loads((output / VALIDATION_REPORT).read_text())
    assert report["passed"] and report["excluded"] == []


def test_job_fails_with_a_clear_error_when_too_much_is_invalid(
    sample_copy: Path, tmp_path: Path
) -> None:
    _header, rows = read_rows(sample_copy / "labels.csv")
    for row in rows[:10]:
        (sample_copy / "images" / f"{row[0]}.jpg").unlink()
    output = tmp_path / "out"
    done = _job(
        "--input", str(sample_copy), "--output", str(output), "--image-size", "16", "--workers", "1"
    )
    assert done.returncode != 0
    assert "Preprocessing failed" in done.stderr and "max_invalid_fraction=0.05" in done.stderr
    assert rows[0][0] in done.stderr
    report = json.loads((output / VALIDATION_REPORT).read_text())
    assert not report["passed"] and report["problems"]["missing_image"]["count"] == 10
    assert not (output / MANIFEST).exists()  # no dataset from bad data
    bad_config = _job("--input", str(sample_copy), "--output", str(output), "--val-fraction", "0.7")
    assert bad_config.returncode != 0 and "val_fraction" in bad_config.stderr


def test_unreadable_images_are_excluded_and_reported(sample_copy: Path, tmp_path: Path) -> None:
    _header, rows = read_rows(sample_copy / "labels.csv")
    broken = sample_copy / "images" / f"{rows[4][0]}.jpg"
    broken.write_bytes(broken.read_bytes()[:200])
    manifest = run(
        sample_copy, tmp_path / "ds", PreprocessConfig(image_size=16, workers=1), progress=False
    )
    assert sum(s["count"] for s in manifest["splits"].values()) == 79
    assert manifest["validation"]["problems"] == {"unreadable_image": 1}
    every_id = [i for s in SPLITS for i in read_split(tmp_path / "ds", s).image_ids]
    assert rows[4][0] not in every_id and len(every_id) == 79
    report = json.loads((tmp_path / "ds" / VALIDATION_REPORT).read_text())
    assert report["excluded"] == [{"image": rows[4][0], "problem": "unreadable_image"}]


def test_labels_subset_and_threshold_via_run(sample_copy: Path, tmp_path: Path) -> None:
    from tests.data.csvfiles import write_rows

    header, rows = read_rows(sample_copy / "labels.csv")
    (sample_copy / "subsets").mkdir()
    write_rows(sample_copy / "subsets" / "half.csv", header, rows[::2])
    manifest = run(
        sample_copy,
        tmp_path / "ds",
        PreprocessConfig(image_size=16, workers=1),
        "subsets/half.csv",
        progress=False,
    )
    assert sum(s["count"] for s in manifest["splits"].values()) == 40
    assert manifest["source"]["labels_csv"] == "subsets/half.csv"
    rows[0][1:] = ["0.0"] * (len(header) - 1)
    write_rows(sample_copy / "labels.csv", header, rows)
    with pytest.raises(DataValidationError, match="no_label x1"):
        run(
            sample_copy,
            tmp_path / "ds2",
            PreprocessConfig(image_size=16, max_invalid_fraction=0.0),
            progress=False,
        )
