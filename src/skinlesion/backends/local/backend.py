"""The local backend: jobs as subprocesses with SageMaker's layout, a folder registry, the serving
app as the endpoint, and alarms and metrics recorded in files. ``make demo`` and the tests run the
pipeline on it."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from skinlesion import artifacts, storage
from skinlesion.backends.base import (
    TUNING_OBJECTIVE,
    ApprovalStatus,
    Backend,
    BaselineRequest,
    BatchScoreRequest,
    DeployRequest,
    Endpoint,
    EvaluateRequest,
    JobResult,
    JobStatus,
    ModelVersion,
    MonitorRequest,
    Notification,
    PreprocessRequest,
    RegisterRequest,
    TrainRequest,
    Trial,
    TuneRequest,
    TuneResult,
    Variant,
    check_weights,
    decide_approval,
    variant_shares,
)
from skinlesion.backends.errors import (
    EndpointNotFoundError,
    JobOutputMissingError,
    ModelNotApprovedError,
    MonitoringSetupError,
)
from skinlesion.backends.local.jobs import LocalJobRunner, job_name
from skinlesion.backends.local.processes import free_port, stop_pid, wait_healthy
from skinlesion.backends.local.registry import LocalModelRegistry
from skinlesion.capture import (
    CHALLENGER_VARIANT,
    CHAMPION_VARIANT,
    DEFAULT_VARIANT,
    format_inference_time,
    hour_folder_in_window,
)
from skinlesion.contract import JobKind
from skinlesion.monitoring.files import STATISTICS_FILE

log = logging.getLogger(__name__)

ROOT_ENV = "SKINLESION_LOCAL_ROOT"
DEFAULT_ROOT = ".skinlesion"
CAPTURE_DIR = "data-capture"  # an endpoint's capture folder, inside its endpoint folder
NOTIFICATIONS_FILE = "notifications.jsonl"
METRICS_FILE = "metrics.jsonl"


def remembered_root_file(env: Mapping[str, str] | None = None) -> Path:
    """Where the local backend remembers the root of its last deployment (XDG state folder)."""
    env = os.environ if env is None else env
    state = Path(
        env.get("XDG_STATE_HOME") or Path(env.get("HOME", "~")).expanduser() / ".local/state"
    )
    return state / "skinlesion" / "local-root"


@dataclass(frozen=True)
class LocalSettings:
    root: Path
    python: str = sys.executable
    endpoint_host: str = "127.0.0.1"
    endpoint_start_timeout: float = 120.0

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> LocalSettings:
        """``SKINLESION_LOCAL_ROOT``; else the root of the last local deployment (so that
        ``skinlesion endpoint list/delete`` find the demo's endpoint); else ``.skinlesion``."""
        env = os.environ if env is None else env
        if env.get(ROOT_ENV):
            return cls(root=Path(env[ROOT_ENV]).resolve())
        remembered = remembered_root_file(env)
        if remembered.exists():
            root = Path(remembered.read_text().strip())
            if root.is_dir():
                return cls(root=root)
        return cls(root=Path(DEFAULT_ROOT).resolve())


@dataclass(frozen=True)
class ServedModel:
    """What the monitor needs of a local endpoint: its model, its capture root, its version."""

    model_dir: Path
    capture_uri: str  # the capture root (the writer adds <endpoint>/<variant>)
    model_version_arn: str  # empty when the endpoint was stopped (its record is gone)


class LocalBackend(Backend):
    """Runs every stage on this machine."""

    name = "local"

    def __init__(self, settings: LocalSettings) -> None:
        self.settings = settings
        self.registry = LocalModelRegistry(settings.root / "registry")
        self.jobs = LocalJobRunner(settings.root / "jobs", settings.python)

    @classmethod
    def from_environment(cls) -> LocalBackend:
        return cls(LocalSettings.from_environment())

    # -- jobs -------------------------------------------------------------------------------
    def preprocess(self, request: PreprocessRequest) -> JobResult:
        config = request.config
        output = storage.local_path(request.output_uri)
        args = [
            "--input", str(storage.local_path(request.data_uri)), "--output", str(output),
            "--image-size", str(config.image_size),
            "--val-fraction", str(config.val_fraction),
            "--test-fraction", str(config.test_fraction),
            "--seed", str(config.seed),
            "--max-invalid-fraction", str(config.max_invalid_fraction),
            "--workers", str(config.workers),
        ]  # fmt: skip
        if request.labels:
            args += ["--labels", request.labels]
        job = self._processing("preprocess", request.job_name, "skinlesion.jobs.preprocess", args)
        manifest = json.loads((output / "manifest.json").read_text())
        return JobResult(
            job.name,
            JobStatus.COMPLETED,
            str(output),
            details={"splits": manifest.get("splits", {})},
        )

    def train(self, request: TrainRequest) -> JobResult:
        checkpoints = storage.local_path(request.checkpoint_uri) if request.checkpoint_uri else None
        job = self.jobs.run(
            JobKind.TRAINING,
            job_name("train", request.job_name),
            "skinlesion.jobs.train",
            hyperparameters=request.config.to_hyperparameters(),
            channels={"train": storage.local_path(request.dataset_uri)},
            checkpoint_dir=checkpoints,
            processes=request.config.instance_count,
        )
        # SageMaker tars SM_MODEL_DIR into model.tar.gz; do the same with the same code path.
        archive = artifacts.pack_model(
            job.model_dir, storage.local_path(request.model_uri) / artifacts.MODEL_ARCHIVE
        )
        spec = artifacts.ModelSpec.read(job.model_dir)
        return JobResult(
            job.name,
            JobStatus.COMPLETED,
            str(archive),
            metrics=dict(spec.metrics),
            details={"output_data": str(job.output_data_dir)},
        )

    def evaluate(self, request: EvaluateRequest) -> JobResult:
        output = storage.local_path(request.output_uri)
        args = [
            "--dataset", str(storage.local_path(request.dataset_uri)),
            "--model", str(storage.local_path(request.model_uri)),
            "--output", str(output),
        ]  # fmt: skip
        job = self._processing("evaluate", request.job_name, "skinlesion.jobs.evaluate", args)
        metrics = json.loads((output / "metrics.json").read_text())
        return JobResult(
            job.name,
            JobStatus.COMPLETED,
            str(output),
            metrics={k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
        )

    def baseline(self, request: BaselineRequest) -> JobResult:
        output = storage.local_path(request.output_uri)
        args = [
            "--dataset", str(storage.local_path(request.dataset_uri)),
            "--model", str(storage.local_path(request.model_uri)),
            "--output", str(output),
            "--split", request.split,
        ]  # fmt: skip
        if request.raw_uri and not storage.is_s3(request.raw_uri):
            args += ["--raw", str(storage.local_path(request.raw_uri))]
        job = self._processing("baseline", request.job_name, "skinlesion.jobs.baseline", args)
        return JobResult(job.name, JobStatus.COMPLETED, str(output))

    def batch_score(self, request: BatchScoreRequest) -> JobResult:
        """The serving app, in this process, over each image (``skinlesion.batch``)."""
        from skinlesion.batch import PREDICTIONS_FILE, score_folder

        version = self.registry.get(request.model_version_arn)
        if version.approval_status is ApprovalStatus.REJECTED:
            raise ModelNotApprovedError(
                f"Model version {version.arn} is Rejected; batch scoring takes Approved or "
                "PendingManualApproval versions."
            )
        name = job_name("batch", request.job_name)
        output = storage.local_path(request.output_uri)
        count = score_folder(
            Path(version.model_data_uri),
            storage.local_path(request.images_uri),
            output / PREDICTIONS_FILE,
            version.arn,
        )
        return JobResult(name, JobStatus.COMPLETED, str(output), details={"images": count})

    def capture_root(self, request: MonitorRequest) -> str:
        return request.capture_uri or self.served_model(request.endpoint_name).capture_uri

    def run_monitor_job(
        self, request: MonitorRequest, capture_uri: str, files: list[str]
    ) -> JobResult:
        baseline = (
            request.baseline_uri
            or self._registered_baseline(request.endpoint_name)
            or self.endpoint_baseline(request.endpoint_name, request.dataset_uri)
        )
        output = storage.local_path(request.output_uri)
        args = [
            "--baseline", str(storage.local_path(baseline)),
            "--capture", str(self._capture_folder(capture_uri, request.endpoint_name)),
            "--output", str(output),
            "--checks", request.checks,
            "--labels", request.labels_uri,
        ]  # fmt: skip
        if request.model_uri:
            args += ["--model", request.model_uri]
        if request.start is not None and request.end is not None:
            args += [
                "--start", format_inference_time(request.start),
                "--end", format_inference_time(request.end),
            ]  # fmt: skip
        job = self._processing("monitor", request.job_name, "skinlesion.jobs.monitor", args)
        return JobResult(job.name, JobStatus.COMPLETED, str(output), details={"files": len(files)})

    def list_capture_files(
        self, endpoint_name: str, capture_uri: str, start: datetime | None, end: datetime | None
    ) -> list[str]:
        folder = self._capture_folder(capture_uri, endpoint_name)
        if not folder.is_dir():
            return []
        return sorted(
            str(path)
            for path in folder.rglob("*.jsonl")
            if hour_folder_in_window(path.relative_to(folder).as_posix(), start, end)
        )

    @staticmethod
    def _capture_folder(capture_uri: str, endpoint_name: str) -> Path:
        return storage.local_path(capture_uri) / endpoint_name / DEFAULT_VARIANT

    def _processing(self, stage: str, given: str, module: str, args: list[str]) -> Any:
        return self.jobs.run(JobKind.PROCESSING, job_name(stage, given), module, args)

    # -- what the monitor needs of an endpoint ----------------------------------------------
    def served_model(self, endpoint_name: str) -> ServedModel:
        """The model folder, capture root and version of a local endpoint.

        A stopped endpoint has no record any more; its newest model slot and its capture folder
        are still there and are used (without the version, so a baseline then needs the dataset).
        """
        folder = self._endpoint_dir(endpoint_name)
        record = self._read_endpoint(endpoint_name)
        if record is None:
            slots = sorted(folder.glob("v*/model"), key=lambda p: p.stat().st_mtime)
            if not slots:
                raise MonitoringSetupError(
                    f"No local endpoint named {endpoint_name!r} under {self.settings.root}: deploy "
                    "one (make demo), or pass the baseline, the model and the capture folder."
                )
            return ServedModel(slots[-1], str(folder / CAPTURE_DIR), "")
        return ServedModel(
            Path(record.details["model_dir"]),
            record.capture_uri or str(folder / CAPTURE_DIR),
            record.model_version_arn,
        )

    def _registered_baseline(self, endpoint_name: str) -> str:
        """The deployed version's registered baseline, if the endpoint is up and it has one."""
        if self._read_endpoint(endpoint_name) is None:
            return ""
        found = self.deployed_baseline(endpoint_name)
        return found if found and storage.local_path(found).is_dir() else ""

    def endpoint_baseline(self, endpoint_name: str, dataset_uri: str = "") -> str:
        """The baseline of the model the local endpoint serves, built once and kept beside it.

        Kept as ``<endpoint folder>/baseline-<weights sha256[:12]>``: a redeployed model gets its
        own baseline, the same model reuses its.
        """
        from skinlesion.monitoring.baseline import model_fingerprint

        served = self.served_model(endpoint_name)
        folder = served.model_dir.parent.parent / (
            f"baseline-{model_fingerprint(served.model_dir)[:12]}"
        )
        if (folder / STATISTICS_FILE).exists():
            return str(folder)
        dataset = dataset_uri or self._dataset_of(served.model_version_arn)
        log.info("Building the baseline of %s on %s into %s", served.model_dir, dataset, folder)
        self.baseline(
            BaselineRequest(
                dataset_uri=dataset, model_uri=str(served.model_dir), output_uri=str(folder)
            )
        )
        return str(folder)

    def _dataset_of(self, model_version_arn: str) -> str:
        """The preprocessed dataset a model version was evaluated on (from its registry record)."""
        if not model_version_arn:
            raise MonitoringSetupError(
                "The endpoint's model version is unknown (the endpoint was stopped): pass "
                "dataset_uri (the preprocessed dataset, e.g. --dataset) or a baseline."
            )
        version = self.registry.get(model_version_arn)
        evaluation = Path(version.metadata.get("evaluation_uri", "")) / "evaluation.json"
        if not evaluation.exists():
            raise MonitoringSetupError(
                f"Model version {model_version_arn} records no evaluation ({evaluation}): pass "
                "dataset_uri (the preprocessed dataset) or baseline_uri."
            )
        return str(json.loads(evaluation.read_text())["dataset"])

    # -- alarms and metrics -----------------------------------------------------------------
    @property
    def monitoring_dir(self) -> Path:
        return self.settings.root / "monitoring"

    def retraining_record_dir(self) -> Path:
        return self.monitoring_dir

    def notify(self, subject: str, message: str) -> Notification:
        """Log the alarm at WARNING and append it to ``<root>/monitoring/notifications.jsonl``."""
        record = self.monitoring_dir / NOTIFICATIONS_FILE
        sent_at = datetime.now(UTC).isoformat(timespec="seconds")
        notification = Notification(subject, message, "log", str(record), "", sent_at)
        _append_json_line(record, asdict(notification))
        log.warning("MONITORING ALARM %s", subject)
        return notification

    def publish_metrics(self, metric_data: list[dict[str, Any]]) -> int:
        """Append the datums to ``<root>/monitoring/metrics.jsonl`` (CloudWatch's shape)."""
        record = self.monitoring_dir / METRICS_FILE
        for datum in metric_data:
            _append_json_line(record, datum)
        log.info("Recorded %d monitoring metrics in %s", len(metric_data), record)
        return len(metric_data)

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
            raise JobOutputMissingError(f"No {artifacts.MODEL_ARCHIVE} at {request.model_uri}.")
        metadata = {
            "git_commit": request.git_commit,
            "run_id": request.run_id,
            "data_uri": request.data_uri,
            "architecture": request.architecture,
            "evaluation_uri": request.evaluation_uri,
            "dataset_uri": request.dataset_uri,
            "model_card_uri": request.model_card_uri,
            "run_cost_usd": "" if request.run_cost_usd is None else f"{request.run_cost_usd:.4f}",
            "baseline_uri": request.baseline_uri,
        }
        return self.registry.create_version(
            request.model_group,
            model_data_uri=str(archive.resolve()),
            metrics=request.metrics,
            metadata=metadata,
            approval_status=status,
        )

    def list_versions(self, model_group: str, *, details: bool = False) -> list[ModelVersion]:
        return self.registry.list_versions(model_group)

    def set_approval_status(self, model_version_arn: str, status: ApprovalStatus) -> ModelVersion:
        return self.registry.update_status(model_version_arn, status)

    def describe_version(self, model_version_arn: str) -> ModelVersion:
        return self.registry.get(model_version_arn)

    # -- endpoint ---------------------------------------------------------------------------
    def _endpoint_dir(self, name: str) -> Path:
        return self.settings.root / "endpoints" / name

    def deploy(self, request: DeployRequest) -> Endpoint:
        """Start the serving app for an Approved version; replace a running one blue/green.

        With a challenger, each variant is a serving process of its own (capturing under
        ``<capture>/<endpoint>/<variant>/``) behind a router that splits requests by weight
        (:mod:`skinlesion.serving.router`); the endpoint's URL is the router's.
        """
        weights = request.variant_weights()  # checks the challenger fields
        versions = {CHAMPION_VARIANT: self._approved(request.model_version_arn)}
        if request.challenger_model_version_arn:
            versions[CHALLENGER_VARIANT] = self._approved(request.challenger_model_version_arn)
        folder = self._endpoint_dir(request.endpoint_name)
        previous = self._read_endpoint(request.endpoint_name)
        capture = request.capture_uri or str(folder / CAPTURE_DIR)
        started: list[int] = []
        variants: dict[str, dict[str, Any]] = {}
        try:
            for name, version in versions.items():
                variants[name] = self._start_variant(folder, version, name, capture, request)
                variants[name]["weight"] = weights[name]
                started.append(int(variants[name]["pid"]))
            if len(variants) == 1:
                front_pid, url, weights_file = started[0], variants[CHAMPION_VARIANT]["url"], ""
            else:
                front_pid, url, weights_file = self._start_router(folder, variants)
                started.append(front_pid)
        except Exception:
            for pid in started:
                stop_pid(pid)
            raise
        champion = variants[CHAMPION_VARIANT]
        endpoint = Endpoint(
            name=request.endpoint_name,
            url=url,
            status="InService",
            model_version_arn=versions[CHAMPION_VARIANT].arn,
            capture_uri=capture,
            details={
                "pid": front_pid,
                "log": champion["log"],
                "model_dir": champion["model_dir"],
                "variants": variants,
                "weights_file": weights_file,
            },
        )
        self._write_endpoint(endpoint)
        self._remember_root()
        if previous is not None:  # blue/green: the old one goes only once the new one is healthy
            for pid in _endpoint_pids(previous):
                stop_pid(pid)
        log.info(
            "endpoint %s in service at %s (%s)",
            request.endpoint_name,
            url,
            ", ".join(f"{n}: {versions[n].arn} at {weights[n]:g}" for n in variants),
        )
        return endpoint

    def _approved(self, model_version_arn: str) -> ModelVersion:
        version = self.registry.get(model_version_arn)
        if version.approval_status is not ApprovalStatus.APPROVED:
            raise ModelNotApprovedError(
                f"Model version {version.arn} is {version.approval_status.value}; only Approved "
                "versions are deployed (a challenger too: it answers real requests). Approve it "
                "first (skinlesion registry approve ...)."
            )
        return version

    def _start_variant(
        self,
        folder: Path,
        version: ModelVersion,
        variant: str,
        capture: str,
        request: DeployRequest,
    ) -> dict[str, Any]:
        """Start one variant's serving process and wait until it answers ``/ping``."""
        # The champion's slot is v<version>-<time>, as before: a stopped endpoint's monitor
        # takes the newest v* slot as the model it served; a challenger's slot is named apart.
        prefix = "" if variant == CHAMPION_VARIANT else f"{variant.lower()}-"
        slot = folder / f"{prefix}v{version.version}-{time.time_ns()}"
        model_dir = artifacts.unpack_model(Path(version.model_data_uri), slot / "model")
        port = free_port(self.settings.endpoint_host)
        log_file = (slot / "server.log").open("ab")
        command = [
            self.settings.python, "-m", "skinlesion.cli", "serve",
            "--model-dir", str(model_dir),
            "--host", self.settings.endpoint_host, "--port", str(port),
            "--capture-dir", storage.local_path(capture).as_posix(),
            "--capture-percentage", str(request.capture_percentage),
            "--endpoint-name", request.endpoint_name,
            "--variant-name", variant,
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
            wait_healthy(url, process, self.settings.endpoint_start_timeout, slot / "server.log")
        except Exception:
            stop_pid(process.pid)
            raise
        return {
            "pid": process.pid,
            "url": url,
            "log": str(slot / "server.log"),
            "model_dir": str(model_dir),
            "model_version_arn": version.arn,
        }

    def _start_router(
        self, folder: Path, variants: Mapping[str, Mapping[str, Any]]
    ) -> tuple[int, str, str]:
        """Start the router in front of the variants; its pid, URL and weights file."""
        from skinlesion.serving.router import Route, write_routes

        weights_file = folder / "weights.json"
        write_routes(
            weights_file, [Route(n, str(v["url"]), float(v["weight"])) for n, v in variants.items()]
        )
        port = free_port(self.settings.endpoint_host)
        log_path = folder / f"router-{time.time_ns()}.log"
        command = [
            self.settings.python, "-m", "skinlesion.serving.router",
            "--weights-file", str(weights_file),
            "--host", self.settings.endpoint_host, "--port", str(port),
        ]  # fmt: skip
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_path.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://{self.settings.endpoint_host}:{port}"
        try:
            wait_healthy(url, process, self.settings.endpoint_start_timeout, log_path)
        except Exception:
            stop_pid(process.pid)
            raise
        return process.pid, url, str(weights_file)

    def _write_endpoint(self, endpoint: Endpoint) -> None:
        path = self._endpoint_dir(endpoint.name) / "endpoint.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(endpoint), indent=2))

    # -- champion and challenger ------------------------------------------------------------
    def describe_variants(self, endpoint_name: str) -> list[Variant]:
        """The endpoint's variants and weights, from its record (champion first)."""
        endpoint = self.describe_endpoint(endpoint_name)
        recorded: Mapping[str, Mapping[str, Any]] = endpoint.details.get("variants") or {
            CHAMPION_VARIANT: {"model_version_arn": endpoint.model_version_arn, "weight": 1.0}
        }
        weights = {name: float(v.get("weight", 1.0)) for name, v in recorded.items()}
        shares = variant_shares(weights)
        variants = [
            Variant(name, str(v["model_version_arn"]), weights[name], shares[name])
            for name, v in recorded.items()
        ]
        return sorted(variants, key=lambda v: (v.name != CHAMPION_VARIANT, v.name))

    def set_traffic(self, endpoint_name: str, weights: Mapping[str, float]) -> list[Variant]:
        """New weights for the router (read on its next request); the record keeps them."""
        from skinlesion.serving.router import read_routes, write_routes

        endpoint = self.describe_endpoint(endpoint_name)
        current = {v.name: v.weight for v in self.describe_variants(endpoint_name)}
        checked = check_weights(weights, list(current))
        merged = {**current, **checked}
        variant_shares(merged)  # refuses all zero
        weights_file = str(endpoint.details.get("weights_file", ""))
        if weights_file:
            routes = read_routes(Path(weights_file))
            write_routes(Path(weights_file), [replace(r, weight=merged[r.name]) for r in routes])
        recorded = dict(endpoint.details.get("variants") or {})
        for name, weight in merged.items():
            if name in recorded:
                recorded[name] = {**recorded[name], "weight": weight}
        self._write_endpoint(replace(endpoint, details={**endpoint.details, "variants": recorded}))
        log.info("endpoint %s: variant weights set to %s", endpoint_name, merged)
        return self.describe_variants(endpoint_name)

    def _remember_root(self) -> None:
        try:
            remembered = remembered_root_file()
            remembered.parent.mkdir(parents=True, exist_ok=True)
            remembered.write_text(f"{self.settings.root}\n")
        except OSError as error:  # a read-only home only costs the convenience
            log.debug("Could not remember the local root: %s", error)

    def _read_endpoint(self, name: str) -> Endpoint | None:
        path = self._endpoint_dir(name) / "endpoint.json"
        if not path.exists():
            return None
        return Endpoint(**json.loads(path.read_text()))

    def list_endpoints(self) -> list[Endpoint]:
        """Every endpoint with a record under this root."""
        folder = self.settings.root / "endpoints"
        names = sorted(p.parent.name for p in folder.glob("*/endpoint.json"))
        return [e for e in (self._read_endpoint(n) for n in names) if e is not None]

    def describe_endpoint(self, endpoint_name: str) -> Endpoint:
        endpoint = self._read_endpoint(endpoint_name)
        if endpoint is None:
            raise EndpointNotFoundError(
                f"No local endpoint named {endpoint_name!r} under {self.settings.root}."
            )
        return endpoint

    def stop_jobs(self, run_id: str) -> list[str]:
        """Nothing to stop: a local job is a child process of its step and ends with it."""
        log.info("Run %s: local jobs end with their steps; nothing to stop", run_id)
        return []

    def delete_endpoint(self, endpoint_name: str) -> None:
        endpoint = self.describe_endpoint(endpoint_name)
        for pid in _endpoint_pids(endpoint):
            stop_pid(pid)
        (self._endpoint_dir(endpoint_name) / "endpoint.json").unlink(missing_ok=True)
        log.info("endpoint %s stopped", endpoint_name)

    # -- tuning -----------------------------------------------------------------------------
    def tune(self, request: TuneRequest) -> TuneResult:
        """The request's grid (``TuneRequest.trial_configs``), one training job after another,
        each in a trial folder under the local root; the best trial's model.tar.gz goes to
        ``request.model_uri``. (The pipeline's ``sweep`` branch runs trials in parallel instead.)
        """
        name = job_name("tune", request.job_name)
        trials_root = self.settings.root / "tuning" / name
        trials: list[Trial] = []
        results: list[JobResult] = []
        for index, config in enumerate(request.trial_configs(), start=1):
            trial_dir = trials_root / f"trial-{index:03d}"
            result = self.train(
                TrainRequest(
                    dataset_uri=request.dataset_uri,
                    model_uri=str(trial_dir),
                    config=config,
                    job_name=f"{name}-{index:03d}",
                )
            )
            objective = result.metrics.get(TUNING_OBJECTIVE)
            tried = {r.name: float(getattr(config, r.name)) for r in request.ranges}
            log.info("Trial %d/%d %s: %s -> %s", index, request.max_jobs, result.job_name,
                     tried, objective)  # fmt: skip
            trials.append(Trial(result.job_name, result.status.value, tried, objective))
            results.append(result)
        scored = [(t.objective, i) for i, t in enumerate(trials) if t.objective is not None]
        if not scored:
            raise JobOutputMissingError(
                f"No trial of tuning {name} reported {TUNING_OBJECTIVE}: nothing to choose from."
            )
        # Ties go to the earlier trial, so the choice does not depend on the sort's stability.
        best_value, best_index = max(scored, key=lambda pair: (pair[0], -pair[1]))
        best = results[best_index]
        archive = storage.local_path(request.model_uri) / artifacts.MODEL_ARCHIVE
        archive.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(best.output_uri, archive)
        return TuneResult(
            tuning_job_name=name,
            best=dataclasses.replace(best, output_uri=str(archive)),
            objective_metric=TUNING_OBJECTIVE,
            objective_value=float(best_value),
            trials=tuple(trials),
        )


def _endpoint_pids(endpoint: Endpoint) -> list[int]:
    """The processes of an endpoint: its front (router or only server), then each variant's."""
    pids = [int(endpoint.details.get("pid", 0))]
    for variant in (endpoint.details.get("variants") or {}).values():
        pids.append(int(variant.get("pid", 0)))
    return list(dict.fromkeys(p for p in pids if p > 0))


def _append_json_line(path: Path, record: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, default=str) + "\n")
