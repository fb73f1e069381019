"""The local backend: jobs as subprocesses with SageMaker's layout, a folder registry, and the
serving app as the endpoint. ``make demo`` and the tests run the pipeline on it."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from skinlesion import artifacts, storage
from skinlesion.backends.base import (
    ApprovalStatus,
    Backend,
    DeployRequest,
    Endpoint,
    EvaluateRequest,
    JobResult,
    ModelVersion,
    PreprocessRequest,
    RegisterRequest,
    TrainRequest,
    decide_approval,
)
from skinlesion.contract import ML_ROOT_ENV
from skinlesion.registry import LocalModelRegistry

log = logging.getLogger(__name__)

ROOT_ENV = "SKINLESION_LOCAL_ROOT"
DEFAULT_ROOT = ".skinlesion"


class LocalJobError(RuntimeError):
    """A local job exited non-zero; the message carries its failure reason."""


@dataclass(frozen=True)
class LocalSettings:
    root: Path
    python: str = sys.executable
    endpoint_host: str = "127.0.0.1"
    endpoint_start_timeout: float = 120.0

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> LocalSettings:
        env = os.environ if env is None else env
        return cls(root=Path(env.get(ROOT_ENV, DEFAULT_ROOT)).resolve())


def _job_name(stage: str, given: str) -> str:
    if given:
        return given
    return f"{stage}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S-%f')}"


class LocalBackend(Backend):
    """Runs every stage on this machine."""

    name = "local"

    def __init__(self, settings: LocalSettings) -> None:
        self.settings = settings
        self.registry = LocalModelRegistry(settings.root / "registry")

    @classmethod
    def from_environment(cls) -> LocalBackend:
        return cls(LocalSettings.from_environment())

    # -- jobs -------------------------------------------------------------------------------
    def _run(self, job_name: str, module: str, args: Sequence[str], env: Mapping[str, str]) -> None:
        """Run ``python -m module`` and stream its output into this process's log."""
        command = [self.settings.python, "-m", module, *args]
        log.info("job %s: %s", job_name, " ".join(command))
        started = time.monotonic()
        process = subprocess.run(command, env={**os.environ, **env}, check=False)
        elapsed = time.monotonic() - started
        if process.returncode != 0:
            failure = Path(env.get(ML_ROOT_ENV, "")) / "output" / "failure"
            reason = (
                failure.read_text().strip() if env.get(ML_ROOT_ENV) and failure.exists() else ""
            )
            raise LocalJobError(
                f"Job {job_name} ({module}) failed with exit code {process.returncode}"
                + (f": {reason.splitlines()[0]}" if reason else "; see its log above.")
            )
        log.info("job %s finished in %.1f s", job_name, elapsed)

    def preprocess(self, request: PreprocessRequest) -> JobResult:
        job_name = _job_name("preprocess", request.job_name)
        config = request.config
        data = storage.local_path(request.data_uri)
        output = storage.local_path(request.output_uri)
        args = [
            "--input", str(data), "--output", str(output),
            "--image-size", str(config.image_size),
            "--val-fraction", str(config.val_fraction),
            "--test-fraction", str(config.test_fraction),
            "--seed", str(config.seed),
            "--max-invalid-fraction", str(config.max_invalid_fraction),
            "--workers", str(config.workers),
        ]  # fmt: skip
        if request.labels:
            args += ["--labels", request.labels]
        self._run(job_name, "skinlesion.jobs.preprocess", args, {})
        manifest = json.loads((output / "manifest.json").read_text())
        return JobResult(
            job_name=job_name,
            status="Completed",
            outputs={"dataset": str(output)},
            details={"splits": manifest.get("splits", {})},
        )

    def train(self, request: TrainRequest) -> JobResult:
        job_name = _job_name("train", request.job_name)
        job_root = self.settings.root / "jobs" / job_name / "opt" / "ml"
        config_dir = job_root / "input" / "config"
        config_dir.mkdir(parents=True, exist_ok=True)
        (config_dir / "hyperparameters.json").write_text(
            json.dumps(request.config.to_hyperparameters(), indent=2)
        )
        checkpoints = (
            storage.local_path(request.checkpoint_uri)
            if request.checkpoint_uri
            else job_root / "checkpoints"
        )
        env = {
            ML_ROOT_ENV: str(job_root),
            "SM_CHANNEL_TRAIN": str(storage.local_path(request.dataset_uri)),
            "SM_MODEL_DIR": str(job_root / "model"),
            "SM_OUTPUT_DATA_DIR": str(job_root / "output" / "data"),
            "SM_CHECKPOINT_DIR": str(checkpoints),
            "SM_HPS": json.dumps(request.config.to_hyperparameters()),
        }
        self._run(job_name, "skinlesion.jobs.train", [], env)
        # SageMaker tars SM_MODEL_DIR into model.tar.gz; do the same with the same code path.
        archive = artifacts.pack_model(
            job_root / "model", storage.local_path(request.model_uri) / artifacts.MODEL_ARCHIVE
        )
        spec = artifacts.ModelSpec.read(job_root / "model")
        return JobResult(
            job_name=job_name,
            status="Completed",
            outputs={"model_data": str(archive), "output_data": str(job_root / "output" / "data")},
            metrics=dict(spec.metrics),
        )

    def evaluate(self, request: EvaluateRequest) -> JobResult:
        job_name = _job_name("evaluate", request.job_name)
        output = storage.local_path(request.output_uri)
        args = [
            "--dataset", str(storage.local_path(request.dataset_uri)),
            "--model", str(storage.local_path(request.model_uri)),
            "--output", str(output),
        ]  # fmt: skip
        self._run(job_name, "skinlesion.jobs.evaluate", args, {})
        metrics = json.loads((output / "metrics.json").read_text())
        return JobResult(
            job_name=job_name,
            status="Completed",
            outputs={"evaluation": str(output)},
            metrics={k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
        )

    # -- registry ---------------------------------------------------------------------------
    def register(self, request: RegisterRequest) -> ModelVersion:
        approved = [
            v
            for v in self.registry.list_versions(request.model_group)
            if v.approval_status is ApprovalStatus.APPROVED
        ]
        status = decide_approval(
            request.metrics,
            approved,
            gate_passed=request.gate_passed,
            margin=request.approval_margin,
        )
        model_dir = storage.local_path(request.model_uri)
        archive = model_dir if model_dir.is_file() else model_dir / artifacts.MODEL_ARCHIVE
        if not archive.exists():
            raise FileNotFoundError(f"No {artifacts.MODEL_ARCHIVE} at {request.model_uri}.")
        metadata = {
            "git_commit": request.git_commit,
            "run_id": request.run_id,
            "data_uri": request.data_uri,
            "architecture": request.architecture,
            "evaluation_uri": request.evaluation_uri,
        }
        return self.registry.create_version(
            request.model_group,
            model_data_uri=str(archive.resolve()),
            metrics=request.metrics,
            metadata=metadata,
            approval_status=status,
        )

    def list_versions(self, model_group: str) -> list[ModelVersion]:
        return self.registry.list_versions(model_group)

    def set_approval_status(self, model_version_arn: str, status: ApprovalStatus) -> ModelVersion:
        return self.registry.update_status(model_version_arn, status)

    # -- endpoint ---------------------------------------------------------------------------
    def _endpoint_dir(self, name: str) -> Path:
        return self.settings.root / "endpoints" / name

    def deploy(self, request: DeployRequest) -> Endpoint:
        """Start the serving app for an Approved version; replace a running one blue/green."""
        version = self.registry.get(request.model_version_arn)
        if version.approval_status is not ApprovalStatus.APPROVED:
            raise PermissionError(
                f"{version.arn} is {version.approval_status.value}; only Approved model "
                "packages are deployed. Approve it first (skinlesion registry approve ...)."
            )
        folder = self._endpoint_dir(request.endpoint_name)
        previous = self._read_endpoint(request.endpoint_name)
        slot = folder / f"v{version.version}-{int(time.time())}"
        model_dir = artifacts.unpack_model(Path(version.model_data_uri), slot / "model")
        capture = request.capture_uri or str(folder / "data-capture")
        port = _free_port(self.settings.endpoint_host)
        log_file = (slot / "server.log").open("ab")
        command = [
            self.settings.python, "-m", "skinlesion.cli", "serve",
            "--model-dir", str(model_dir),
            "--host", self.settings.endpoint_host, "--port", str(port),
            "--capture-dir", storage.local_path(capture).as_posix(),
            "--capture-percentage", str(request.capture_percentage),
            "--endpoint-name", request.endpoint_name,
        ]  # fmt: skip
        # A session of its own and no inherited pipes: the endpoint outlives this step.
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "SKINLESION_MODEL_VERSION": f"{version.group}/{version.version}"},
        )
        url = f"http://{self.settings.endpoint_host}:{port}"
        try:
            _wait_healthy(url, process, self.settings.endpoint_start_timeout, slot / "server.log")
        except Exception:
            _stop_pid(process.pid)
            raise
        endpoint = Endpoint(
            name=request.endpoint_name,
            url=url,
            status="InService",
            model_version_arn=version.arn,
            capture_uri=capture,
            details={
                "pid": process.pid,
                "log": str(slot / "server.log"),
                "model_dir": str(model_dir),
            },
        )
        (folder / "endpoint.json").write_text(json.dumps(endpoint.__dict__, indent=2))
        if previous is not None:  # blue/green: the old one goes only once the new one is healthy
            _stop_pid(int(previous.details.get("pid", 0)))
        log.info("endpoint %s in service at %s (model %s)", request.endpoint_name, url, version.arn)
        return endpoint

    def _read_endpoint(self, name: str) -> Endpoint | None:
        path = self._endpoint_dir(name) / "endpoint.json"
        if not path.exists():
            return None
        return Endpoint(**json.loads(path.read_text()))

    def describe_endpoint(self, name: str) -> Endpoint:
        endpoint = self._read_endpoint(name)
        if endpoint is None:
            raise LookupError(f"No local endpoint named {name!r} under {self.settings.root}.")
        return endpoint

    def delete_endpoint(self, endpoint_name: str) -> None:
        endpoint = self._read_endpoint(endpoint_name)
        if endpoint is None:
            return
        _stop_pid(int(endpoint.details.get("pid", 0)))
        (self._endpoint_dir(endpoint_name) / "endpoint.json").unlink(missing_ok=True)
        log.info("endpoint %s stopped", endpoint_name)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _wait_healthy(
    url: str, process: subprocess.Popen[bytes], timeout: float, log_path: Path
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"The endpoint process exited with {process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise TimeoutError(f"The endpoint at {url} did not answer /ping within {timeout:.0f} s.")


def _stop_pid(pid: int, grace: float = 10.0) -> None:
    if pid <= 0:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:  # reap it when it is our child
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
