"""The backend interface: what each pipeline stage asks of the place where jobs run.

Two implementations: ``local`` (subprocesses, paths, a directory registry, a uvicorn endpoint)
and ``sagemaker`` (processing and training jobs, the model registry, endpoints, SNS, CloudWatch).
Every stage, monitoring included, goes through this interface: the step functions
(``skinlesion.steps``, ``skinlesion.monitoring.steps``) build one backend by name and call it, and
nothing above this layer branches on which one it is. The errors both raise alike are in
``skinlesion.backends.errors``.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from skinlesion import storage
from skinlesion.capture import CHALLENGER_VARIANT, CHAMPION_VARIANT
from skinlesion.config import PreprocessConfig, TrainConfig

log = logging.getLogger(__name__)


class ApprovalStatus(enum.StrEnum):
    """SageMaker's ModelApprovalStatus values."""

    APPROVED = "Approved"
    REJECTED = "Rejected"
    PENDING = "PendingManualApproval"


@dataclass(frozen=True)
class PreprocessRequest:
    data_uri: str  # ISIC-format folder: labels CSV, optional metadata CSV, images/<id>.jpg
    output_uri: str  # the Dataset artifact
    config: PreprocessConfig = field(default_factory=PreprocessConfig)
    labels: str = ""  # a ground-truth CSV relative to data_uri; empty: labels.csv
    job_name: str = ""
    # Name the SageMaker job deterministically (a retried step finds its job again): the KFP run
    # id (dsl.PIPELINE_JOB_ID_PLACEHOLDER) and task name (dsl.PIPELINE_TASK_NAME_PLACEHOLDER).
    run_id: str = ""
    task_name: str = ""


@dataclass(frozen=True)
class TrainRequest:
    dataset_uri: str
    model_uri: str  # the Model artifact: receives model.tar.gz
    config: TrainConfig = field(default_factory=TrainConfig)
    checkpoint_uri: str = ""  # empty: a fresh location per job
    job_name: str = ""
    # Name the SageMaker job deterministically (a retried step finds its job again): the KFP run
    # id (dsl.PIPELINE_JOB_ID_PLACEHOLDER) and task name (dsl.PIPELINE_TASK_NAME_PLACEHOLDER).
    run_id: str = ""
    task_name: str = ""


@dataclass(frozen=True)
class EvaluateRequest:
    dataset_uri: str
    model_uri: str
    output_uri: str  # evaluation folder: metrics.json, predictions.csv, report.html
    job_name: str = ""
    # Name the SageMaker job deterministically (a retried step finds its job again): the KFP run
    # id (dsl.PIPELINE_JOB_ID_PLACEHOLDER) and task name (dsl.PIPELINE_TASK_NAME_PLACEHOLDER).
    run_id: str = ""
    task_name: str = ""


@dataclass(frozen=True)
class BaselineRequest:
    dataset_uri: str  # the preprocessed dataset
    model_uri: str  # a model folder, model.tar.gz, or a folder holding it
    output_uri: str  # the baseline folder
    raw_uri: str = ""  # the ISIC folder of the original files (encoding features); optional
    split: str = "val"
    job_name: str = ""
    run_id: str = ""
    task_name: str = ""


@dataclass(frozen=True)
class MonitorRequest:
    """One monitoring window of an endpoint's captured requests against a baseline."""

    endpoint_name: str
    output_uri: str  # the monitor's output folder
    baseline_uri: str = ""  # empty: the backend finds the deployed model's baseline
    model_uri: str = ""  # empty: the model the baseline records
    capture_uri: str = ""  # empty: the endpoint's (or the account's) capture destination
    labels_uri: str = ""  # ground truth keyed by eventId; empty: no quality check
    dataset_uri: str = ""  # a preprocessed dataset to build a missing local baseline from
    start: datetime | None = None  # the window [start, end); None: every captured request
    end: datetime | None = None
    checks: str = "drift"
    job_name: str = ""
    run_id: str = ""
    task_name: str = ""


