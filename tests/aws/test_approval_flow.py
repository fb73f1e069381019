"""Human approval as the default: register gives at best PendingManualApproval; a person
approves; ``registry pending-deploys`` lists what the endpoint does not serve yet (moto)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml
from tests.aws.helpers import registered

from skinlesion.aws import AwsClients
from skinlesion.backends.base import ApprovalStatus, DeployRequest
from skinlesion.backends.commands import pending_deploys
from skinlesion.backends.sagemaker import SageMakerBackend
from skinlesion.settings import Settings

ENDPOINT = "skl-test-endpoint"


def test_auto_approval_is_off_by_default() -> None:
    assert Settings().auto_approve is False
    assert Settings.from_environment({"SKINLESION_AUTO_APPROVE": "true"}).auto_approve is True


def test_without_auto_approve_the_best_is_pending_and_a_person_approves(
    settings: Settings, clients: AwsClients
) -> None:
    backend = SageMakerBackend(
        dataclasses.replace(settings, auto_approve=False), clients, sleep=lambda _: None
    )
    first = registered(backend, clients, "run-1", 0.9)  # would be Approved: nothing to beat
    assert first.approval_status is ApprovalStatus.PENDING
    rejected = registered(backend, clients, "run-2", 0.2, gate_passed=False)
    assert rejected.approval_status is ApprovalStatus.REJECTED  # the gate still rejects
    assert pending_deploys(backend, "skinlesion-test", ENDPOINT) == []
    approved = backend.set_approval_status(first.arn, ApprovalStatus.APPROVED)
    assert approved.approval_status is ApprovalStatus.APPROVED
    assert [v.arn for v in pending_deploys(backend, "skinlesion-test", ENDPOINT)] == [first.arn]


def test_pending_deploys_lists_only_approved_versions_newer_than_the_served_one(
    backend: SageMakerBackend, clients: AwsClients
) -> None:
    v1 = registered(backend, clients, "run-1", 0.8)
    backend.deploy(DeployRequest(model_version_arn=v1.arn, endpoint_name=ENDPOINT))
    assert pending_deploys(backend, "skinlesion-test", ENDPOINT) == []
    v2 = registered(backend, clients, "run-2", 0.9)
    assert v2.approval_status is ApprovalStatus.APPROVED
    assert [v.arn for v in pending_deploys(backend, "skinlesion-test", ENDPOINT)] == [v2.arn]


def test_the_deploy_pipeline_compiles_to_one_deploy_step(tmp_path: Path) -> None:
    from kfp import compiler

    from pipelines.deploy import deploy_pipeline

    package = tmp_path / "deploy.yaml"
    compiler.Compiler().compile(deploy_pipeline, str(package))
    spec = next(yaml.safe_load_all(package.read_text()))  # the pipeline spec, then platform
    assert list(spec["root"]["dag"]["tasks"]) == ["deploy"]
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == {
        "model_version_arn",
        "endpoint_name",
        "backend",
        "instance_type",
        "min_instances",
        "max_instances",
        "capture_percentage",
        "challenger_model_version_arn",
        "challenger_traffic_percent",
    }
