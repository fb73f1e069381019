"""The shared sample fixtures produce a usable dataset folder."""

from __future__ import annotations

from pathlib import Path

from skinlesion.data.store import SPLITS, read_manifest, read_split
from skinlesion.labels import CLASSES


def test_preprocessed_dataset_fixture(preprocessed_dataset: Path) -> None:
    manifest = read_manifest(preprocessed_dataset)
    assert manifest["image_size"] == 64
    assert manifest["classes"] == list(CLASSES)
    total = 0
    for split in SPLITS:
        data = read_split(preprocessed_dataset, split)
        assert data.images.shape[1:] == (64, 64, 3)
        assert set(data.labels.tolist()) == set(range(len(CLASSES)))
        total += len(data)
    assert total == 8 * 24
