"""A lean HTTP/1.1 load generator: keep-alive connections on asyncio, raw requests, no client lib.

Lean on purpose: the benchmark runs client and server on one machine, so every CPU cycle the
client spends is taken from the server. Closed loop (``concurrency`` connections, each sending
its next request when the previous answer arrives) for throughput sweeps; paced (a fixed rate,
spread over the connections) for the soak.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class LoadResult:
    """What one load run saw."""

    concurrency: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    transport_errors: int = 0

    @property
    def completed(self) -> int:
        return len(self.latencies_ms)

    @property
    def errors(self) -> int:
        bad = sum(n for status, n in self.statuses.items() if status != 200)
        return bad + self.transport_errors

    def summary(self) -> dict[str, float | int]:
        latencies = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        return {
            "concurrency": self.concurrency,
            "seconds": round(self.seconds, 2),
            "requests": self.completed,
            "errors": self.errors,
            "rps": round(self.completed / self.seconds, 2) if self.seconds else 0.0,
            "p50_ms": round(float(np.percentile(latencies, 50)), 2),
            "p90_ms": round(float(np.percentile(latencies, 90)), 2),
            "p99_ms": round(float(np.percentile(latencies, 99)), 2),
            "max_ms": round(float(latencies.max()), 2),
        }


def _request_bytes(path: str, body: bytes, content_type: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nAccept: application/json\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("The server closed the connection.")
    status = int(status_line.split()[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    await reader.readexactly(length)
    return status


class _Pacer:
    """Hands out send times ``1/rate`` apart; ``None`` means as fast as answers come back."""

    def __init__(self, rate: float | None, start: float):
        self.interval = 1.0 / rate if rate else 0.0
        self.next = start

    async def wait(self) -> None:
        if not self.interval:
            return
        slot, self.next = self.next, self.next + self.interval
        delay = slot - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)


async def _connection(
    host: str,
    port: int,
    requests: itertools.cycle[bytes],
    stop_at: float,
    pacer: _Pacer,
    result: LoadResult,
) -> None:
    reader = writer = None
    while time.perf_counter() < stop_at:
        await pacer.wait()
        if time.perf_counter() >= stop_at:
            break
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            assert reader is not None
            started = time.perf_counter()
            writer.write(next(requests))
            status = await _read_response(reader)
            result.latencies_ms.append((time.perf_counter() - started) * 1000)
            result.statuses[status] = result.statuses.get(status, 0) + 1
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
            result.transport_errors += 1
            if writer is not None:
                writer.close()
            reader = writer = None
            await asyncio.sleep(0.05)
    if writer is not None:
        writer.close()


async def run_load(
    host: str,
    port: int,
    bodies: Sequence[bytes],
    *,
    concurrency: int,
    seconds: float,
    rate: float | None = None,
    path: str = "/invocations",
    content_type: str = "image/jpeg",
) -> LoadResult:
    """``concurrency`` connections for ``seconds``; closed loop, or paced at ``rate`` req/s."""
    payloads = [_request_bytes(path, body, content_type) for body in bodies]
    result = LoadResult(concurrency=concurrency, seconds=seconds)
    started = time.perf_counter()
    pacer = _Pacer(rate, started)
    stop_at = started + seconds
    offsets = range(concurrency)
    await asyncio.gather(
        *(
            _connection(
                host,
                port,
                itertools.cycle(payloads[i % len(payloads) :] + payloads[: i % len(payloads)]),
                stop_at,
                pacer,
                result,
            )
            for i in offsets
        )
    )
    result.seconds = time.perf_counter() - started
    return result


def load(host: str, port: int, bodies: Sequence[bytes], **options: object) -> LoadResult:
    """:func:`run_load` on a fresh event loop (uvloop when installed)."""
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    return runner(run_load(host, port, bodies, **options))  # type: ignore[arg-type]
