"""The model registry round trip against moto: group, versions, metrics, lineage, approval."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.stub import Stubber
from tests.aws.helpers import BUCKETS, REGISTRY, registered

from skinlesion.artifacts import ModelSpec
from skinlesion.aws import AwsClients
from skinlesion.backends.base import ApprovalStatus, RegisterRequest
from skinlesion.backends.sagemaker import SageMakerBackend
from skinlesion.backends.sagemaker.errors import JobOutputMissingError

MODELS = BUCKETS["models_bucket"]
GROUP = "skinlesion-test"


def test_first_version_creates_the_group_and_is_approved(
    backend: SageMakerBackend, clients: AwsClients
) -> None:
    version = registered(backend, clients, "run-1", 0.70)
    sagemaker = clients.client("sagemaker")
    assert (
        sagemaker.describe_model_package_group(ModelPackageGroupName=GROUP)["ModelPackageGroupName"]
        == GROUP
    )
    assert version.approval_status is ApprovalStatus.APPROVED
    assert version.version == 1 and version.group == GROUP
    assert (
        version.model_data_uri
        == f"s3://{MODELS}/runs/run-1/train/model/skl-train-run-1/output/model.tar.gz"
    )
    assert version.metrics == {"accuracy": 0.9, "balanced_accuracy": 0.70}
    assert version.metadata == {
        "git_commit": "0123abcd",
        "run_id": "run-1",
        "data_uri": f"s3://{BUCKETS['data_bucket']}/isic2019/",
        "architecture": "efficientnet_lite0",
        "evaluation_uri": f"s3://{MODELS}/runs/run-1/evaluate/evaluation/metrics.json",
        "training_image": f"{REGISTRY}/skinlesion-training:0.1.0",
        "inference_image": f"{REGISTRY}/skinlesion-inference:0.1.0",
    }
    package = sagemaker.describe_model_package(ModelPackageName=version.arn)
    # Model Monitor's statistics next to metrics.json (test_registry_lineage.py reads them).
    assert package["ModelMetrics"] == {
        "ModelQuality": {
            "Statistics": {
                "ContentType": "application/json",
                "S3Uri": f"s3://{MODELS}/runs/run-1/evaluate/evaluation/model_quality.json",
            }
        }
    }
    assert (
        package["InferenceSpecification"]["Containers"][0]["Image"]
        == f"{REGISTRY}/skinlesion-inference:0.1.0"
    )
    assert package["MetadataProperties"] == {"CommitId": "0123abcd", "GeneratedBy": "run-1"}


def test_approval_needs_the_margin_over_the_approved_version(
    backend: SageMakerBackend, clients: AwsClients
) -> None:
    assert registered(backend, clients, "run-1", 0.70).approval_status is ApprovalStatus.APPROVED
    worse = registered(backend, clients, "run-2", 0.71, approval_margin=0.02)
    assert worse.approval_status is ApprovalStatus.PENDING
    better = registered(backend, clients, "run-3", 0.72, approval_margin=0.02)
    assert better.approval_status is ApprovalStatus.APPROVED
    gated = registered(backend, clients, "run-4", 0.99, gate_passed=False)
    assert gated.approval_status is ApprovalStatus.REJECTED
    versions = backend.list_versions(GROUP)
    assert [(v.version, v.approval_status) for v in versions] == [
        (1, ApprovalStatus.APPROVED),
        (2, ApprovalStatus.PENDING),
        (3, ApprovalStatus.APPROVED),
        (4, ApprovalStatus.REJECTED),
    ]
    # The bar is now the best approved version (0.72), not the first one.
    assert (
        registered(backend, clients, "run-5", 0.73, approval_margin=0.02).approval_status
        is ApprovalStatus.PENDING
    )


def test_a_retried_register_step_returns_the_same_version(
    backend: SageMakerBackend, clients: AwsClients
) -> None:
    first = registered(backend, clients, "run-1", 0.70)
    again = registered(backend, clients, "run-1", 0.70)
    assert again.arn == first.arn
    assert len(backend.list_versions(GROUP)) == 1


def test_manual_approval_round_trip(backend: SageMakerBackend, clients: AwsClients) -> None:
    """moto gap: UpdateModelPackage drops CustomerMetadataProperties, so only the status is
    checked after the update here (real SageMaker keeps them)."""
    registered(backend, clients, "run-1", 0.80)
    pending = registered(backend, clients, "run-2", 0.79)
    assert pending.approval_status is ApprovalStatus.PENDING
    approved = backend.set_approval_status(pending.arn, ApprovalStatus.APPROVED)
    assert approved.approval_status is ApprovalStatus.APPROVED and approved.arn == pending.arn


def test_list_versions_of_a_missing_group_is_empty(backend: SageMakerBackend) -> None:
    assert backend.list_versions("no-such-group") == []


def test_local_model_folder_and_evaluation_are_packed_and_uploaded(
    backend: SageMakerBackend, clients: AwsClients, tmp_path: Path
) -> None:
    model_dir = tmp_path / "model"
    ModelSpec(
        architecture="mobilenet_v2", image_size=64, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2)
    ).write(model_dir)
    (model_dir / "model.pt").write_bytes(b"weights")
    evaluation = tmp_path / "evaluation"
    evaluation.mkdir()
    (evaluation / "metrics.json").write_text('{"balanced_accuracy": 0.5}')
    version = backend.register(
        RegisterRequest(
            model_uri=str(model_dir),
            evaluation_uri=str(evaluation),
            model_group=GROUP,
            metrics={"balanced_accuracy": 0.5},
            data_uri="/data/isic",
            architecture="mobilenet_v2",
        )
    )
    assert version.model_data_uri.startswith(f"s3://{MODELS}/staging/")
    assert version.model_data_uri.endswith("/model.tar.gz")
    assert version.metadata["evaluation_uri"].startswith(f"s3://{MODELS}/staging/evaluations/")
    keys = {o["Key"] for o in clients.client("s3").list_objects_v2(Bucket=MODELS)["Contents"]}
    assert version.model_data_uri.removeprefix(f"s3://{MODELS}/") in keys
    assert "run_id" not in version.metadata  # empty values are left out


def test_a_missing_model_archive_is_explained(backend: SageMakerBackend) -> None:
    with pytest.raises(JobOutputMissingError, match=r"No model\.tar\.gz under"):
        backend.register(
            RegisterRequest(
                model_uri=f"s3://{MODELS}/nothing/here",
                evaluation_uri=f"s3://{MODELS}/e",
                model_group=GROUP,
                metrics={},
                data_uri="s3://d/",
                architecture="resnet50",
            )
        )


def test_a_group_created_meanwhile_is_used(backend: SageMakerBackend, clients: AwsClients) -> None:
    """Two steps registering into a new group at once: the loser of the create race must carry
    on. moto cannot interleave the calls, so the race is stubbed."""
    from tests.aws.helpers import offline_client

    from skinlesion.backends.sagemaker.registry import ModelRegistry

    client = offline_client("sagemaker")
    registry = ModelRegistry(client, backend.data_plane, backend.settings)
    arn = f"arn:aws:sagemaker:us-east-1:123456789012:model-package-group/{GROUP}"
    described = {
        "ModelPackageGroupName": GROUP,
        "ModelPackageGroupArn": arn,
        "CreationTime": "2026-01-01T00:00:00Z",
        "CreatedBy": {},
        "ModelPackageGroupStatus": "Completed",
    }
    with Stubber(client) as stubber:
        stubber.add_client_error(
            "describe_model_package_group",
            "ValidationException",
            f"ModelPackageGroup {arn} does not exist.",
        )
        stubber.add_client_error(
            "create_model_package_group",
            "ValidationException",
            f"Model Package Group {GROUP} already exists.",
        )
        stubber.add_response(
            "describe_model_package_group", described, {"ModelPackageGroupName": GROUP}
        )
        assert registry.ensure_group(GROUP) == arn
        stubber.assert_no_pending_responses()