@dataclass(frozen=True)
class BatchScoreRequest:
    """Score every JPEG under ``images_uri`` with a registered model version."""

    model_version_arn: str
    images_uri: str  # an S3 prefix or a local folder of .jpg/.jpeg files
    output_uri: str  # the output folder: predictions.jsonl (and, on SageMaker, the .out files)
    instance_type: str = "ml.m5.large"
    instance_count: int = 1
    job_name: str = ""
    run_id: str = ""
    task_name: str = ""


class JobStatus(enum.StrEnum):
    """The primary status of a job (SageMaker's values; the local backend uses the same)."""

    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"

    @property
    def terminal(self) -> bool:
        """True once the job will not change any more."""
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.STOPPED)


@dataclass(frozen=True)
class JobResult:
    """What a finished job reports back to its step.

    ``output_uri`` is the job's one output where the step can read it (the dataset folder,
    ``model.tar.gz``, the evaluation, baseline or monitor folder); ``remote_output_uri`` is the
    same output where the job platform reads it (an ``s3://`` URI on SageMaker, even when the step
    was handed a local path; empty locally).
    """

    job_name: str
    status: JobStatus
    output_uri: str
    remote_output_uri: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RegisterRequest:
    model_uri: str  # folder or URI holding model.tar.gz
    evaluation_uri: str  # folder or URI holding metrics.json (and report.html)
    model_group: str
    metrics: dict[str, float]
    data_uri: str
    architecture: str
    git_commit: str = ""
    run_id: str = ""
    gate_passed: bool = True
    approval_margin: float = 0.0  # beat the approved version by this much to be auto-approved
    dataset_uri: str = ""  # the preprocessed dataset folder (its manifest.json), kept as lineage
    model_card_uri: str = ""  # the evaluate step's model card (model_card.md), kept with the entry
    run_cost_usd: float | None = None  # estimated cost of the run's jobs up to evaluation
    baseline_uri: str = ""  # the model's monitoring baseline (the monitor finds it through this)


@dataclass(frozen=True)
class ModelVersion:
    """One version in a model package group."""

    group: str
    version: int
    arn: str
    model_data_uri: str
    approval_status: ApprovalStatus
    metrics: dict[str, float]
    metadata: dict[str, str]
    created: str


@dataclass(frozen=True)
class DeployRequest:
    model_version_arn: str
    endpoint_name: str
    instance_type: str = "ml.m5.large"
    min_instances: int = 1
    max_instances: int = 5
    target_invocations_per_instance: int = 100
    capture_uri: str = ""  # data capture destination; empty: the backend's default
    capture_percentage: int = 100
    # Champion and challenger: a second production variant serving this version beside the
    # champion (``model_version_arn``), with this share of the requests (1-99).
    challenger_model_version_arn: str = ""
    challenger_traffic_percent: int = 0

    def variant_weights(self) -> dict[str, float]:
        """Each production variant's weight (its share of the requests, 0-1)."""
        check_challenger(self)
        if not self.challenger_model_version_arn:
            return {CHAMPION_VARIANT: 1.0}
        share = self.challenger_traffic_percent / 100
        return {CHAMPION_VARIANT: round(1.0 - share, 6), CHALLENGER_VARIANT: round(share, 6)}


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str  # invocation URL (http://... locally, https://runtime.sagemaker... on AWS)
    status: str
    model_version_arn: str
    capture_uri: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Variant:
    """One production variant of an endpoint: the version it serves and its share of requests."""

    name: str
    model_version_arn: str
    weight: float  # as the endpoint holds it (SageMaker's CurrentWeight)
    share: float  # weight over the sum of the endpoint's weights, 0-1
    instance_count: int | None = None  # None where the backend has no fleet (local)


