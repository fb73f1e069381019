"""The local backend's one job lifecycle: a job as a subprocess in a SageMaker-shaped run folder.

Every local job, training or processing, runs through ``LocalJobRunner.run``: it gets its own
``<root>/jobs/<job name>/opt/ml`` (``SKINLESION_ML_ROOT``), the ``SM_*`` variables a SageMaker
training container gets, and on failure the runner reads the one file that SageMaker would read
for that kind of job (``contract.failure_file``) and raises ``JobFailedError`` with it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from skinlesion.backends.errors import JobFailedError
from skinlesion.contract import ML_ROOT_ENV, JobKind, failure_file

log = logging.getLogger(__name__)


def job_name(stage: str, given: str = "") -> str:
    """``given``, or ``<stage>-<UTC time to the microsecond>``."""
    return given or f"{stage}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S-%f')}"


@dataclass(frozen=True)
class LocalJob:
    """A finished local job: its name and its run folder (the ``/opt/ml`` it was given)."""

    name: str
    ml_root: Path

    @property
    def model_dir(self) -> Path:
        return self.ml_root / "model"

    @property
    def output_data_dir(self) -> Path:
        return self.ml_root / "output" / "data"


class LocalJobRunner:
    """Runs ``python -m <module>`` as a training or processing job under ``root``."""

    def __init__(self, root: Path, python: str) -> None:
        self.root = root
        self.python = python

    def run(
        self,
        kind: JobKind,
        name: str,
        module: str,
        args: Sequence[str] = (),
        *,
        hyperparameters: Mapping[str, str] | None = None,
        channels: Mapping[str, Path] | None = None,
        checkpoint_dir: Path | None = None,
        processes: int = 1,
    ) -> LocalJob:
        """Run the job to its end; ``JobFailedError`` with its own failure reason if it fails.

        ``processes`` > 1 (a training job's instance count) runs the module under torchrun on this
        machine, one process standing in for each instance (gloo on CPU).
        """
        if processes < 1:
            raise ValueError(f"Invalid processes {processes}: must be >= 1.")
        ml_root = self.root / name / "opt" / "ml"
        (ml_root / "output").mkdir(parents=True, exist_ok=True)
        env = {ML_ROOT_ENV: str(ml_root)}
        if kind is JobKind.TRAINING:
            env.update(
                self._training_environment(ml_root, hyperparameters, channels, checkpoint_dir)
            )
        command = [self.python, "-m", module, *args]
        if processes > 1:
            command = [
                self.python, "-m", "torch.distributed.run", "--standalone",
                f"--nproc-per-node={processes}", "-m", module, *args,
            ]  # fmt: skip
        log.info("job %s: %s", name, " ".join(command))
        started = time.monotonic()
        process = subprocess.run(command, env={**os.environ, **env}, check=False)
        if process.returncode != 0:
            reason_file = failure_file(kind, ml_root)
            reason = reason_file.read_text().strip() if reason_file.exists() else ""
            first_line = reason.splitlines()[0] if reason else ""
            # A job killed by a signal (the OOM killer, a stop) may succeed when run again; a
            # job that exited with its own reason failed on its data, parameters or code.
            killed = process.returncode < 0
            raise JobFailedError(
                f"local {kind} job",
                name,
                first_line or f"exit code {process.returncode}, no failure reason in {reason_file}",
                retryable=killed,
            )
        log.info("job %s finished in %.1f s", name, time.monotonic() - started)
        return LocalJob(name, ml_root)

    @staticmethod
    def _training_environment(
        ml_root: Path,
        hyperparameters: Mapping[str, str] | None,
        channels: Mapping[str, Path] | None,
        checkpoint_dir: Path | None,
    ) -> dict[str, str]:
        """What SageMaker gives a training container: the config file and the ``SM_*`` variables."""
        config_dir = ml_root / "input" / "config"
        config_dir.mkdir(parents=True, exist_ok=True)
        hps = dict(hyperparameters or {})
        (config_dir / "hyperparameters.json").write_text(json.dumps(hps, indent=2))
        env = {
            "SM_MODEL_DIR": str(ml_root / "model"),
            "SM_OUTPUT_DATA_DIR": str(ml_root / "output" / "data"),
            "SM_CHECKPOINT_DIR": str(checkpoint_dir or ml_root / "checkpoints"),
            "SM_HPS": json.dumps(hps),
        }
        for channel, path in (channels or {}).items():
            env[f"SM_CHANNEL_{channel.upper()}"] = str(path)
        return env
