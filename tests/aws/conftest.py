"""Fixtures of the SageMaker backend tests: a reset moto server, settings and clients for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from tests.aws.helpers import BUCKETS, make_settings, offline_client
from tests.aws.moto_server import REGION

from skinlesion.aws import AwsClients
from skinlesion.backends.sagemaker import SageMakerBackend
from skinlesion.settings import Settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in tests/aws talks to moto (or stubs its client): mark it ``aws``."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.aws)


@pytest.fixture
def endpoint(moto_endpoint: str) -> str:
    """The moto server's URL, reset before the test."""
    return moto_endpoint


@pytest.fixture(scope="session")
def boto_session() -> boto3.Session:
    """One session for the tests' clients: service models are parsed once, not per test."""
    return boto3.Session(region_name=REGION)


@pytest.fixture
def settings(endpoint: str, boto_session: boto3.Session) -> Settings:
    """Test settings pointing at moto, with the Terraform buckets created."""
    result = make_settings(endpoint)
    s3 = AwsClients.from_settings(result, session=boto_session).client("s3")
    for bucket in BUCKETS.values():
        s3.create_bucket(Bucket=bucket)
    return result


@pytest.fixture
def clients(settings: Settings, boto_session: boto3.Session) -> AwsClients:
    return AwsClients.from_settings(settings, session=boto_session)


@pytest.fixture
def backend(settings: Settings, clients: AwsClients) -> SageMakerBackend:
    return SageMakerBackend(settings, clients, sleep=lambda _: None)


@pytest.fixture
def stubbed_sagemaker() -> Iterator[tuple[Any, Stubber]]:
    """An offline SageMaker client and its Stubber; every queued response must be used."""
    client = offline_client("sagemaker")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()
