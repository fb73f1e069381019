"""The local endpoint's front for champion and challenger: one URL, requests split by weight.

SageMaker splits an endpoint's requests between its production variants by their weights and
names the variant that answered in the ``X-Amzn-Invoked-Production-Variant`` response header.
Locally each variant is a serving process of its own (its capture under
``<capture root>/<endpoint>/<variant>/``, as SageMaker writes it) and this router sits in front:
``POST /invocations`` goes to one variant, chosen by smooth weighted round robin (nginx's
algorithm: deterministic, and any run of requests follows the weights as closely as whole
requests can), and comes back with the variant's headers, the variant header included.
``GET /ping`` is 200 when every variant with a weight above 0 answers its own ``/ping``; other
GET routes (the try page, ``/model``) go to the champion.

The weights live in a JSON file (``{"variants": {"<name>": {"url": ..., "weight": ...}}}``)
that the router reads again when it changes, so a traffic shift needs no restart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skinlesion.backends.base import check_weights, variant_shares
from skinlesion.capture import CHAMPION_VARIANT
from skinlesion.serving.app import Receive, Scope, Send, _headers, _read_body, _send
from skinlesion.serving.requests import RequestError
from skinlesion.serving.settings import MAX_BODY_BYTES

log = logging.getLogger(__name__)

FORWARDED_HEADERS = ("content-type", "accept")
TIMEOUT_S = 60.0  # SageMaker's real-time invocation limit


@dataclass(frozen=True)
class Route:
    """One variant behind the router: where it listens and its weight."""

    name: str
    url: str
    weight: float


def read_routes(path: Path) -> list[Route]:
    """The variants of a weights file, checked: known names, weights >= 0, not all 0."""
    raw = json.loads(path.read_text())
    variants: Mapping[str, Any] = raw.get("variants", {})
    if not variants:
        raise ValueError(f"{path} names no variants: expected {{'variants': {{name: ...}}}}.")
    weights = check_weights({n: v["weight"] for n, v in variants.items()}, list(variants))
    variant_shares(weights)
    return [Route(name, str(variants[name]["url"]), weights[name]) for name in variants]


def write_routes(path: Path, routes: Sequence[Route]) -> None:
    """Write the weights file atomically (the router may be reading it)."""
    body = {"variants": {r.name: {"url": r.url, "weight": r.weight} for r in routes}}
    scratch = path.with_suffix(".tmp")
    scratch.write_text(json.dumps(body, indent=2))
    scratch.replace(path)


class WeightedRoundRobin:
    """Smooth weighted round robin: each pick adds every weight to its running total, takes the
    largest, and subtracts the sum from it; over n picks each variant gets its share within one."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = list(routes)
        self._current = {r.name: 0.0 for r in self.routes}
        self._lock = threading.Lock()

    def pick(self) -> Route:
        """The next variant to answer."""
        with self._lock:
            total = sum(r.weight for r in self.routes)
            for route in self.routes:
                self._current[route.name] += route.weight
            chosen = max(self.routes, key=lambda r: self._current[r.name])
            self._current[chosen.name] -= total
            return chosen


class RouterApp:
    """The ASGI app of the router; ``weights_file`` is read again whenever it changes."""

    def __init__(self, weights_file: Path, *, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.weights_file = weights_file
        self.max_body_bytes = max_body_bytes
        self._mtime = -1.0
        self._balancer = WeightedRoundRobin(read_routes(weights_file))
        self._mtime = weights_file.stat().st_mtime
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="forward")

    def balancer(self) -> WeightedRoundRobin:
        """The balancer of the weights file's current content."""
        mtime = self.weights_file.stat().st_mtime
        if mtime != self._mtime:
            self._balancer = WeightedRoundRobin(read_routes(self.weights_file))
            self._mtime = mtime
            log.info("Weights now %s", {r.name: r.weight for r in self._balancer.routes})
        return self._balancer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    self._pool.shutdown(wait=False, cancel_futures=True)
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        try:
            await self._route(scope, receive, send)
        except RequestError as error:
            await _send(send, error.status, error.to_json())

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"].rstrip("/") or "/", scope["method"]
        loop = asyncio.get_running_loop()
        balancer = self.balancer()
        if path == "/ping" and method in ("GET", "HEAD"):
            serving = [r for r in balancer.routes if r.weight > 0]
            states = await asyncio.gather(
                *(
                    loop.run_in_executor(self._pool, _forward, f"{r.url}/ping", None, {})
                    for r in serving
                )
            )
            ready = all(status == 200 for status, _, _ in states)
            state = {"status": "ok" if ready else "loading", "variants": [r.name for r in serving]}
            await _send(send, 200 if ready else 503, json.dumps(state).encode())
            return
        if path == "/invocations" and method == "POST":
            body = await _read_body(receive, self.max_body_bytes)
            headers = {k: v for k, v in _headers(scope).items() if k in FORWARDED_HEADERS}
            route = balancer.pick()
            query = scope.get("query_string", b"").decode("latin-1")
            url = f"{route.url}/invocations" + (f"?{query}" if query else "")
        elif method in ("GET", "HEAD"):
            champion = next(
                (r for r in balancer.routes if r.name == CHAMPION_VARIANT), balancer.routes[0]
            )
            body, headers, url = b"", {}, champion.url + path
        else:
            raise RequestError(405, f"{method} is not allowed on {path}.", "POST /invocations")
        status, answer_headers, answer = await loop.run_in_executor(
            self._pool, _forward, url, body if method == "POST" else None, headers
        )
        content_type = answer_headers.pop("content-type", "application/json")
        answer_headers.pop("content-length", None)
        extra = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer_headers.items()]
        await _send(send, status, answer, extra=extra, content_type=content_type)


def _forward(
    url: str, body: bytes | None, headers: Mapping[str, str]
) -> tuple[int, dict[str, str], bytes]:
    """One request to a variant; its status, lower-cased headers and body (errors included)."""
    request = urllib.request.Request(url, data=body, headers=dict(headers))
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.status, _lower(response.headers.items()), response.read()
    except urllib.error.HTTPError as error:
        return error.code, _lower(error.headers.items()), error.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
        message = {"error": f"The variant at {url} did not answer: {error}", "accepted": ""}
        return 502, {}, json.dumps(message).encode()


def _lower(items: Any) -> dict[str, str]:
    skipped = {"connection", "transfer-encoding", "date", "server", "keep-alive"}
    return {k.lower(): v for k, v in items if k.lower() not in skipped}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m skinlesion.serving.router --weights-file F --port P``: serve until stopped."""
    import uvicorn

    from skinlesion.logs import configure_logging

    parser = argparse.ArgumentParser(prog="python -m skinlesion.serving.router")
    parser.add_argument("--weights-file", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    configure_logging(None)
    app = RouterApp(args.weights_file)
    uvicorn.run(app, host=args.host, port=args.port, lifespan="on", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
