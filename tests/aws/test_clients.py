"""The client factory over real HTTP (moto behind a recording proxy): user agent, standard
retries on throttling, region, endpoint URL, and credentials from an assumed role."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from tests.aws.helpers import RecordingProxy
from tests.aws.moto_server import REGION

from skinlesion import __version__
from skinlesion.aws import USER_AGENT, AwsClients, client_factory_from_environment


def test_requests_carry_our_user_agent_and_the_standard_retry_mode(endpoint: str) -> None:
    with RecordingProxy(endpoint) as proxy:
        clients = AwsClients(REGION, endpoint_url=proxy.url)
        clients.client("sagemaker").list_training_jobs()
    (request,) = proxy.requests
    agent = request["headers"]["User-Agent"]
    assert f"skinlesion/{__version__}" == USER_AGENT
    assert agent.endswith(f" {USER_AGENT}")
    assert "retry-mode#standard" in agent
    assert request["target"] == "SageMaker.ListTrainingJobs"


def test_throttled_calls_are_retried_until_they_succeed(endpoint: str) -> None:
    with RecordingProxy(endpoint, throttle=2, throttle_target="ListTrainingJobs") as proxy:
        clients = AwsClients(REGION, endpoint_url=proxy.url, max_attempts=3)
        response = clients.client("sagemaker").list_training_jobs()
    assert response["TrainingJobSummaries"] == []
    assert proxy.targets() == ["SageMaker.ListTrainingJobs"] * 3
    assert response["ResponseMetadata"]["RetryAttempts"] == 2


def test_throttling_beyond_max_attempts_raises_the_service_error(endpoint: str) -> None:
    with RecordingProxy(endpoint, throttle=5, throttle_target="ListTrainingJobs") as proxy:
        clients = AwsClients(REGION, endpoint_url=proxy.url, max_attempts=2)
        with pytest.raises(ClientError, match="ThrottlingException"):
            clients.client("sagemaker").list_training_jobs()
    assert len(proxy.requests) == 2


def test_an_assumed_role_signs_every_call_with_its_credentials(endpoint: str) -> None:
    role = "arn:aws:iam::123456789012:role/skinlesion-deployer"
    with RecordingProxy(endpoint) as proxy:
        clients = AwsClients(REGION, endpoint_url=proxy.url, role_arn=role)
        clients.client("sagemaker").list_endpoints()
        credentials = clients.client("s3")._request_signer._credentials.get_frozen_credentials()
    assert proxy.targets() == ["AssumeRole", "SageMaker.ListEndpoints"]
    signed = proxy.requests[1]["headers"]["Authorization"]
    assert f"Credential={credentials.access_key}/" in signed
    assert credentials.access_key != "testing"  # not the base (environment) credentials
    assert credentials.token


def test_clients_are_cached_and_built_from_settings_read_at_call_time(
    endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKINLESION_REGION", "eu-north-1")
    monkeypatch.setenv("SKINLESION_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("SKINLESION_MAX_API_ATTEMPTS", "4")
    clients = client_factory_from_environment()
    sagemaker = clients.client("sagemaker")
    assert clients.client("sagemaker") is sagemaker
    assert sagemaker.meta.region_name == "eu-north-1"
    assert sagemaker.meta.endpoint_url == endpoint
    assert sagemaker.meta.config.retries == {"mode": "standard", "total_max_attempts": 4}


def test_no_region_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="SKINLESION_REGION"):
        AwsClients("")
