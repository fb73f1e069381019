"""Typed settings of the serving app, validated once, and how they follow SageMaker's variables."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from skinlesion.capture import DEFAULT_VARIANT
from skinlesion.contract import ml_root

DEFAULT_PORT = 8080
MAX_BODY_BYTES = 6 * 1024 * 1024  # a SageMaker real-time endpoint's payload limit (6 MB)
RUNTIMES = ("auto", "onnx", "torchscript", "torch")
# Variables that SageMaker sets on inference containers (and that we honour).
PORT_ENV = "SAGEMAKER_BIND_TO_PORT"
WORKERS_ENV = "SAGEMAKER_MODEL_SERVER_WORKERS"
VERSION_ENV = "SKINLESION_MODEL_VERSION"
SETTINGS_ENV = "SKINLESION_SERVING_SETTINGS"  # how worker processes receive the settings


class ServingConfigError(ValueError):
    """A serving setting is out of range; the message names the accepted values."""


def available_cpus() -> int:
    """CPUs this process may use: the affinity mask, capped by a cgroup CPU quota if any."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    count = count or 1
    quota = _cgroup_cpu_quota()
    return max(1, min(count, math.floor(quota))) if quota else count


def _cgroup_cpu_quota() -> float | None:
    # cgroup v2: "max 100000" or "200000 100000"; v1: cfs_quota_us / cfs_period_us.
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    except (OSError, ValueError):
        return None


def default_threads_per_worker(cpus: int) -> int:
    """Intra-op threads of one worker's model: up to 4 (more splits a small batch too thin)."""
    return max(1, min(4, cpus))


def default_workers(cpus: int) -> int:
    """One worker process per 4 CPUs: each has its own event loop, batcher and model copy."""
    return max(1, cpus // default_threads_per_worker(cpus))


@dataclass(frozen=True)
class ServingSettings:
    """Everything the app needs; ``0`` for workers/threads means "sized to the CPUs"."""

    model_dir: Path = Path("/opt/ml/model")
    host: str = "0.0.0.0"  # a container must listen on every interface
    port: int = DEFAULT_PORT
    workers: int = 0
    threads: int = 0
    runtime: str = "auto"
    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    max_images: int = 16
    max_body_bytes: int = MAX_BODY_BYTES
    max_pixels: int = 36_000_000  # 6000 x 6000; ISIC dermoscopy images reach about 30 MP
    max_side: int = 20_000
    max_concurrency: int = 512  # open requests per worker before uvicorn answers 503
    capture_dir: Path | None = None
    capture_percentage: float = 100.0
    endpoint_name: str = "local"
    variant_name: str = DEFAULT_VARIANT
    model_version: str = ""
    explain: bool = True  # whether ?explain=gradcam is served

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ServingConfigError(
                f"Invalid runtime {self.runtime!r}. Accepted: {', '.join(RUNTIMES)}."
            )
        if not 0 < self.port < 65536:
            raise ServingConfigError(f"Invalid port {self.port}: must be in 1..65535.")
        for name in ("workers", "threads"):
            if getattr(self, name) < 0:
                raise ServingConfigError(f"Invalid {name} {getattr(self, name)}: must be >= 0.")
        for name in ("max_batch_size", "max_images", "max_body_bytes", "max_pixels", "max_side"):
            if getattr(self, name) < 1:
                raise ServingConfigError(f"Invalid {name} {getattr(self, name)}: must be >= 1.")
        if self.max_concurrency < 1:
            raise ServingConfigError(f"Invalid max_concurrency {self.max_concurrency}: >= 1.")
        if not 0 <= self.max_wait_ms <= 1000:
            raise ServingConfigError(f"Invalid max_wait_ms {self.max_wait_ms}: must be 0..1000.")
        if not 0 <= self.capture_percentage <= 100:
            raise ServingConfigError(
                f"Invalid capture_percentage {self.capture_percentage}: must be 0..100."
            )

    def resolved(self, cpus: int | None = None) -> ServingSettings:
        """These settings with workers and threads sized to the CPUs where they are 0."""
        cpus = cpus or available_cpus()
        workers = self.workers or default_workers(cpus)
        threads = self.threads or max(1, min(default_threads_per_worker(cpus), cpus // workers))
        return replace(self, workers=workers, threads=threads)

    def to_json(self) -> str:
        """The settings as JSON (how the parent hands them to worker processes)."""
        raw = asdict(self)
        raw["model_dir"] = str(self.model_dir)
        raw["capture_dir"] = str(self.capture_dir) if self.capture_dir else None
        return json.dumps(raw)

    @classmethod
    def from_json(cls, text: str) -> ServingSettings:
        raw: dict[str, Any] = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ServingConfigError(
                f"Unknown serving settings {sorted(unknown)}. Accepted: {sorted(known)}."
            )
        raw["model_dir"] = Path(raw["model_dir"])
        raw["capture_dir"] = Path(raw["capture_dir"]) if raw.get("capture_dir") else None
        return cls(**raw)

    @classmethod
    def from_sagemaker_environment(cls, env: Mapping[str, str] | None = None) -> ServingSettings:
        """What SageMaker's ``serve`` gets: the model in /opt/ml/model, port and workers by env."""
        env = os.environ if env is None else env
        try:
            port = int(env.get(PORT_ENV, DEFAULT_PORT))
            workers = int(env.get(WORKERS_ENV, 0))
        except ValueError as error:
            raise ServingConfigError(
                f"Invalid {PORT_ENV} or {WORKERS_ENV} ({error}): both must be integers."
            ) from None
        return cls(
            model_dir=ml_root(env) / "model",
            port=port,
            workers=workers,
            model_version=env.get(VERSION_ENV, ""),
        )
