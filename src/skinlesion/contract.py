"""SageMaker's container contract: where a job finds its inputs and puts its outputs, and the
one entry wrapper every job's ``main()`` runs through.

The same module runs inside a SageMaker container (paths under ``/opt/ml``) and as a local
subprocess, where the local backend points ``SKINLESION_ML_ROOT`` at a run directory of its own
that has the same layout and sets the same ``SM_*`` variables. Jobs read only this contract; the
trainer additionally asks whether ``TRAINING_JOB_NAME`` is set, to decide whether to show a
progress bar (SageMaker's log is not a terminal), which changes nothing it computes.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_ML_ROOT = "/opt/ml"
ML_ROOT_ENV = "SKINLESION_ML_ROOT"

# Processing jobs get their paths as arguments; these are the defaults that the SageMaker
# backend's ProcessingInputs/Outputs use.
PROCESSING_INPUT = "/opt/ml/processing/input"
PROCESSING_OUTPUT = "/opt/ml/processing/output"


def ml_root(env: Mapping[str, str] | None = None) -> Path:
    """The root of the contract paths: ``/opt/ml`` in a container, a run directory locally."""
    env = os.environ if env is None else env
    return Path(env.get(ML_ROOT_ENV, DEFAULT_ML_ROOT))


@dataclass(frozen=True)
class TrainingEnvironment:
    """What a SageMaker training container is given, read once at the job's start."""

    hyperparameters: dict[str, str]
    channels: dict[str, Path]
    model_dir: Path
    output_data_dir: Path
    checkpoint_dir: Path
    failure_file: Path
    current_host: str
    hosts: tuple[str, ...]

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> TrainingEnvironment:
        """Read the contract: ``SM_*`` variables win, else the ``/opt/ml`` layout."""
        env = os.environ if env is None else env
        root = ml_root(env)
        config_dir = Path(env.get("SM_INPUT_CONFIG_DIR", root / "input" / "config"))
        hp_file = config_dir / "hyperparameters.json"
        hyperparameters: dict[str, str] = {}
        if "SM_HPS" in env:
            hyperparameters = {k: _as_string(v) for k, v in json.loads(env["SM_HPS"]).items()}
        elif hp_file.exists():
            hyperparameters = {k: _as_string(v) for k, v in json.loads(hp_file.read_text()).items()}
        data_dir = Path(env.get("SM_INPUT_DATA_DIR", root / "input" / "data"))
        channels: dict[str, Path] = {}
        if data_dir.is_dir():
            channels = {p.name: p for p in sorted(data_dir.iterdir()) if p.is_dir()}
        for key, value in env.items():
            if key.startswith("SM_CHANNEL_"):
                channels[key.removeprefix("SM_CHANNEL_").lower()] = Path(value)
        resource_file = config_dir / "resourceconfig.json"
        current_host, hosts = "algo-1", ("algo-1",)
        if resource_file.exists():
            resource = json.loads(resource_file.read_text())
            current_host = resource.get("current_host", current_host)
            hosts = tuple(resource.get("hosts", hosts))
        return cls(
            hyperparameters=hyperparameters,
            channels=channels,
            model_dir=Path(env.get("SM_MODEL_DIR", root / "model")),
            output_data_dir=Path(env.get("SM_OUTPUT_DATA_DIR", root / "output" / "data")),
            checkpoint_dir=Path(env.get("SM_CHECKPOINT_DIR", root / "checkpoints")),
            failure_file=failure_file(JobKind.TRAINING, root),
            current_host=current_host,
            hosts=hosts,
        )

    def channel(self, name: str) -> Path:
        """The local directory of an input channel, with an error that lists the channels given."""
        try:
            return self.channels[name]
        except KeyError:
            given = ", ".join(sorted(self.channels)) or "none"
            raise FileNotFoundError(
                f"Training channel {name!r} was not provided (channels given: {given}). "
                f"Expected it under {ml_root()}/input/data/{name} or SM_CHANNEL_{name.upper()}."
            ) from None


class JobKind(enum.StrEnum):
    """SageMaker's two kinds of job; each reads its failure reason from its own file."""

    TRAINING = "training"
    PROCESSING = "processing"


def failure_file(kind: JobKind, root: Path | None = None) -> Path:
    """Where SageMaker reads a failed job's reason: ``output/failure`` for a training job (shown
    as FailureReason), ``output/message`` for a processing job (shown as ExitMessage)."""
    root = ml_root() if root is None else root
    return root / "output" / ("failure" if kind is JobKind.TRAINING else "message")


def run_job(kind: JobKind, what: str, body: Callable[[], object]) -> int:
    """Run a job's body; on an error log it, leave its reason where SageMaker reads it, return 1.

    Every job's ``main()`` ends here, so every job fails the same way: exit status 1 and the
    reason (type and message first, then the traceback) in ``failure_file(kind)``.
    """
    try:
        body()
    except Exception as error:
        # The traceback first, the reason last: the last line of a job's log says why.
        log.error("%s", traceback.format_exc().rstrip())
        log.error("%s failed: %s: %s", what, type(error).__name__, error)
        try:
            write_failure(failure_file(kind), error)
        except OSError as write_error:  # outside a container /opt/ml may not be writable
            log.warning("Could not write the failure reason: %s", write_error)
        return 1
    return 0


def _as_string(value: object) -> str:
    # SageMaker passes every hyperparameter as a string; JSON files written by hand may not.
    return value if isinstance(value, str) else json.dumps(value)


def write_failure(failure_file: Path, error: BaseException) -> None:
    """Write the reason SageMaker shows as FailureReason (it keeps the first 1 KiB)."""
    failure_file.parent.mkdir(parents=True, exist_ok=True)
    text = f"{type(error).__name__}: {error}\n\n{traceback.format_exc()}"
    failure_file.write_text(text)
