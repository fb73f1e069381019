"""Backends: where jobs run. ``get_backend("local")`` or ``get_backend("sagemaker")``."""

from __future__ import annotations

from pathlib import Path

from skinlesion.backends.base import Backend

BACKENDS = ("local", "sagemaker")


def get_backend(name: str, *, local_root: Path | None = None) -> Backend:
    """Build the named backend from its settings (read now, not at import).

    ``local_root`` overrides the local backend's folder (the CLI's ``--local-root``).
    """
    if name == "local":
        from skinlesion.backends.local import LocalBackend, LocalSettings

        if local_root is not None:
            return LocalBackend(LocalSettings(root=local_root.resolve()))
        return LocalBackend.from_environment()
    if name == "sagemaker":
        from skinlesion.backends.sagemaker import SageMakerBackend

        return SageMakerBackend.from_environment()
    raise ValueError(f"Unknown backend {name!r}. Accepted: {', '.join(BACKENDS)}.")
