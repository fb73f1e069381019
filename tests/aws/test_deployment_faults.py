"""Deployment under faults (moto): only a Failed endpoint is re-created; one that may still
serve is left for a person; a bake the timeout cannot wait through is refused up front.

moto gap, closed here: moto's endpoints are InService at once and never change status, so the
test sets the status SageMaker would report (DescribeEndpoint's EndpointStatus values) on moto's
endpoint record in this process.
"""

from __future__ import annotations

import dataclasses

import pytest
from tests.aws.helpers import registered
from tests.aws.moto_server import ACCOUNT, REGION

from skinlesion.aws import AwsClients
from skinlesion.backends.base import DeployRequest
from skinlesion.backends.sagemaker import SageMakerBackend
from skinlesion.backends.sagemaker.errors import DeploymentError
from skinlesion.settings import Settings

ENDPOINT = "skl-test-faults"


def _set_status(name: str, status: str) -> None:
    from moto.sagemaker.models import sagemaker_backends

    sagemaker_backends[ACCOUNT][REGION].endpoints[name].endpoint_status = status


@pytest.mark.parametrize("status", ["UpdateRollbackFailed", "OutOfService"])
def test_an_endpoint_that_may_serve_is_not_deleted(
    backend: SageMakerBackend, clients: AwsClients, status: str
) -> None:
    version = registered(backend, clients, "run-1", 0.8)
    request = DeployRequest(model_version_arn=version.arn, endpoint_name=ENDPOINT)
    backend.deploy(request)
    _set_status(ENDPOINT, status)
    with pytest.raises(DeploymentError, match=f"is {status} and may still serve traffic"):
        backend.deploy(request)
    described = clients.client("sagemaker").describe_endpoint(EndpointName=ENDPOINT)
    assert described["EndpointStatus"] == status  # still there, untouched


def test_a_failed_endpoint_is_created_again(backend: SageMakerBackend, clients: AwsClients) -> None:
    version = registered(backend, clients, "run-1", 0.8)
    request = DeployRequest(model_version_arn=version.arn, endpoint_name=ENDPOINT)
    backend.deploy(request)
    _set_status(ENDPOINT, "Failed")
    assert backend.deploy(request).status == "InService"


def test_a_bake_longer_than_the_timeout_is_refused_before_any_call(
    settings: Settings, clients: AwsClients
) -> None:
    slow = dataclasses.replace(
        settings, blue_green_bake_seconds=3600, endpoint_timeout_seconds=1800
    )
    backend = SageMakerBackend(slow, clients, sleep=lambda _: None)
    with pytest.raises(DeploymentError, match=r"BAKE_SECONDS \(3600\) must be shorter"):
        backend.deploy(DeployRequest(model_version_arn="arn:none", endpoint_name=ENDPOINT))
