"""The micro-batcher: concurrent requests share batches, and each gets its own rows back."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from skinlesion.serving.batcher import MicroBatcher


def mean_pixel(images: np.ndarray) -> np.ndarray:
    """A stand-in runtime whose output identifies its input: one row (mean pixel, count)."""
    time.sleep(0.01)  # long enough for concurrent requests to queue up behind a batch
    means = images.reshape(len(images), -1).mean(axis=1)
    return np.stack([means, np.full(len(images), len(images))], axis=1).astype(np.float32)


def images_of(value: int, count: int = 1) -> np.ndarray:
    return np.full((count, 4, 4, 3), value, np.uint8)


def test_concurrent_requests_are_batched_and_answered_in_order() -> None:
    batcher = MicroBatcher(mean_pixel, max_batch_size=32, max_wait_s=0.005)
    batcher.start()

    async def main() -> list[np.ndarray]:
        return await asyncio.gather(*(batcher.predict(images_of(v, 1 + v % 3)) for v in range(40)))

    try:
        results = asyncio.run(main())
    finally:
        batcher.stop()
    for value, rows in enumerate(results):
        assert rows.shape == (1 + value % 3, 2)
        assert np.all(rows[:, 0] == value)
    assert batcher.stats.images == sum(1 + v % 3 for v in range(40))
    assert 1 < batcher.stats.largest_batch <= 32 + 2
    assert batcher.stats.batches < 40


def test_a_lone_request_is_not_held_for_the_wait() -> None:
    calls: list[int] = []

    def runtime(images: np.ndarray) -> np.ndarray:
        calls.append(len(images))
        return np.zeros((len(images), 2), np.float32)

    batcher = MicroBatcher(runtime, max_batch_size=32, max_wait_s=30.0)
    batcher.start()
    try:
        started = time.monotonic()
        asyncio.run(batcher.predict(images_of(1)))
        # Nothing was announced with expect(): no reason to wait 30 s for company.
        assert time.monotonic() - started < 20.0
    finally:
        batcher.stop()
    assert calls == [1]


def test_announced_requests_are_waited_for() -> None:
    batcher = MicroBatcher(mean_pixel, max_batch_size=32, max_wait_s=2.0)
    batcher.start()

    async def main() -> None:
        async def late() -> np.ndarray:
            with batcher.expect():
                await asyncio.sleep(0.05)  # decoding
            return await batcher.predict(images_of(2))

        late_task = asyncio.ensure_future(late())
        await asyncio.sleep(0.01)
        first, second = await asyncio.gather(batcher.predict(images_of(1)), late_task)
        assert first[0, 1] == second[0, 1] == 2  # both rows came from one batch of two

    try:
        asyncio.run(main())
    finally:
        batcher.stop()


def test_a_failing_batch_fails_its_requests_and_the_thread_survives() -> None:
    failing = threading.Event()
    failing.set()

    def runtime(images: np.ndarray) -> np.ndarray:
        if failing.is_set():
            raise RuntimeError("boom")
        return np.ones((len(images), 2), np.float32)

    batcher = MicroBatcher(runtime)
    batcher.start()
    try:
        with pytest.raises(RuntimeError, match="boom"):
            asyncio.run(batcher.predict(images_of(1)))
        failing.clear()
        assert asyncio.run(batcher.predict(images_of(1))).shape == (1, 2)
    finally:
        batcher.stop()


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        MicroBatcher(mean_pixel, max_batch_size=0)
    with pytest.raises(ValueError, match="max_wait_s"):
        MicroBatcher(mean_pixel, max_wait_s=-1)
