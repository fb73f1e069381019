"""Backends: where jobs run. ``get_backend("local")`` or ``get_backend("sagemaker")``."""

from __future__ import annotations

from skinlesion.backends.base import Backend

BACKENDS = ("local", "sagemaker")


def get_backend(name: str) -> Backend:
    """Build the named backend from its settings (read now, not at import)."""
    if name == "local":
        from skinlesion.backends.local import LocalBackend

        return LocalBackend.from_environment()
    if name == "sagemaker":
        from skinlesion.backends.sagemaker import SageMakerBackend

        return SageMakerBackend.from_environment()
    raise ValueError(f"Unknown backend {name!r}. Accepted: {', '.join(BACKENDS)}.")
