"""Secrets that never reach a log: a ``Secret`` type, and masking of every log record.

A :class:`Secret` prints as ``********`` (``str``, ``repr``, f-strings) and gives its value only
through :meth:`Secret.reveal`. Creating one registers its value; from then on a log record
factory replaces registered values in every record's message and traceback with ``********``,
whichever logger (ours, kfp's, urllib3's) made the record and whichever handler prints it.
"""

from __future__ import annotations

import logging
import threading
from http.cookies import SimpleCookie
from typing import Any

MASK = "********"
# Shorter values would mask ordinary words; no real token, password or cookie is this short.
MIN_SECRET_LENGTH = 4

_lock = threading.Lock()
_secrets: set[str] = set()
_installed = False


def _mask_text(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def mask(text: str) -> str:
    """``text`` with every registered secret replaced by ``********``."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    return _mask_text(text, secrets)


def _masking_factory(previous: Any) -> Any:
    formatter = logging.Formatter()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = previous(*args, **kwargs)
        with _lock:
            secrets = sorted(_secrets, key=len, reverse=True)
        if not secrets:
            return record
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad format string: let logging report it as usual
            return record
        masked = _mask_text(message, secrets)
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_info and not record.exc_text:
            text = formatter.formatException(record.exc_info)
            record.exc_text = _mask_text(text, secrets)
        return record

    factory._skinlesion_masking = True  # type: ignore[attr-defined]
    return factory


def install_masking() -> None:
    """Install the masking log record factory once (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        current = logging.getLogRecordFactory()
        if not getattr(current, "_skinlesion_masking", False):
            logging.setLogRecordFactory(_masking_factory(current))
        _installed = True


def register_secret(value: str) -> None:
    """Mask ``value`` (and, for a cookie header, each cookie's value) in logs from now on."""
    if len(value) < MIN_SECRET_LENGTH:
        return
    parts = {value}
    if "=" in value:
        cookie: SimpleCookie = SimpleCookie()
        try:
            cookie.load(value)
        except Exception:  # not a cookie header: the whole value is masked
            cookie = SimpleCookie()
        parts.update(m.value for m in cookie.values() if len(m.value) >= MIN_SECRET_LENGTH)
    with _lock:
        _secrets.update(parts)
    install_masking()


class Secret:
    """A string that must not be printed: a token, a password, session cookies."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not value:
            raise ValueError("A secret cannot be empty.")
        self._value = value
        register_secret(value)

    def reveal(self) -> str:
        """The value, for the one place that sends it (an HTTP header or form)."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)
