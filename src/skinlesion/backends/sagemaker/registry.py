"""The SageMaker Model Registry: model package groups, versions, metrics and approval.

A version carries its evaluation as ModelMetrics (model quality statistics in Model Monitor's
format, written next to the evaluation's metrics.json), its lineage as CustomerMetadataProperties
(git commit, pipeline run id, data URI, the dataset's manifest sha256 and S3 VersionId, the image
URIs, architecture, and the headline metrics, so comparing versions needs no S3 reads), and an
approval status decided by ``decide_approval`` against the versions that are Approved now.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from skinlesion.backends.base import ApprovalStatus, ModelVersion, RegisterRequest, decide_approval
from skinlesion.backends.sagemaker.errors import (
    JobOutputMissingError,
    is_already_exists,
    is_not_found,
)
from skinlesion.backends.sagemaker.naming import digest
from skinlesion.backends.sagemaker.s3 import S3DataPlane, S3Uri, is_s3_uri, join_uri
from skinlesion.backends.sagemaker.validation import validate_request
from skinlesion.settings import Settings

log = logging.getLogger(__name__)

METRIC_PREFIX = "metric:"
METRICS_FILE = "metrics.json"
EVALUATION_FILE = "evaluation.json"  # the evaluate job's full result, with its model-quality block
STATISTICS_FILE = "model_quality.json"
MANIFEST_FILE = "manifest.json"
MODEL_QUALITY_BLOCK = "multiclass_classification_metrics"
# ListModelPackages' MaxResults is 1-100 (service model).
LIST_PAGE_SIZE = 100
SUPPORTED_CONTENT_TYPES = ["image/jpeg", "image/png", "application/x-image"]
SUPPORTED_RESPONSE_TYPES = ["application/json"]
MAX_METADATA_ENTRIES = 50
MAX_METADATA_VALUE = 256


class ModelRegistry:
    """Registers, lists and approves model versions of a model package group."""

    def __init__(self, sagemaker: Any, data_plane: S3DataPlane, settings: Settings) -> None:
        self.sagemaker = sagemaker
        self.data_plane = data_plane
        self.settings = settings
        self.page_size = LIST_PAGE_SIZE

    def _call(self, operation: str, method: str, **params: Any) -> Any:
        validate_request(self.sagemaker.meta.service_model, operation, params)
        return getattr(self.sagemaker, method)(**params)

    # --- groups ---------------------------------------------------------------------------
    def ensure_group(self, group: str) -> str:
        """The group's ARN, creating the group when it does not exist yet."""
        try:
            return str(
                self.sagemaker.describe_model_package_group(ModelPackageGroupName=group)[
                    "ModelPackageGroupArn"
                ]
            )
        except ClientError as error:
            if not is_not_found(error):
                raise
        try:
            response = self._call(
                "CreateModelPackageGroup",
                "create_model_package_group",
                ModelPackageGroupName=group,
                ModelPackageGroupDescription=f"Skin lesion classifiers ({self.settings.name_prefix})",
                Tags=[{"Key": "skinlesion:prefix", "Value": self.settings.name_prefix}],
            )
        except ClientError as error:
            if not is_already_exists(error):  # created meanwhile by a parallel step
                raise
            return self.ensure_group(group)
        log.info("Created model package group %s", group)
        return str(response["ModelPackageGroupArn"])

    # --- versions -------------------------------------------------------------------------
    def register(self, request: RegisterRequest) -> ModelVersion:
        """Create a version; Approved when the gate passed and it beats the approved by the margin.

        A retried step finds the version that its first try created (same run id and model data)
        instead of creating a second one.
        """
        group = request.model_group or self.settings.model_package_group_name
        if not group:
            raise ValueError(
                "No model package group: pass model_group or set SKINLESION_MODEL_PACKAGE_GROUP_NAME."
            )
        self.ensure_group(group)
        staging = f"register-{digest(request.run_id or request.model_uri, request.model_uri)}"
        model_data_url = self.data_plane.model_archive_uri(request.model_uri, staging_name=staging)
        summaries = self.summaries(group)
        if request.run_id:
            # Only a version whose description names this run can be its first try's.
            marker = run_marker(request.run_id)
            for summary in summaries:
                if marker not in summary.get("ModelPackageDescription", ""):
                    continue
                version = self.describe(summary["ModelPackageArn"])
                if (
                    version.metadata.get("run_id") == request.run_id
                    and version.model_data_uri == model_data_url
                ):
                    log.info(
                        "Run %s already registered %s: reusing it", request.run_id, version.arn
                    )
                    return version
        # decide_approval compares metrics with the Approved versions only: describe just those.
        approved = [
            self.describe(s["ModelPackageArn"])
            for s in summaries
            if s.get("ModelApprovalStatus") == ApprovalStatus.APPROVED.value
        ]
        status = decide_approval(
            request.metrics,
            approved,
            gate_passed=request.gate_passed,
            margin=request.approval_margin,
        )
        if status is ApprovalStatus.APPROVED and not self.settings.auto_approve:
            # Human in the loop (prod's IAM forbids the pipeline to approve): a person approves
            # with `skinlesion registry approve <arn>`, and the deploy pipeline follows.
            log.info(
                "%s would be Approved; SKINLESION_AUTO_APPROVE is off: PendingManualApproval",
                group,
            )
            status = ApprovalStatus.PENDING
        params = self.package_request(request, group, model_data_url, status)
        arn = self._call("CreateModelPackage", "create_model_package", **params)["ModelPackageArn"]
        version = self.describe(str(arn))
        log.info(
            "Registered %s version %d: %s (approved versions compared: %d, margin %.4f)",
            group,
            version.version,
            status.value,
            len(approved),
            request.approval_margin,
        )
        return version

    def package_request(
        self,
        request: RegisterRequest,
        group: str,
        model_data_url: str,
        status: ApprovalStatus,
    ) -> dict[str, Any]:
        """The CreateModelPackage request of one version."""
        metrics_uri = self.metrics_uri(request.evaluation_uri)
        statistics_uri = self.write_statistics(request.evaluation_uri, metrics_uri, request.metrics)
        headline = request.metrics.get("balanced_accuracy")
        description = f"{request.architecture} trained on {request.data_uri}"
        if headline is not None:
            description += f"; balanced_accuracy={headline:.4f}"
        if request.run_id:
            description += f"; {run_marker(request.run_id)}"
        lineage_values = {
            **self.dataset_lineage(request.dataset_uri),
            "training_image": self.settings.training_image_uri,
            "inference_image": self.settings.inference_image_uri,
        }
        params: dict[str, Any] = {
            "ModelPackageGroupName": group,
            "ModelPackageDescription": description[:1024],
            "InferenceSpecification": {
                "Containers": [
                    {"Image": self.settings.inference_image_uri, "ModelDataUrl": model_data_url}
                ],
                "SupportedContentTypes": list(SUPPORTED_CONTENT_TYPES),
                "SupportedResponseMIMETypes": list(SUPPORTED_RESPONSE_TYPES),
            },
            "ModelApprovalStatus": status.value,
            "ModelMetrics": {
                "ModelQuality": {
                    "Statistics": {"ContentType": "application/json", "S3Uri": statistics_uri}
                }
            },
            "CustomerMetadataProperties": customer_metadata(request, metrics_uri, lineage_values),
            "Domain": "COMPUTER_VISION",
            "Task": "IMAGE_CLASSIFICATION",
        }
        lineage = {"CommitId": request.git_commit, "GeneratedBy": request.run_id}
        lineage = {k: v for k, v in lineage.items() if v}
        if lineage:
            params["MetadataProperties"] = lineage
        if request.run_id:
            # The service drops a repeated create with the same token (a retried step).
            params["ClientToken"] = digest(request.run_id, model_data_url, chars=32)
        return params

    def metrics_uri(self, evaluation_uri: str) -> str:
        """The S3 URI of the evaluation's metrics JSON (uploaded first when it is local)."""
        uri = (
            evaluation_uri
            if evaluation_uri.endswith(".json")
            else join_uri(evaluation_uri, METRICS_FILE)
        )
        if is_s3_uri(uri):
            return uri
        source = Path(uri)
        if not source.is_file():
            raise FileNotFoundError(
                f"No {METRICS_FILE} at {evaluation_uri}; expected the evaluation job's output folder."
            )
        destination = S3Uri.parse(self.data_plane.staging_root).join(
            "evaluations", digest(str(source.resolve()))
        )
        self.data_plane.upload(source, destination)
        return str(destination.join(source.name))

    def write_statistics(
        self, evaluation_uri: str, metrics_uri: str, metrics: Mapping[str, float]
    ) -> str:
        """Write model_quality.json (Model Monitor's model quality statistics, which Studio shows
        for a package's ModelQuality) next to metrics.json; return its S3 URI."""
        block: Mapping[str, Any] | None = None
        folder = metrics_uri.rsplit("/", 1)[0]
        if is_s3_uri(evaluation_uri):
            try:
                block = self.data_plane.read_json(join_uri(folder, EVALUATION_FILE)).get(
                    MODEL_QUALITY_BLOCK
                )
            except JobOutputMissingError:
                block = None
        else:
            local = Path(evaluation_uri)
            local = (local.parent if local.suffix == ".json" else local) / EVALUATION_FILE
            if local.is_file():
                block = json.loads(local.read_text()).get(MODEL_QUALITY_BLOCK)
        if block is None:
            log.warning(
                "No %s with a %s block beside %s: the model quality statistics hold only the "
                "metrics of metrics.json that Model Monitor knows (no confusion matrix)",
                EVALUATION_FILE,
                MODEL_QUALITY_BLOCK,
                metrics_uri,
            )
        destination = S3Uri.parse(join_uri(folder, STATISTICS_FILE))
        self.data_plane.put_json(destination, model_quality_statistics(block, metrics))
        return str(destination)

    def dataset_lineage(self, dataset_uri: str) -> dict[str, str]:
        """The dataset folder, its manifest.json's sha256 and, on a versioned bucket, VersionId."""
        if not dataset_uri:
            return {}
        manifest = join_uri(dataset_uri, MANIFEST_FILE)
        missing = FileNotFoundError(
            f"No {MANIFEST_FILE} in {dataset_uri}: expected the preprocess step's dataset folder "
            "(its DatasetHandoff.dataset)."
        )
        version_id = ""
        if is_s3_uri(manifest):
            location = S3Uri.parse(manifest)
            try:
                response = self.data_plane.s3.get_object(Bucket=location.bucket, Key=location.key)
            except ClientError as error:
                if is_not_found(error):
                    raise missing from None
                raise
            body = response["Body"].read()
            # An unversioned bucket answers no VersionId (or "null"): there is none to keep.
            version_id = str(response.get("VersionId") or "")
            version_id = "" if version_id == "null" else version_id
        else:
            if not Path(manifest).is_file():
                raise missing
            body = Path(manifest).read_bytes()
        lineage = {
            "dataset_uri": dataset_uri,
            "dataset_manifest_sha256": hashlib.sha256(body).hexdigest(),
        }
        if version_id:
            lineage["dataset_manifest_version_id"] = version_id
        return lineage

    def describe(self, arn: str) -> ModelVersion:
        """One version, read from DescribeModelPackage."""
        return version_from_description(self.sagemaker.describe_model_package(ModelPackageName=arn))

    def summaries(self, group: str) -> list[dict[str, Any]]:
        """ListModelPackages of ``group``, every page, oldest first (empty: no such group)."""
        summaries: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "ModelPackageGroupName": group,
            "ModelPackageType": "Versioned",
            "SortBy": "CreationTime",
            "SortOrder": "Ascending",
            "MaxResults": self.page_size,
        }
        try:
            while True:
                response = self.sagemaker.list_model_packages(**kwargs)
                summaries.extend(response.get("ModelPackageSummaryList", []))
                token = response.get("NextToken")
                if not token:
                    break
                kwargs["NextToken"] = token
        except ClientError as error:
            if is_not_found(error):
                return []
            raise
        return sorted(summaries, key=lambda s: int(s.get("ModelPackageVersion", 0)))

    def list_versions(self, group: str, *, details: bool = False) -> list[ModelVersion]:
        """Every version of ``group``, oldest first (empty when the group does not exist).

        From the ListModelPackages summaries alone (one call per page): group, version, ARN,
        approval status, creation time; ``model_data_uri``, ``metrics`` and ``metadata`` are
        empty. ``details=True`` describes each version (one DescribeModelPackage each) to fill
        them in.
        """
        summaries = self.summaries(group)
        if details:
            return [self.describe(s["ModelPackageArn"]) for s in summaries]
        return [version_from_summary(s) for s in summaries]

    def set_approval_status(
        self, arn: str, status: ApprovalStatus, description: str = ""
    ) -> ModelVersion:
        """Approve or reject a version by hand (UpdateModelPackage)."""
        params: dict[str, Any] = {"ModelPackageArn": arn, "ModelApprovalStatus": status.value}
        if description:
            params["ApprovalDescription"] = description[:1024]
        self._call("UpdateModelPackage", "update_model_package", **params)
        log.info("Model package %s is now %s", arn, status.value)
        return self.describe(arn)