@dataclass(frozen=True)
class Notification:
    """A notification as sent: where, and what."""

    subject: str
    message: str
    channel: str  # "sns" or "log"
    target: str  # the topic ARN or the local record file
    message_id: str = ""
    sent_at: str = ""


class Backend(abc.ABC):
    """Where the pipeline's jobs run, its models live, and its alarms and metrics go."""

    name: str

    def default_model_group(self) -> str:
        """The model group a pipeline registers in when it names none."""
        return "skinlesion"

    def default_endpoint_name(self) -> str:
        """The endpoint a pipeline deploys to (and monitors) when it names none."""
        return "skinlesion"

    def artifact_location(self, path: str, uri: str) -> str:
        """What a step hands its job as the output location of a KFP artifact: its local path.
        A remote backend writes the data elsewhere (SageMaker: ``job-outputs/`` in S3) and the
        step leaves only a pointer in the artifact, so the next pod downloads kilobytes."""
        return path

    # --- storage: artifact URIs this backend hands out (paths locally, s3:// on SageMaker) ---
    def s3_client(self) -> Any | None:
        """The S3 client that ``s3://`` URIs are read with (None: this backend has none)."""
        return None

    def read_json(self, uri: str) -> Any:
        """Parse the JSON document at ``uri``."""
        return storage.read_json(uri, s3=self.s3_client())

    def download(self, uri: str, destination: Path) -> Path:
        """Copy the file or folder at ``uri`` to ``destination``."""
        return storage.download(uri, destination, s3=self.s3_client())

    # --- jobs ------------------------------------------------------------------------------
    @abc.abstractmethod
    def preprocess(self, request: PreprocessRequest) -> JobResult: ...

    @abc.abstractmethod
    def train(self, request: TrainRequest) -> JobResult: ...

    @abc.abstractmethod
    def evaluate(self, request: EvaluateRequest) -> JobResult: ...

    @abc.abstractmethod
    def baseline(self, request: BaselineRequest) -> JobResult:
        """Describe the model's inputs and outputs on a dataset split (the monitoring baseline)."""

    @abc.abstractmethod
    def batch_score(self, request: BatchScoreRequest) -> JobResult:
        """Score a folder of JPEGs with a registered version: one JSON line per image in
        ``<output>/predictions.jsonl`` (``skinlesion.batch``), as the endpoint would answer."""

    def monitor(self, request: MonitorRequest) -> JobResult | None:
        """Check one window of captured requests; None (and no job) when it holds no capture."""
        capture_uri = self.capture_root(request)
        files = self.list_capture_files(
            request.endpoint_name, capture_uri, request.start, request.end
        )
        if not files:
            log.warning(
                "No capture files of %s under %s between %s and %s: nothing to monitor",
                request.endpoint_name,
                capture_uri,
                request.start,
                request.end,
            )
            return None
        return self.run_monitor_job(request, capture_uri, files)

    def deployed_baseline(self, endpoint_name: str) -> str:
        """The baseline of the version the endpoint serves now, from its registry entry ("" when
        the entry records none): a redeploy changes what the monitor compares with."""
        version_arn = self.describe_endpoint(endpoint_name).model_version_arn
        if not version_arn:
            return ""
        return self.describe_version(version_arn).metadata.get("baseline_uri", "")

    @abc.abstractmethod
    def describe_version(self, model_version_arn: str) -> ModelVersion:
        """One registry entry with its metrics and metadata."""

    @abc.abstractmethod
    def capture_root(self, request: MonitorRequest) -> str:
        """Where the endpoint's capture lands (the writer adds ``<endpoint>/<variant>``)."""

    @abc.abstractmethod
    def run_monitor_job(
        self, request: MonitorRequest, capture_uri: str, files: list[str]
    ) -> JobResult:
        """Run the monitor job over the window's capture ``files`` (never empty)."""

    @abc.abstractmethod
    def list_capture_files(
        self, endpoint_name: str, capture_uri: str, start: datetime | None, end: datetime | None
    ) -> list[str]:
        """The capture files of an endpoint's window (hour folders overlapping [start, end))."""

    def stop_jobs(self, run_id: str) -> list[str]:
        """Stop the jobs still running for pipeline run ``run_id``; return their names.

        Called by the run's exit handler when the run ends cancelled or failed: a step's SIGTERM
        leaves its job running (an eviction looks like a cancel), so this is where a cancelled
        run's jobs stop. A backend whose jobs end with their step has nothing to stop.
        """
        return []

    # --- alarms and metrics ----------------------------------------------------------------
    @abc.abstractmethod
    def notify(self, subject: str, message: str) -> Notification:
        """Tell people (SNS on SageMaker; a log line and a record locally)."""

    @abc.abstractmethod
    def publish_metrics(self, metric_data: list[dict[str, Any]]) -> int:
        """Publish CloudWatch-shaped metric data; return how many datums were sent."""

    def retraining_record_dir(self) -> Path | None:
        """Where retraining requests are also recorded (a backend without files: None)."""
        return None

    @abc.abstractmethod
    def register(self, request: RegisterRequest) -> ModelVersion: ...

    @abc.abstractmethod
    def list_versions(self, model_group: str, *, details: bool = False) -> list[ModelVersion]:
        """The group's versions, oldest first; ``details`` also fetches each one's model data,
        metrics and metadata (where the listing itself does not carry them)."""

    @abc.abstractmethod
    def set_approval_status(self, model_version_arn: str, status: ApprovalStatus) -> ModelVersion:
        """Approve or reject a version by hand (UpdateModelPackage)."""

    @abc.abstractmethod
    def deploy(self, request: DeployRequest) -> Endpoint: ...

    @abc.abstractmethod
    def describe_endpoint(self, endpoint_name: str) -> Endpoint:
        """The endpoint's record; ``EndpointNotFoundError`` when there is none."""

    @abc.abstractmethod
    def delete_endpoint(self, endpoint_name: str) -> None:
        """Stop and delete the endpoint; ``EndpointNotFoundError`` when there is none."""

    # --- champion and challenger (deploy with ``DeployRequest.challenger_model_version_arn``) --
    @abc.abstractmethod
    def describe_variants(self, endpoint_name: str) -> list[Variant]:
        """The endpoint's production variants with their current weights, champion first."""

    @abc.abstractmethod
    def set_traffic(self, endpoint_name: str, weights: Mapping[str, float]) -> list[Variant]:
        """Shift traffic between the endpoint's variants (SageMaker's
        UpdateEndpointWeightsAndCapacities); unnamed variants keep their weight."""

    # --- tuning ----------------------------------------------------------------------------
    @abc.abstractmethod
    def tune(self, request: TuneRequest) -> TuneResult:
        """Train ``request.max_jobs`` trials over ``request.ranges`` and hand back the best one's
        model (``TuneResult.best``: the same JobResult a train step gets)."""


