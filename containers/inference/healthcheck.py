#!/usr/bin/env python3
"""Container health check: exit 0 when the inference app answers ``GET /ping`` with 200.

Docker (and anything that honours HEALTHCHECK) runs it inside the container; SageMaker makes the
same call itself. The port is SageMaker's ``SAGEMAKER_BIND_TO_PORT``, 8080 by default.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping

DEFAULT_PORT = "8080"
TIMEOUT_SECONDS = 4.0


def ping_url(env: Mapping[str, str]) -> str:
    """The app's health URL on this container's loopback."""
    port = env.get("SAGEMAKER_BIND_TO_PORT") or DEFAULT_PORT
    return f"http://127.0.0.1:{port}/ping"


def healthy(url: str, timeout: float = TIMEOUT_SECONDS) -> bool:
    """True when ``url`` answers 200 within ``timeout`` seconds."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def main() -> int:
    """0 when healthy, 1 otherwise (Docker's HEALTHCHECK convention)."""
    return 0 if healthy(ping_url(os.environ)) else 1


if __name__ == "__main__":
    sys.exit(main())