def run_marker(run_id: str) -> str:
    """The words naming the run in a version's description (ListModelPackages returns it)."""
    return f"run {run_id}"


def customer_metadata(
    request: RegisterRequest, metrics_uri: str, lineage: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Lineage and headline metrics as CustomerMetadataProperties.

    The service model's CustomerMetadataMap: at most 50 entries, keys of 1-128 and values of
    1-256 characters of letters, digits, spaces and ``_.:/=+-@`` (a sha256 hex digest, S3 URIs,
    ECR image URIs and S3 VersionIds fit). Lineage goes first; metrics fill what room is left.
    """
    values = {
        "git_commit": request.git_commit,
        "run_id": request.run_id,
        "data_uri": request.data_uri,
        "architecture": request.architecture,
        "evaluation_uri": metrics_uri,
        "model_card_uri": request.model_card_uri,
        "baseline_uri": request.baseline_uri,
        "run_cost_usd": "" if request.run_cost_usd is None else f"{request.run_cost_usd:.4f}",
        **(lineage or {}),
    }
    metadata = {k: v for k, v in values.items() if v}
    for name, value in sorted(request.metrics.items()):
        if len(metadata) >= MAX_METADATA_ENTRIES:
            log.warning(
                "Only %d metadata entries fit: metric %s and later left out",
                MAX_METADATA_ENTRIES,
                name,
            )
            break
        metadata[f"{METRIC_PREFIX}{name}"] = repr(float(value))
    too_long = [k for k, v in metadata.items() if len(v) > MAX_METADATA_VALUE]
    if too_long:
        raise ValueError(
            f"Metadata {', '.join(too_long)} longer than {MAX_METADATA_VALUE} characters "
            "(SageMaker's limit for CustomerMetadataProperties values); shorten the URIs."
        )
    return metadata


def _created(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value or "")


def version_from_summary(summary: Mapping[str, Any]) -> ModelVersion:
    """A ModelVersion out of a ListModelPackages summary: no model data, metrics or metadata."""
    return ModelVersion(
        group=summary.get("ModelPackageGroupName", ""),
        version=int(summary.get("ModelPackageVersion", 0)),
        arn=summary["ModelPackageArn"],
        model_data_uri="",
        approval_status=ApprovalStatus(summary.get("ModelApprovalStatus", "PendingManualApproval")),
        metrics={},
        metadata={},
        created=_created(summary.get("CreationTime")),
    )


# Model Monitor's model quality metrics of a multiclass problem ("Model quality metrics and Amazon
# CloudWatch monitoring", docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-model-quality-
# metrics.html); each is {"value", "standard_deviation"}, the deviation "NaN" when not sampled.
_F_BETAS = {"weighted_f0_5": 0.5, "weighted_f1": 1.0, "weighted_f2": 2.0}
MODEL_QUALITY_METRICS = (
    "accuracy",
    "weighted_recall",
    "weighted_precision",
    *_F_BETAS,
)


def model_quality_statistics(
    block: Mapping[str, Any] | None, metrics: Mapping[str, float]
) -> dict[str, Any]:
    """``{"version": 0.0, "multiclass_classification_metrics": {...}}`` from the evaluate job's
    block (or, without one, the metrics.json numbers Model Monitor has names for).

    What the block lacks and its confusion matrix gives is computed from the matrix: weighted
    recall, precision and F-beta, and the same for the best constant classifier (always the
    most frequent true class). Names outside Model Monitor's schema are left out here (they stay
    in metrics.json).
    """
    given: dict[str, float] = {}
    for name, entry in (block or {}).items():
        if isinstance(entry, Mapping) and isinstance(entry.get("value"), int | float):
            given[name] = float(entry["value"])
    if block is None:
        given = {k: float(v) for k, v in metrics.items() if k in MODEL_QUALITY_METRICS}
    matrix = (block or {}).get("confusion_matrix")
    out: dict[str, Any] = {}
    if isinstance(matrix, Mapping) and matrix:
        out["confusion_matrix"] = {
            str(t): {str(p): int(c) for p, c in row.items()} for t, row in matrix.items()
        }
        computed = _from_confusion_matrix(out["confusion_matrix"])
        given = {**computed, **given}
    names = [*MODEL_QUALITY_METRICS]
    names += [f"{n}_best_constant_classifier" for n in MODEL_QUALITY_METRICS]
    for name in names:
        value = given.get(name)
        if value is not None and math.isfinite(value):
            out[name] = {"value": value, "standard_deviation": "NaN"}
    return {"version": 0.0, MODEL_QUALITY_BLOCK: out}


def _from_confusion_matrix(matrix: Mapping[str, Mapping[str, int]]) -> dict[str, float]:
    classes = list(matrix)
    support = {c: sum(matrix[c].values()) for c in classes}
    predicted = {c: sum(matrix[t].get(c, 0) for t in classes) for c in classes}
    total = sum(support.values())
    if not total:
        return {}

    def weighted(recall: Mapping[str, float], precision: Mapping[str, float]) -> dict[str, float]:
        result = {
            "weighted_recall": sum(support[c] * recall[c] for c in classes) / total,
            "weighted_precision": sum(support[c] * precision[c] for c in classes) / total,
        }
        for name, beta in _F_BETAS.items():
            b2 = beta * beta
            result[name] = (
                sum(
                    support[c]
                    * (
                        (1 + b2) * precision[c] * recall[c] / (b2 * precision[c] + recall[c])
                        if precision[c] + recall[c]
                        else 0.0
                    )
                    for c in classes
                )
                / total
            )
        return result

    correct = {c: matrix[c].get(c, 0) for c in classes}
    recall = {c: correct[c] / support[c] if support[c] else 0.0 for c in classes}
    precision = {c: correct[c] / predicted[c] if predicted[c] else 0.0 for c in classes}
    out = {"accuracy": sum(correct.values()) / total, **weighted(recall, precision)}
    # The best constant classifier predicts the most frequent true class for every sample.
    top = max(classes, key=lambda c: support[c])
    constant_recall = {c: 1.0 if c == top else 0.0 for c in classes}
    constant_precision = {c: support[top] / total if c == top else 0.0 for c in classes}
    out["accuracy_best_constant_classifier"] = support[top] / total
    for name, value in weighted(constant_recall, constant_precision).items():
        out[f"{name}_best_constant_classifier"] = value
    return out


def version_from_description(description: Mapping[str, Any]) -> ModelVersion:
    """A ModelVersion out of a DescribeModelPackage response."""
    metadata_all: dict[str, str] = dict(description.get("CustomerMetadataProperties", {}))
    metrics: dict[str, float] = {}
    metadata: dict[str, str] = {}
    for key, value in metadata_all.items():
        if key.startswith(METRIC_PREFIX):
            try:
                metrics[key.removeprefix(METRIC_PREFIX)] = float(value)
            except ValueError:
                log.warning(
                    "Metric %s=%r of %s is not a number", key, value, description["ModelPackageArn"]
                )
        else:
            metadata[key] = value
    containers = description.get("InferenceSpecification", {}).get("Containers", [])
    created = description.get("CreationTime")
    return ModelVersion(
        group=description.get("ModelPackageGroupName", ""),
        version=int(description.get("ModelPackageVersion", 0)),
        arn=description["ModelPackageArn"],
        model_data_uri=containers[0].get("ModelDataUrl", "") if containers else "",
        approval_status=ApprovalStatus(
            description.get("ModelApprovalStatus", "PendingManualApproval")
        ),
        metrics=metrics,
        metadata=metadata,
        created=_created(created),
    )
