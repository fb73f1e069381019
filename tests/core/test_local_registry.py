"""The local model registry keeps SageMaker Model Package Group semantics."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from skinlesion.backends.base import ApprovalStatus, ModelVersion, decide_approval
from skinlesion.backends.local.registry import LocalModelRegistry, RegistryError


def _register(
    registry: LocalModelRegistry, accuracy: float, status: ApprovalStatus
) -> ModelVersion:
    return registry.create_version(
        "skin",
        model_data_uri=f"/models/{accuracy}/model.tar.gz",
        metrics={"balanced_accuracy": accuracy},
        metadata={"git_commit": "abc123", "run_id": "run-1", "data_uri": "/data"},
        approval_status=status,
    )


def test_versions_count_from_one_and_keep_lineage(tmp_path: Path) -> None:
    registry = LocalModelRegistry(tmp_path)
    first = _register(registry, 0.8, ApprovalStatus.APPROVED)
    second = _register(registry, 0.7, ApprovalStatus.PENDING)
    assert (first.version, second.version) == (1, 2)
    assert second.arn.endswith("model-package/skin/2")
    listed = registry.list_versions("skin")
    assert [v.version for v in listed] == [1, 2]
    assert listed[0].metadata["git_commit"] == "abc123"
    assert registry.get(second.arn) == second


def test_parallel_registrations_never_share_a_number(tmp_path: Path) -> None:
    registry = LocalModelRegistry(tmp_path)
    with ThreadPoolExecutor(8) as pool:
        versions = list(
            pool.map(lambda i: _register(registry, i / 100, ApprovalStatus.PENDING), range(24))
        )
    assert sorted(v.version for v in versions) == list(range(1, 25))


def test_status_update_and_unknown_arn(tmp_path: Path) -> None:
    registry = LocalModelRegistry(tmp_path)
    version = _register(registry, 0.8, ApprovalStatus.PENDING)
    assert (
        registry.update_status(version.arn, ApprovalStatus.APPROVED).approval_status
        is ApprovalStatus.APPROVED
    )
    assert registry.get(version.arn).approval_status is ApprovalStatus.APPROVED
    with pytest.raises(RegistryError, match="No model package"):
        registry.get(version.arn.replace("/1", "/9"))
    with pytest.raises(RegistryError, match="Invalid model group"):
        registry.list_versions("../etc")


def test_approval_needs_the_gate_and_the_margin(tmp_path: Path) -> None:
    registry = LocalModelRegistry(tmp_path)
    approved = [_register(registry, 0.80, ApprovalStatus.APPROVED)]
    assert (
        decide_approval({"balanced_accuracy": 0.9}, [], gate_passed=True, margin=0.0)
        is ApprovalStatus.APPROVED
    )
    assert (
        decide_approval({"balanced_accuracy": 0.9}, approved, gate_passed=False, margin=0.0)
        is ApprovalStatus.REJECTED
    )
    assert (
        decide_approval({"balanced_accuracy": 0.81}, approved, gate_passed=True, margin=0.02)
        is ApprovalStatus.PENDING
    )
    assert (
        decide_approval({"balanced_accuracy": 0.82}, approved, gate_passed=True, margin=0.02)
        is ApprovalStatus.APPROVED
    )
