"""Dynamic micro-batching: concurrent requests share one forward pass on one inference thread.

Requests hand their decoded images to :meth:`MicroBatcher.predict` (an awaitable); the inference
thread takes everything queued, up to ``max_batch_size`` images, runs the runtime once, and
resolves each request's future on its event loop. It waits for more only while requests it was
told about (:meth:`MicroBatcher.expect`, e.g. still decoding) are on their way, and never longer
than ``max_wait_s``: a lone request is never delayed, a burst is gathered into one batch.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class _Job:
    images: np.ndarray
    future: asyncio.Future[np.ndarray]
    loop: asyncio.AbstractEventLoop


@dataclass
class BatchStats:
    """Counters for logs, benchmarks and tests."""

    batches: int = 0
    images: int = 0
    largest_batch: int = 0
    sizes: dict[int, int] = field(default_factory=dict)

    def record(self, size: int) -> None:
        self.batches += 1
        self.images += size
        self.largest_batch = max(self.largest_batch, size)
        self.sizes[size] = self.sizes.get(size, 0) + 1


_STOP = object()


def _resolve(future: asyncio.Future[np.ndarray], result: np.ndarray | BaseException) -> None:
    if future.done():  # the request was cancelled (client gone): nothing to deliver
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


class MicroBatcher:
    """Gathers concurrent ``predict`` calls into batches for one ``runtime`` on one thread."""

    def __init__(
        self,
        runtime: Callable[[np.ndarray], np.ndarray],
        *,
        max_batch_size: int = 32,
        max_wait_s: float = 0.005,
    ):
        if max_batch_size < 1:
            raise ValueError(f"Invalid max_batch_size {max_batch_size}: must be >= 1.")
        if max_wait_s < 0:
            raise ValueError(f"Invalid max_wait_s {max_wait_s}: must be >= 0.")
        self.runtime = runtime
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.stats = BatchStats()
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._expected = 0  # requests announced but not yet queued
        self._expected_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    @contextmanager
    def expect(self) -> Iterator[None]:
        """Announce a request that will call ``predict`` soon (while it decodes, say)."""
        with self._expected_lock:
            self._expected += 1
        try:
            yield
        finally:
            with self._expected_lock:
                self._expected -= 1

    async def predict(self, images: np.ndarray) -> np.ndarray:
        """Probabilities (N, C) for uint8 images (N, S, S, 3), computed in a shared batch."""
        if self._thread is None:
            raise RuntimeError("The batcher is not running; call start() first.")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        self._queue.put(_Job(images, future, loop))
        return await future

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        jobs, count = [first], len(first.images)
        deadline = time.monotonic() + self.max_wait_s
        while count < self.max_batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if self._expected <= 0 or remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=min(remaining, 0.0005))
                except queue.Empty:
                    continue
            if item is _STOP:
                return jobs, True
            assert isinstance(item, _Job)
            jobs.append(item)
            count += len(item.images)
        return jobs, False

    def _run(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is _STOP:
                break
            assert isinstance(item, _Job)
            jobs, stopping = self._gather(item)
            self._run_batch(jobs)

    def _run_batch(self, jobs: list[_Job]) -> None:
        batch = jobs[0].images if len(jobs) == 1 else np.concatenate([j.images for j in jobs])
        try:
            probabilities = self.runtime(batch)
        except Exception as error:  # delivered to every waiting request
            log.exception("Inference failed on a batch of %d images", len(batch))
            for job in jobs:
                job.loop.call_soon_threadsafe(_resolve, job.future, error)
            return
        self.stats.record(len(batch))
        start = 0
        for job in jobs:
            end = start + len(job.images)
            job.loop.call_soon_threadsafe(_resolve, job.future, probabilities[start:end])
            start = end
