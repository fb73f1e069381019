"""The SageMaker Model Registry: model package groups, versions, metrics and approval.

A version carries its evaluation as ModelMetrics (the metrics JSON in S3), its lineage as
CustomerMetadataProperties (git commit, pipeline run id, data URI, architecture, and the headline
metrics, so comparing versions needs no S3 reads), and an approval status decided by
``decide_approval`` against the versions that are Approved now.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from skinlesion.backends.base import ApprovalStatus, ModelVersion, RegisterRequest, decide_approval
from skinlesion.backends.sagemaker.errors import is_already_exists, is_not_found
from skinlesion.backends.sagemaker.naming import digest
from skinlesion.backends.sagemaker.s3 import S3DataPlane, S3Uri, is_s3_uri, join_uri
from skinlesion.backends.sagemaker.validation import validate_request
from skinlesion.settings import Settings

log = logging.getLogger(__name__)

METRIC_PREFIX = "metric:"
METRICS_FILE = "metrics.json"
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
        versions = self.list_versions(group)
        if request.run_id:
            for version in versions:
                if (
                    version.metadata.get("run_id") == request.run_id
                    and version.model_data_uri == model_data_url
                ):
                    log.info(
                        "Run %s already registered %s: reusing it", request.run_id, version.arn
                    )
                    return version
        approved = [v for v in versions if v.approval_status is ApprovalStatus.APPROVED]
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
        headline = request.metrics.get("balanced_accuracy")
        description = f"{request.architecture} trained on {request.data_uri}"
        if headline is not None:
            description += f"; balanced_accuracy={headline:.4f}"
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
                    "Statistics": {"ContentType": "application/json", "S3Uri": metrics_uri}
                }
            },
            "CustomerMetadataProperties": customer_metadata(request, metrics_uri),
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

    def describe(self, arn: str) -> ModelVersion:
        """One version, read from DescribeModelPackage."""
        return version_from_description(self.sagemaker.describe_model_package(ModelPackageName=arn))

    def list_versions(self, group: str) -> list[ModelVersion]:
        """Every version of ``group``, oldest first (empty when the group does not exist)."""
        arns: list[str] = []
        kwargs: dict[str, Any] = {
            "ModelPackageGroupName": group,
            "ModelPackageType": "Versioned",
            "SortBy": "CreationTime",
            "SortOrder": "Ascending",
        }
        try:
            while True:
                response = self.sagemaker.list_model_packages(**kwargs)
                arns.extend(
                    s["ModelPackageArn"] for s in response.get("ModelPackageSummaryList", [])
                )
                token = response.get("NextToken")
                if not token:
                    break
                kwargs["NextToken"] = token
        except ClientError as error:
            if is_not_found(error):
                return []
            raise
        versions = [self.describe(arn) for arn in arns]
        return sorted(versions, key=lambda v: v.version)

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


def customer_metadata(request: RegisterRequest, metrics_uri: str) -> dict[str, str]:
    """Lineage and headline metrics as CustomerMetadataProperties (at most 50, values <= 256)."""
    values = {
        "git_commit": request.git_commit,
        "run_id": request.run_id,
        "data_uri": request.data_uri,
        "architecture": request.architecture,
        "evaluation_uri": metrics_uri,
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
        created=created.isoformat() if isinstance(created, datetime) else str(created or ""),
    )
