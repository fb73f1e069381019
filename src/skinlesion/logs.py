"""Logging set-up shared by the CLI, the jobs and the components."""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg, unused-ignore]
    """Writes to whatever ``sys.stderr`` is at emit time (pytest swaps it between tests)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def configure_logging(level: str | int | None = None) -> None:
    """Send log records to stderr once; ``SKINLESION_LOG_LEVEL`` overrides the default INFO."""
    chosen = level or os.environ.get("SKINLESION_LOG_LEVEL", "INFO")
    root = logging.getLogger()
    if not any(getattr(h, "_skinlesion", False) for h in root.handlers):
        handler = _CurrentStderrHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._skinlesion = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(chosen)
