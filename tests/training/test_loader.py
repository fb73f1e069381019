"""The memmap batch dataset and the epoch-seeded, rank-sharded batch sampler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from skinlesion.data.store import read_split
from skinlesion.training.loader import (
    EpochBatchSampler,
    FixedBatchSampler,
    SplitDataset,
    make_loader,
    shard_indices,
)


def test_getitems_returns_rows_in_request_order_with_repeats(synthetic_dataset: Path) -> None:
    split = read_split(synthetic_dataset, "train")
    dataset = SplitDataset(split.images, split.labels)
    images, labels, metadata = dataset.__getitems__([5, 2, 5, 90])
    assert images.dtype == torch.uint8 and images.shape == (4, 32, 32, 3)
    assert metadata.shape == (4, 0)  # no metadata given: an empty column block
    for row, index in zip(images, [5, 2, 5, 90], strict=True):
        assert np.array_equal(row.numpy(), split.images[index])
    assert labels.tolist() == split.labels[[5, 2, 5, 90]].tolist()


def test_loader_yields_whole_uint8_batches(synthetic_dataset: Path) -> None:
    split = read_split(synthetic_dataset, "val")
    loader = make_loader(
        SplitDataset(split.images, split.labels), FixedBatchSampler(range(len(split)), 20)
    )
    sizes = [len(labels) for _, labels, _ in loader]
    assert sizes == [20, 20, 8]


def test_order_depends_on_seed_and_epoch_only() -> None:
    sampler = EpochBatchSampler(50, 8, seed=1)
    sampler.set_epoch(3)
    first = list(sampler)
    again = EpochBatchSampler(50, 8, seed=1)
    again.load_state_dict(sampler.state_dict())
    assert list(again) == first
    sampler.set_epoch(4)
    assert list(sampler) != first
    assert len(first) == 6 and all(len(b) == 8 for b in first)  # drop_last


def test_ranks_partition_the_epoch() -> None:
    shards = []
    for rank in range(3):
        sampler = EpochBatchSampler(30, 5, seed=0, rank=rank, world_size=3)
        sampler.set_epoch(1)
        shards.append([i for batch in sampler for i in batch])
    assert sorted(i for shard in shards for i in shard) == list(range(30))
    evaluated = [i for r in range(3) for i in shard_indices(31, r, 3)]
    assert sorted(evaluated) == list(range(31))


def test_weighted_sampling_balances_classes_and_max_batches_caps() -> None:
    labels = np.array([0] * 90 + [1] * 10)
    weights = np.where(labels == 0, 1 / 90, 1 / 10)
    sampler = EpochBatchSampler(100, 10, weights=weights, seed=0, max_batches=0)
    drawn = []
    for epoch in range(20):
        sampler.set_epoch(epoch)
        drawn += [i for batch in sampler for i in batch]
    share_minority = (labels[drawn] == 1).mean()
    assert 0.4 < share_minority < 0.6
    assert len(EpochBatchSampler(100, 10, max_batches=3)) == 3
    assert len(EpochBatchSampler(5, 10)) == 1  # a split smaller than a batch still trains


def test_sampler_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="empty split"):
        EpochBatchSampler(0, 4)
    with pytest.raises(ValueError, match="rank 2"):
        EpochBatchSampler(10, 4, rank=2, world_size=2)


def test_metadata_rows_follow_their_images_and_must_match_in_length(
    synthetic_dataset: Path,
) -> None:
    split = read_split(synthetic_dataset, "train")
    rows = np.arange(len(split) * 3, dtype=np.float32).reshape(len(split), 3)
    _, _, metadata = SplitDataset(split.images, split.labels, rows).__getitems__([7, 1])
    assert metadata.tolist() == rows[[7, 1]].tolist()
    with pytest.raises(ValueError, match="Metadata"):
        SplitDataset(split.images, split.labels, rows[:-1])