def decide_approval(
    candidate: dict[str, float],
    approved: list[ModelVersion],
    *,
    gate_passed: bool,
    margin: float,
    metric: str = "balanced_accuracy",
) -> ApprovalStatus:
    """Approved when the gate passed and the candidate beats the approved version by ``margin``."""
    if not gate_passed:
        return ApprovalStatus.REJECTED
    if not approved:
        return ApprovalStatus.APPROVED
    best = max(v.metrics.get(metric, float("-inf")) for v in approved)
    # A small tolerance: 0.80 + 0.02 is 0.8200000000000001 in floating point.
    if candidate.get(metric, float("-inf")) >= best + margin - 1e-9:
        return ApprovalStatus.APPROVED
    return ApprovalStatus.PENDING


# --- champion and challenger -------------------------------------------------------------------
# The API reference's limits: ProductionVariants holds 1 to 10 variants (CreateEndpointConfig);
# VariantName matches [a-zA-Z0-9](-*[a-zA-Z0-9]){0,62} and a weight is a float >= 0
# (ProductionVariant.InitialVariantWeight, DesiredWeightAndCapacity.DesiredWeight).
MAX_VARIANTS = 10
VARIANT_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")


def check_challenger(request: DeployRequest) -> None:
    """Raise ValueError naming the challenger field that is wrong and what is accepted."""
    if not request.challenger_model_version_arn:
        if request.challenger_traffic_percent:
            raise ValueError(
                f"challenger_traffic_percent is {request.challenger_traffic_percent} but no "
                "challenger_model_version_arn is given: name the challenger's version, or leave "
                "the share at 0."
            )
        return
    if request.challenger_model_version_arn == request.model_version_arn:
        raise ValueError(
            f"The challenger {request.challenger_model_version_arn} is the champion itself: "
            "a challenger must be another version."
        )
    if not 1 <= request.challenger_traffic_percent <= 99:
        raise ValueError(
            f"Invalid challenger_traffic_percent {request.challenger_traffic_percent}: 1 to 99 "
            "(0 is no challenger; 100 is a plain deploy of the challenger)."
        )


