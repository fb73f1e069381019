"""The backend interface: what each pipeline stage asks of the place where jobs run.

Two implementations: ``local`` (subprocesses, paths, a directory registry, a uvicorn endpoint)
and ``sagemaker`` (processing and training jobs, the model registry, endpoints). Components call
these through ``skinlesion.steps`` and never know which one they talk to.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field
from typing import Any

from skinlesion.config import PreprocessConfig, TrainConfig


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
class JobResult:
    """What a finished job reports back to its component."""

    job_name: str
    status: str
    outputs: dict[str, str] = field(default_factory=dict)  # name -> URI
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


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str  # invocation URL (http://... locally, https://runtime.sagemaker... on AWS)
    status: str
    model_version_arn: str
    capture_uri: str = ""
    details: dict[str, Any] = field(default_factory=dict)


class Backend(abc.ABC):
    """Where the pipeline's jobs run and its models live."""

    name: str

    def artifact_location(self, path: str, uri: str) -> str:
        """Where a job should read or write a KFP artifact: its local path, or (remote
        backends) its URI, so that SageMaker reads and writes S3 without copies."""
        return path

    @abc.abstractmethod
    def preprocess(self, request: PreprocessRequest) -> JobResult: ...

    @abc.abstractmethod
    def train(self, request: TrainRequest) -> JobResult: ...

    @abc.abstractmethod
    def evaluate(self, request: EvaluateRequest) -> JobResult: ...

    @abc.abstractmethod
    def register(self, request: RegisterRequest) -> ModelVersion: ...

    @abc.abstractmethod
    def list_versions(self, model_group: str) -> list[ModelVersion]: ...

    @abc.abstractmethod
    def set_approval_status(self, model_version_arn: str, status: ApprovalStatus) -> ModelVersion:
        """Approve or reject a version by hand (UpdateModelPackage)."""

    @abc.abstractmethod
    def deploy(self, request: DeployRequest) -> Endpoint: ...

    @abc.abstractmethod
    def delete_endpoint(self, endpoint_name: str) -> None: ...


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
