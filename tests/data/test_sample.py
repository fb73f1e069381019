"""The generated sample: the exact ISIC layout, determinism, and classes that look different."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from tests.data.csvfiles import read_rows

from skinlesion.data.images import load_images
from skinlesion.data.isic import validate_dataset
from skinlesion.data.sample import render_lesion_image, write_sample
from skinlesion.labels import CLASSES


def test_layout_round_trips_through_the_reader(tiny_sample: Path) -> None:
    header, rows = read_rows(tiny_sample / "labels.csv")
    assert header == ["image", *CLASSES, "UNK"]
    for row in rows:
        values = row[1:]
        assert set(values) <= {"0.0", "1.0"} and values.count("1.0") == 1 and values[-1] == "0.0"
    meta_header, meta = read_rows(tiny_sample / "metadata.csv")
    assert meta_header == ["image", "lesion_id", "age_approx", "sex", "anatom_site"]
    assert [m[0] for m in meta] == [r[0] for r in rows]
    images_per_lesion = Counter(m[1] for m in meta)
    assert max(images_per_lesion.values()) >= 2
    assert 1.5 <= len(meta) / len(images_per_lesion) <= 2.5  # about two images per lesion
    assert sorted(p.stem for p in (tiny_sample / "images").iterdir()) == sorted(r[0] for r in rows)
    result = validate_dataset(tiny_sample, workers=1)
    assert result.report.passed and result.report.excluded_rows == 0
    assert result.report.class_counts == dict.fromkeys(CLASSES, 10)
    # A lesion's images share its class.
    label_of_lesion: dict[str, set[int]] = {}
    for record in result.records:
        label_of_lesion.setdefault(record.lesion_id, set()).add(record.label)
    assert all(len(labels) == 1 for labels in label_of_lesion.values())


def test_same_seed_same_files_other_seed_other_files(tmp_path: Path) -> None:
    first = write_sample(tmp_path / "a", n_per_class=2, image_size=24, seed=11)
    write_sample(tmp_path / "b", n_per_class=2, image_size=24, seed=11)
    write_sample(tmp_path / "c", n_per_class=2, image_size=24, seed=12)
    assert first.images == 16 and sum(first.class_counts.values()) == 16
    for name in ("labels.csv", "metadata.csv", "images/SAMPLE_0000005.jpg"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "images/SAMPLE_0000005.jpg").read_bytes() != (
        tmp_path / "c" / "images/SAMPLE_0000005.jpg"
    ).read_bytes()


def test_classes_differ_in_colour(tiny_sample: Path) -> None:
    records = validate_dataset(tiny_sample, decode=False).records
    images = load_images([r.path for r in records], 32, workers=1, progress=False).images
    labels = np.array([r.label for r in records])
    centre = images[:, 8:24, 8:24].reshape(len(images), -1, 3).mean(axis=1)
    means = np.stack([centre[labels == k].mean(axis=0) for k in range(len(CLASSES))])
    distances = np.linalg.norm(means[:, None] - means[None], axis=-1)
    off_diagonal = distances[~np.eye(len(CLASSES), dtype=bool)]
    assert off_diagonal.min() > 8.0, distances.round()
    # Nearest class-mean colour already beats chance (1/8) by far; texture does the rest.
    predicted = np.linalg.norm(centre[:, None] - means[None], axis=-1).argmin(axis=1)
    per_class_recall = [(predicted[labels == k] == k).mean() for k in range(len(CLASSES))]
    assert np.mean(per_class_recall) > 0.4


def test_photographs_vary_but_stay_in_class() -> None:
    a = render_lesion_image("MEL", 48, seed=1).astype(int)
    b = render_lesion_image("MEL", 48, seed=2).astype(int)
    assert a.shape == (48, 48, 3)
    assert np.abs(a - b).mean() > 5  # size, position, rotation, light and skin all vary
    with pytest.raises(ValueError, match="Accepted: MEL, NV"):
        render_lesion_image("XYZ")


def test_bad_arguments_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_per_class"):
        write_sample(tmp_path, n_per_class=0)
    with pytest.raises(ValueError, match="image_size"):
        write_sample(tmp_path, image_size=8)
