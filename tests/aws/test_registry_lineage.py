"""Lineage that holds, on moto's server: the dataset's manifest hash (and S3 VersionId), the image
URIs, ModelMetrics in Model Monitor's model quality format, and a listing that does not describe
every version.

Sources of the rules encoded here:
- CustomerMetadataProperties: at most 50 entries, keys 1-128 and values 1-256 characters of
  ``[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]`` (botocore's service model, shape CustomerMetadataMap; the
  registry validates every request against it before it leaves).
- ListModelPackages returns ModelPackageSummaryList (name, group, version, ARN, description,
  creation time, status, approval status; no metrics, no metadata), MaxResults 1-100
  (service model, ListModelPackagesInput / ModelPackageSummary).
- Model quality statistics: "Model quality metrics and Amazon CloudWatch monitoring",
  https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-model-quality-metrics.html
  (multiclass: ``confusion_matrix`` {actual: {predicted: count}}, ``accuracy``,
  ``weighted_recall``, ``weighted_precision``, ``weighted_f0_5``, ``weighted_f1``,
  ``weighted_f2`` and their ``*_best_constant_classifier``, each {value, standard_deviation}).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from tests.aws.helpers import BUCKETS, REGISTRY, put, registered

from skinlesion.aws import AwsClients
from skinlesion.backends.base import ApprovalStatus
from skinlesion.backends.sagemaker import SageMakerBackend
from skinlesion.backends.sagemaker.registry import (
    ModelRegistry,
    model_quality_statistics,
)

MODELS = BUCKETS["models_bucket"]
PROCESSED = BUCKETS["processed_bucket"]
GROUP = "skinlesion-test"
MANIFEST = json.dumps({"classes": ["MEL", "NV"], "image_size": 64, "splits": {"train": 8}})


def _dataset(clients: AwsClients, run: str, *, versioned: bool) -> tuple[str, str]:
    """A preprocessed dataset folder with its manifest.json; returns its URI and VersionId."""
    s3 = clients.client("s3")
    if versioned:
        s3.put_bucket_versioning(Bucket=PROCESSED, VersioningConfiguration={"Status": "Enabled"})
    uri = f"s3://{PROCESSED}/runs/{run}/preprocess/dataset"
    response = s3.put_object(
        Bucket=PROCESSED, Key=f"runs/{run}/preprocess/dataset/manifest.json", Body=MANIFEST.encode()
    )
    return uri, str(response.get("VersionId", ""))


def _evaluation(clients: AwsClients, run: str) -> None:
    """evaluation.json as the evaluate job writes it (its model-quality block)."""
    block = {
        "confusion_matrix": {"MEL": {"MEL": 3, "NV": 1}, "NV": {"MEL": 2, "NV": 4}},
        "accuracy": {"value": 0.7},
        "balanced_accuracy": {"value": 0.708},
        "weighted_recall": {"value": 0.7},
        "weighted_precision": {"value": 0.72},
        "weighted_f1": {"value": 0.7},
    }
    put(
        clients.client("s3"),
        f"s3://{MODELS}/runs/{run}/evaluate/evaluation/evaluation.json",
        json.dumps({"n_samples": 10, "multiclass_classification_metrics": block}).encode(),
    )


@pytest.mark.parametrize("versioned", [True, False])
def test_the_dataset_manifest_hash_version_and_images_are_on_the_package(
    backend: SageMakerBackend, clients: AwsClients, versioned: bool
) -> None:
    dataset, version_id = _dataset(clients, "run-1", versioned=versioned)
    version = registered(backend, clients, "run-1", 0.7, dataset_uri=dataset)
    metadata = clients.client("sagemaker").describe_model_package(ModelPackageName=version.arn)[
        "CustomerMetadataProperties"
    ]
    expected = {
        "dataset_uri": dataset,
        "dataset_manifest_sha256": hashlib.sha256(MANIFEST.encode()).hexdigest(),
        "training_image": f"{REGISTRY}/skinlesion-training:0.1.0",
        "inference_image": f"{REGISTRY}/skinlesion-inference:0.1.0",
    }
    if versioned:
        assert version_id and version_id != "null"
        expected["dataset_manifest_version_id"] = version_id
    assert {k: metadata.get(k) for k in expected} == expected
    assert ("dataset_manifest_version_id" in metadata) is versioned
    assert version.metadata["dataset_manifest_sha256"] == expected["dataset_manifest_sha256"]


def test_a_dataset_without_its_manifest_is_refused_naming_it(
    backend: SageMakerBackend, clients: AwsClients
) -> None:
    missing = f"s3://{PROCESSED}/runs/run-1/preprocess/nothing-here"
    with pytest.raises(FileNotFoundError, match=f"No manifest.json in {missing}"):
        registered(backend, clients, "run-1", 0.7, dataset_uri=missing)


def test_model_metrics_point_at_model_monitor_statistics_next_to_metrics_json(
    backend: SageMakerBackend, clients: AwsClients
) -> None:
    _evaluation(clients, "run-1")
    version = registered(backend, clients, "run-1", 0.7)
    package = clients.client("sagemaker").describe_model_package(ModelPackageName=version.arn)
    uri = f"s3://{MODELS}/runs/run-1/evaluate/evaluation/model_quality.json"
    assert package["ModelMetrics"] == {
        "ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": uri}}
    }
    body = clients.client("s3").get_object(
        Bucket=MODELS, Key="runs/run-1/evaluate/evaluation/model_quality.json"
    )["Body"]
    statistics = json.loads(body.read())
    assert statistics["version"] == 0.0
    block = statistics["multiclass_classification_metrics"]
    assert block["confusion_matrix"] == {"MEL": {"MEL": 3, "NV": 1}, "NV": {"MEL": 2, "NV": 4}}
    assert block["accuracy"] == {"value": 0.7, "standard_deviation": "NaN"}
    assert block["weighted_precision"] == {"value": 0.72, "standard_deviation": "NaN"}
    # Computed from the confusion matrix where the job did not write them.
    assert block["weighted_f2"]["value"] == pytest.approx(_weighted_f(block, 2.0))
    assert block["weighted_f0_5"]["value"] == pytest.approx(_weighted_f(block, 0.5))
    assert block["accuracy_best_constant_classifier"]["value"] == pytest.approx(0.6)
    assert block["weighted_recall_best_constant_classifier"]["value"] == pytest.approx(0.6)
    # balanced_accuracy is not in the Model Monitor schema: it stays in metrics.json only.
    assert "balanced_accuracy" not in block
    # The package keeps pointing at metrics.json too, as lineage.
    assert version.metadata["evaluation_uri"].endswith("/evaluation/metrics.json")


def _weighted_f(block: dict[str, Any], beta: float) -> float:
    matrix = block["confusion_matrix"]
    total = sum(sum(row.values()) for row in matrix.values())
    result = 0.0
    for name, row in matrix.items():
        support = sum(row.values())
        predicted = sum(r[name] for r in matrix.values())
        recall = row[name] / support
        precision = row[name] / predicted
        f = (1 + beta**2) * precision * recall / (beta**2 * precision + recall)
        result += support / total * f
    return result


def test_statistics_without_a_confusion_matrix_keep_what_is_there() -> None:
    """An evaluation.json of an older job (no matrix): the given metrics, nothing invented."""
    statistics = model_quality_statistics({"accuracy": {"value": 0.5}}, {"accuracy": 0.5})
    assert statistics == {
        "version": 0.0,
        "multiclass_classification_metrics": {
            "accuracy": {"value": 0.5, "standard_deviation": "NaN"}
        },
    }


def _count_calls(client: Any) -> list[str]:
    calls: list[str] = []
    client.meta.events.register(
        "before-parameter-build.sagemaker.*", lambda model, **_: calls.append(model.name)
    )
    return calls


def test_listing_a_group_is_one_call_per_page_without_describes(
    backend: SageMakerBackend, clients: AwsClients
) -> None:
    """N versions, pages of 2: ceil(N / 2) ListModelPackages calls and no DescribeModelPackage."""
    for run in range(5):
        registered(backend, clients, f"run-{run}", 0.5 + run / 100)
    registry = ModelRegistry(clients.client("sagemaker"), backend.data_plane, backend.settings)
    registry.page_size = 2
    calls = _count_calls(registry.sagemaker)
    versions = registry.list_versions(GROUP)
    assert calls == ["ListModelPackages"] * 3
    assert [v.version for v in versions] == [1, 2, 3, 4, 5]
    assert versions[0].approval_status is ApprovalStatus.APPROVED
    assert versions[0].arn.endswith(f"model-package/{GROUP}/1")
    assert versions[0].created  # the summary's CreationTime
    # The details are one describe away, for the consumers that need them.
    detailed = registry.list_versions(GROUP, details=True)
    assert calls.count("DescribeModelPackage") == 5
    assert detailed[0].metrics["balanced_accuracy"] == pytest.approx(0.5)


def test_register_describes_only_the_approved_versions(
    backend: SageMakerBackend, clients: AwsClients
) -> None:
    """decide_approval needs the metrics of the Approved versions only; the retry check finds
    its run in the summaries' descriptions. N = 6 earlier versions, 1 of them Approved."""
    registered(backend, clients, "run-0", 0.90)  # Approved: the bar
    for run in range(1, 6):
        registered(backend, clients, f"run-{run}", 0.50)  # PendingManualApproval
    calls = _count_calls(clients.client("sagemaker"))
    version = registered(backend, clients, "run-new", 0.95)
    assert version.approval_status is ApprovalStatus.APPROVED
    # One describe of the Approved version, one of the version just created.
    assert calls.count("DescribeModelPackage") == 2
    again = registered(backend, clients, "run-new", 0.95)
    assert again.arn == version.arn
