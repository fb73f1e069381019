"""The monitor compares traffic with the baseline of the version the endpoint serves now.

Each registered version records its baseline (the training run's Baseline step); with no
``baseline_uri`` the monitor finds the endpoint's current version through its endpoint config's
tags (one config per deployment) and takes that version's baseline. A URI frozen at schedule
time would keep alarming after an automatic redeploy.

moto's server answers every call. moto has no UpdateEndpoint, so the blue/green update's end
state is set on moto's endpoint directly (its config switched to the new one, as SageMaker's
update leaves it); the new config itself is made by the deployer, through the API.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.aws.helpers import BUCKETS, put, registered
from tests.aws.moto_server import ACCOUNT, REGION

from skinlesion.aws import AwsClients
from skinlesion.backends.base import DeployRequest, MonitorRequest
from skinlesion.backends.sagemaker import SageMakerBackend

ENDPOINT = "skinlesion-test"
CAPTURE = f"s3://{BUCKETS['capture_bucket']}/capture"
MODELS = BUCKETS["models_bucket"]
START = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def _baseline(clients: AwsClients, run: str) -> str:
    uri = f"s3://{MODELS}/job-outputs/skl-baseline-{run}/baseline"
    model = f"s3://{MODELS}/runs/{run}/train/model/skl-train-{run}/output/model.tar.gz"
    put(
        clients.client("s3"),
        f"{uri}/statistics.json",
        json.dumps({"model": {"uri": model}}).encode(),
    )
    return uri


def _monitored_baseline(backend: SageMakerBackend, clients: AwsClients, hour: int) -> str:
    """Run the monitor over one hour with no baseline given; the baseline its job was given."""
    moment = START + timedelta(hours=hour)
    key = f"capture/{ENDPOINT}/AllTraffic/{moment:%Y/%m/%d/%H}/00-00-000-x.jsonl"
    put(clients.client("s3"), f"s3://{BUCKETS['capture_bucket']}/{key}", b"{}\n")
    result = backend.monitor(
        MonitorRequest(
            endpoint_name=ENDPOINT,
            output_uri=f"s3://{MODELS}/monitor/{hour}",
            capture_uri=CAPTURE,
            start=moment,
            end=moment + timedelta(hours=1),
            run_id=f"monitor-{hour}",
        )
    )
    assert result is not None
    job = clients.client("sagemaker").describe_processing_job(ProcessingJobName=result.job_name)
    [baseline] = [i for i in job["ProcessingInputs"] if i["InputName"] == "baseline"]
    return str(baseline["S3Input"]["S3Uri"]).rstrip("/")


def test_after_a_redeploy_the_monitor_uses_the_new_versions_baseline(
    backend: SageMakerBackend, clients: AwsClients
) -> None:
    first_baseline, second_baseline = _baseline(clients, "run-1"), _baseline(clients, "run-2")
    first = registered(backend, clients, "run-1", 0.75, baseline_uri=first_baseline)
    backend.deploy(DeployRequest(model_version_arn=first.arn, endpoint_name=ENDPOINT))
    assert backend.describe_endpoint(ENDPOINT).model_version_arn == first.arn
    assert _monitored_baseline(backend, clients, 0) == first_baseline

    second = registered(backend, clients, "run-2", 0.80, baseline_uri=second_baseline)
    sagemaker = clients.client("sagemaker")
    package = sagemaker.describe_model_package(ModelPackageName=second.arn)
    deployer = backend.deployer
    request = DeployRequest(model_version_arn=second.arn, endpoint_name=ENDPOINT)
    config = deployer.ensure_endpoint_config(
        request, deployer.ensure_model(ENDPOINT, package), CAPTURE
    )
    _finish_blue_green_update(config)

    assert backend.describe_endpoint(ENDPOINT).model_version_arn == second.arn
    assert _monitored_baseline(backend, clients, 1) == second_baseline


def _finish_blue_green_update(config_name: str) -> Any:
    from moto.sagemaker.models import sagemaker_backends

    endpoint = sagemaker_backends[ACCOUNT][REGION].endpoints[ENDPOINT]
    endpoint.endpoint_config_name = config_name
    return endpoint
