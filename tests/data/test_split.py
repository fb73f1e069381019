"""The lesion-grouped stratified split and the class weights."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skinlesion.data.isic import IsicRecord
from skinlesion.data.split import class_weights, split_records
from skinlesion.labels import CLASSES


def _records(lesions: list[tuple[int, int]]) -> list[IsicRecord]:
    """Records for (class index, images) per lesion; ids are made up, files are not needed."""
    records = []
    for number, (label, count) in enumerate(lesions):
        for k in range(count):
            image = f"IMG_{number:04d}_{k}"
            records.append(IsicRecord(image, label, f"LES_{number:04d}", Path(f"{image}.jpg")))
    return records


def _imbalanced() -> list[IsicRecord]:
    rng = np.random.default_rng(7)
    lesions_per_class = [60, 200, 30, 12, 40, 5, 6, 3]
    return _records(
        [
            (c, int(rng.choice([1, 1, 2, 3])))
            for c, n in enumerate(lesions_per_class)
            for _ in range(n)
        ]
    )


def _lesions_by_split(result_splits: dict[str, list[IsicRecord]]) -> dict[str, set[str]]:
    return {name: {r.lesion_id for r in records} for name, records in result_splits.items()}


def test_no_lesion_in_two_splits_and_every_class_everywhere() -> None:
    records = _imbalanced()
    result = split_records(records, val_fraction=0.15, test_fraction=0.15, seed=1)
    lesions = _lesions_by_split(result.splits)
    assert not lesions["train"] & lesions["val"]
    assert not lesions["train"] & lesions["test"]
    assert not lesions["val"] & lesions["test"]
    assert sorted(r.image for s in result.splits.values() for r in s) == sorted(
        r.image for r in records
    )
    counts = result.class_counts()
    for split in ("train", "val", "test"):
        assert all(counts[split][c] > 0 for c in CLASSES), (split, counts[split])
    assert result.sparse_classes == {}
    # Shares follow the fractions for a large class (NV: 200 lesions).
    nv = {s: counts[s]["NV"] for s in counts}
    total = sum(nv.values())
    assert abs(nv["test"] / total - 0.15) < 0.03 and abs(nv["val"] / total - 0.15) < 0.03


def test_split_is_deterministic_given_the_seed() -> None:
    records = _imbalanced()
    first = split_records(records, seed=5)
    again = split_records(list(reversed(records)), seed=5)
    other = split_records(records, seed=6)
    as_ids = lambda r: {s: [x.image for x in v] for s, v in r.splits.items()}  # noqa: E731
    assert as_ids(first) == as_ids(again)
    assert as_ids(first) != as_ids(other)


def test_classes_with_too_few_lesions_warn(caplog: pytest.LogCaptureFixture) -> None:
    records = _records([(0, 1)] * 10 + [(1, 1)] * 10 + [(5, 2), (5, 3)])
    with caplog.at_level(logging.WARNING, logger="skinlesion.data.split"):
        result = split_records(records, seed=0)
    assert result.sparse_classes == {"DF": 2}
    assert "DF (2 lesions)" in caplog.text
    assert result.class_counts()["train"]["DF"] > 0  # a rare class is trained on first


def test_mixed_lesion_stays_whole() -> None:
    records = _records([(0, 2)] * 9)
    records.append(IsicRecord("ODD", 1, records[0].lesion_id, Path("ODD.jpg")))
    result = split_records(records, seed=0)
    assert result.mixed_lesions == [records[0].lesion_id]
    homes = {
        s for s, rs in result.splits.items() for r in rs if r.lesion_id == records[0].lesion_id
    }
    assert len(homes) == 1


def test_invalid_fractions_are_rejected() -> None:
    with pytest.raises(ValueError, match="leave room for training"):
        split_records(_records([(0, 1)]), val_fraction=0.5, test_fraction=0.5)


@settings(max_examples=40, deadline=None)
@given(
    lesions=st.lists(st.tuples(st.integers(0, 7), st.integers(1, 4)), min_size=1, max_size=60),
    seed=st.integers(0, 10_000),
)
def test_property_split_partitions_records_by_lesion(
    lesions: list[tuple[int, int]], seed: int
) -> None:
    records = _records(lesions)
    result = split_records(records, seed=seed)
    lesions_by_split = _lesions_by_split(result.splits)
    assert sum(len(v) for v in result.splits.values()) == len(records)
    names = list(lesions_by_split)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not lesions_by_split[a] & lesions_by_split[b]
    per_class = {c: sum(1 for label, _ in lesions if label == c) for c in range(8)}
    counts = result.class_counts()
    for c, n in per_class.items():
        if n >= 3:
            assert all(counts[s][CLASSES[c]] > 0 for s in counts)


def test_class_weights_are_inverse_frequency_with_mean_one() -> None:
    labels = [0] * 10 + [1] * 30 + [2] * 60
    weights = class_weights(labels, num_classes=3)
    assert weights == pytest.approx([2.0, 2 / 3, 1 / 3], rel=1e-5)
    assert np.mean(weights) == pytest.approx(1.0)
    assert weights[0] / weights[2] == pytest.approx(6.0, rel=1e-5)


def test_class_weights_give_absent_classes_zero() -> None:
    weights = class_weights([0, 0, 1, 1, 1, 1], num_classes=3)
    assert weights[2] == 0.0
    assert np.mean(weights[:2]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="empty"):
        class_weights([], num_classes=3)