def check_weights(weights: Mapping[str, float], known: list[str]) -> dict[str, float]:
    """The weights as floats; ValueError for an unknown variant, a bad name or a bad weight."""
    if not weights:
        raise ValueError(f"No weights given: name at least one of the variants {known}.")
    checked: dict[str, float] = {}
    for name, weight in weights.items():
        if not VARIANT_NAME.fullmatch(name):
            raise ValueError(
                f"Invalid variant name {name!r}: letters, digits and inner hyphens, at most 63."
            )
        if name not in known:
            raise ValueError(f"The endpoint has no variant {name!r}; its variants: {known}.")
        value = float(weight)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"Invalid weight {weight!r} for {name}: a finite number >= 0.")
        checked[name] = value
    return checked


def variant_shares(weights: Mapping[str, float]) -> dict[str, float]:
    """Each variant's share of the requests (weight over the total); ValueError when all are 0."""
    total = sum(weights.values())
    if total <= 0:
        raise ValueError(
            f"Every variant's weight would be 0 ({dict(weights)}): the endpoint would serve "
            "nothing. Give at least one variant a weight above 0."
        )
    return {name: weight / total for name, weight in weights.items()}


# --- tuning ---------------------------------------------------------------------------------
# The hyperparameters a tuning stage may search: TrainConfig's continuous ones (the rest are
# choices of architecture or schedule, or change what a trial costs rather than how it learns).
TUNABLE_HYPERPARAMETERS = ("learning_rate", "weight_decay", "label_smoothing")
SCALING_TYPES = ("Linear", "Logarithmic")
# The trials' figure of merit: the validation split's balanced accuracy (of the epoch whose
# weights the model keeps). SageMaker's name for it comes from the tuning job's MetricDefinitions.
TUNING_OBJECTIVE = "val_balanced_accuracy"


class TuningConfigError(ValueError):
    """A tuning request that no backend would run: what was wrong and what is accepted."""


