"""Batches from the memory-mapped uint8 split arrays: a batched Dataset and an epoch-seeded sampler.

Batches stay uint8 (N, H, W, 3) until they reach the training device, so the loader only copies
bytes; conversion, augmentation and normalisation happen batched on the device.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class SplitDataset(Dataset[Batch]):
    """Rows of a split; ``__getitems__`` reads a whole batch from the memmap in one go.

    A batch is (images, labels, metadata): metadata is (N, patient.FEATURES) float32 when the
    dataset has it, else (N, 0).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, metadata: np.ndarray | None = None):
        if len(images) != len(labels):
            raise ValueError(f"Images ({len(images)}) and labels ({len(labels)}) differ in length.")
        if metadata is not None and len(metadata) != len(labels):
            raise ValueError(
                f"Metadata ({len(metadata)} rows) and labels ({len(labels)}) differ in length."
            )
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.metadata = (
            np.zeros((len(self.labels), 0), np.float32)
            if metadata is None
            else np.asarray(metadata, dtype=np.float32)
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Batch:
        return self.__getitems__([index])

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        order = np.asarray(indices, dtype=np.int64)
        # Read each needed row once, in file order (kind to the page cache), then reorder.
        unique, inverse = np.unique(order, return_inverse=True)
        images = np.ascontiguousarray(self.images[unique][inverse])
        return (
            torch.from_numpy(images),
            torch.from_numpy(self.labels[order]),
            torch.from_numpy(self.metadata[order]),
        )


def _as_batch(batch: Any) -> Any:
    # The dataset's __getitems__ already returns a collated batch.
    return batch


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of indices whose order is a function of (seed, epoch) alone.

    Shuffled permutation, or draws with replacement by per-sample ``weights`` (class balancing);
    sharded over ``world_size`` ranks like DistributedSampler. Because the order depends only on
    the seed and the epoch, a resumed run replays exactly the batches of an uninterrupted one.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        *,
        shuffle: bool = True,
        weights: np.ndarray | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
        max_batches: int = 0,
    ):
        if num_samples < 1:
            raise ValueError("Cannot sample batches from an empty split.")
        if batch_size < 1:
            raise ValueError(f"Invalid batch_size {batch_size}: must be >= 1.")
        if not 0 <= rank < world_size:
            raise ValueError(f"Invalid rank {rank} for world size {world_size}.")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.max_batches = max_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])

    def _shard_size(self) -> int:
        return math.ceil(self.num_samples / self.world_size)

    def _indices(self) -> torch.Tensor:
        generator = torch.Generator()
        generator.manual_seed(self.seed * 100_003 + self.epoch)
        n = self.num_samples
        if self.weights is not None:
            order = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        elif self.shuffle:
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        total = self._shard_size() * self.world_size
        if total > n:  # pad by repeating the head, as DistributedSampler does
            order = torch.cat([order, order[: total - n]])
        return order[self.rank : total : self.world_size]

    def __len__(self) -> int:
        shard = self._shard_size()
        batches = shard // self.batch_size if self.drop_last else math.ceil(shard / self.batch_size)
        if batches == 0:  # a split smaller than one batch still gives one step
            batches = 1
        return min(batches, self.max_batches) if self.max_batches else batches

    def __iter__(self) -> Iterator[list[int]]:
        indices = self._indices().tolist()
        for batch_number in range(len(self)):
            start = batch_number * self.batch_size
            yield indices[start : start + self.batch_size]


def shard_indices(num_samples: int, rank: int, world_size: int) -> list[int]:
    """Every row exactly once over all ranks (for evaluation: no padding, no duplicates)."""
    return list(range(rank, num_samples, world_size))


class FixedBatchSampler(Sampler[list[int]]):
    """Consecutive batches over a fixed list of indices, in order."""

    def __init__(self, indices: Sequence[int], batch_size: int):
        self.indices = list(indices)
        self.batch_size = batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        for start in range(0, len(self.indices), self.batch_size):
            yield self.indices[start : start + self.batch_size]


def make_loader(
    dataset: SplitDataset,
    batch_sampler: Sampler[list[int]],
    *,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader[Batch]:
    """A DataLoader that hands over whole uint8 batches from ``dataset.__getitems__``."""
    return DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        collate_fn=_as_batch,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )
