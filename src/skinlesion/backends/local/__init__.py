"""The local backend: jobs as subprocesses in SageMaker's layout, a folder registry, the serving
app as the endpoint. ``LocalBackend.from_environment()`` reads ``SKINLESION_LOCAL_ROOT``."""

from skinlesion.backends.local.backend import (
    CAPTURE_DIR,
    DEFAULT_ROOT,
    ROOT_ENV,
    LocalBackend,
    LocalSettings,
    ServedModel,
)

__all__ = [
    "CAPTURE_DIR",
    "DEFAULT_ROOT",
    "ROOT_ENV",
    "LocalBackend",
    "LocalSettings",
    "ServedModel",
]