@dataclass(frozen=True)
class HyperparameterRange:
    """One continuous hyperparameter's search range (SageMaker's ContinuousParameterRange)."""

    name: str
    min_value: float
    max_value: float
    scaling: str = "Logarithmic"

    def __post_init__(self) -> None:
        if self.name not in TUNABLE_HYPERPARAMETERS:
            raise TuningConfigError(
                f"Invalid tuned hyperparameter {self.name!r}: only "
                f"{', '.join(TUNABLE_HYPERPARAMETERS)} can be tuned."
            )
        if self.scaling not in SCALING_TYPES:
            raise TuningConfigError(
                f"Invalid scaling {self.scaling!r} for {self.name}: only "
                f"{', '.join(SCALING_TYPES)} are supported."
            )
        if not self.min_value < self.max_value:
            raise TuningConfigError(
                f"Invalid range for {self.name}: min {self.min_value!r} must be below max "
                f"{self.max_value!r}."
            )
        if self.scaling == "Logarithmic" and self.min_value <= 0:
            # SageMaker refuses a log-scaled range that reaches 0 or below.
            raise TuningConfigError(
                f"Invalid range for {self.name}: a Logarithmic range needs min > 0, got "
                f"{self.min_value!r}. Use Linear scaling or a positive min."
            )
        # The bounds must be values TrainConfig accepts (label_smoothing below 1, and so on).
        for value in (self.min_value, self.max_value):
            overrides: dict[str, Any] = {self.name: value}
            TrainConfig(**overrides)

    def grid(self, count: int) -> list[float]:
        """``count`` values spread over the range (evenly on its scale), both ends included."""
        if count < 1:
            raise TuningConfigError(f"Invalid trial count {count}: at least 1.")
        if count == 1:
            return [self._at(0.5)]
        return [self._at(i / (count - 1)) for i in range(count)]

    def _at(self, fraction: float) -> float:
        if self.scaling == "Logarithmic":
            low, high = math.log(self.min_value), math.log(self.max_value)
            return float(f"{math.exp(low + fraction * (high - low)):.6g}")
        return float(f"{self.min_value + fraction * (self.max_value - self.min_value):.6g}")


@dataclass(frozen=True)
class TuneRequest:
    """Search ``ranges`` around ``config`` (its other hyperparameters stay as they are)."""

    dataset_uri: str
    model_uri: str  # the Model artifact: receives the best trial's model.tar.gz (or a pointer)
    ranges: tuple[HyperparameterRange, ...]
    config: TrainConfig = field(default_factory=TrainConfig)
    max_jobs: int = 4
    max_parallel_jobs: int = 2
    job_name: str = ""
    run_id: str = ""
    task_name: str = ""

    def __post_init__(self) -> None:
        if not self.ranges:
            raise TuningConfigError(
                f"A tuning request needs at least one range (of {', '.join(TUNABLE_HYPERPARAMETERS)})."
            )
        names = [r.name for r in self.ranges]
        if len(set(names)) != len(names):
            raise TuningConfigError(f"Each hyperparameter may have one range only, got {names}.")
        if self.max_jobs < 1 or self.max_parallel_jobs < 1:
            raise TuningConfigError(
                f"Invalid tuning limits: max_jobs {self.max_jobs} and max_parallel_jobs "
                f"{self.max_parallel_jobs} must both be at least 1."
            )
        if self.max_parallel_jobs > self.max_jobs:
            raise TuningConfigError(
                f"Invalid tuning limits: max_parallel_jobs {self.max_parallel_jobs} exceeds "
                f"max_jobs {self.max_jobs}; at most max_jobs trials can run at once."
            )

    def trial_configs(self) -> list[TrainConfig]:
        """The grid a backend without a search service runs: ``max_jobs`` configs, the ranges'
        grids walked together (trial i takes the i-th value of every range)."""
        grids = {r.name: r.grid(self.max_jobs) for r in self.ranges}
        configs = []
        for i in range(self.max_jobs):
            values: dict[str, Any] = {name: grid[i] for name, grid in grids.items()}
            configs.append(dataclasses.replace(self.config, **values))
        return configs


@dataclass(frozen=True)
class Trial:
    """One trial of a tuning stage: its training job, what it tried, how it scored."""

    job_name: str
    status: str
    hyperparameters: dict[str, float]
    objective: float | None  # None: the trial reported no objective (failed or stopped early)


@dataclass(frozen=True)
class TuneResult:
    """The tuning stage's outcome: the best trial's JobResult, the objective, every trial."""

    tuning_job_name: str
    best: JobResult
    objective_metric: str
    objective_value: float
    trials: tuple[Trial, ...]
    details: dict[str, Any] = field(default_factory=dict)  # cost and links, as JobResult's
