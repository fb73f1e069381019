"""Create-or-attach over real HTTP: a lost CreateTrainingJob/CreateProcessingJob response.

A proxy in front of moto's server forwards the first Create* request (moto creates the job) and
then closes the connection without an answer. botocore's standard retry mode sends the create
again; SageMaker refuses a second job of the same name, so the step must attach to the job that
the lost call created and end with exactly one job.

moto gap, closed here: moto replaces a job of the same name silently. The real service refuses
it: CreateTrainingJob / CreateProcessingJob reference, "The name must be unique within an AWS
Region in an AWS account", error ResourceInUse ("Resource being accessed is in use"). The
``unique_job_names`` fixture makes moto refuse it the same way.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from tests.aws.helpers import BUCKETS, RecordingProxy, make_settings, put

from skinlesion.aws import AwsClients
from skinlesion.backends.base import EvaluateRequest, JobStatus, TrainRequest
from skinlesion.backends.sagemaker import SageMakerBackend

MODELS = BUCKETS["models_bucket"]
PROCESSED = BUCKETS["processed_bucket"]
RUN = "lost-response-run"


class DroppingProxy(RecordingProxy):
    """Forwards the first request whose X-Amz-Target ends with ``drop_target`` to moto, then
    closes the connection without answering (a response lost on the way back)."""

    def __init__(self, upstream: str, drop_target: str) -> None:
        super().__init__(upstream)
        self.drop_target = drop_target
        self.dropped = 0

    def _handle(self, handler: Any) -> None:
        target = handler.headers.get("X-Amz-Target", "")
        if self.dropped or not target.endswith(self.drop_target):
            super()._handle(handler)
            return
        self.dropped += 1
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length)
        self.requests.append({"target": target, "headers": dict(handler.headers), "path": ""})
        headers = {
            k: v for k, v in handler.headers.items() if k.lower() not in ("host", "content-length")
        }
        request = urllib.request.Request(
            self.upstream + handler.path, data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()  # moto created the job; its answer is lost
        except urllib.error.HTTPError as error:
            error.read()
        handler.close_connection = True
        handler.connection.close()


@pytest.fixture
def unique_job_names() -> Iterator[None]:
    """moto, in this process, refuses a second job of a name as SageMaker does (ResourceInUse)."""
    from moto.sagemaker.exceptions import ResourceInUseException
    from moto.sagemaker.models import SageMakerModelBackend

    original_training = SageMakerModelBackend.create_training_job
    original_processing = SageMakerModelBackend.create_processing_job

    def create_training_job(backend: Any, **kwargs: Any) -> Any:
        name = kwargs["training_job_name"]
        if name in backend.training_jobs:
            raise ResourceInUseException(f"Training job names must be unique: {name} exists")
        return original_training(backend, **kwargs)

    def create_processing_job(backend: Any, **kwargs: Any) -> Any:
        name = kwargs["processing_job_name"]
        if name in backend.processing_jobs:
            raise ResourceInUseException(f"Processing job names must be unique: {name} exists")
        return original_processing(backend, **kwargs)

    SageMakerModelBackend.create_training_job = create_training_job  # type: ignore[method-assign]
    SageMakerModelBackend.create_processing_job = create_processing_job  # type: ignore[method-assign]
    try:
        yield
    finally:
        SageMakerModelBackend.create_training_job = original_training  # type: ignore[method-assign]
        SageMakerModelBackend.create_processing_job = original_processing  # type: ignore[method-assign]


def _backend(proxy: RecordingProxy, boto_session: boto3.Session) -> SageMakerBackend:
    settings = make_settings(proxy.url)
    return SageMakerBackend(
        settings, AwsClients.from_settings(settings, session=boto_session), sleep=lambda _: None
    )


def test_the_fake_refuses_a_second_job_of_a_name(
    clients: AwsClients, unique_job_names: None
) -> None:
    sagemaker = clients.client("sagemaker")
    request = {
        "ProcessingJobName": "twice",
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": "ml.m5.xlarge",
                "VolumeSizeInGB": 30,
            }
        },
        "AppSpecification": {"ImageUri": "image"},
        "RoleArn": "arn:aws:iam::123456789012:role/r",
    }
    sagemaker.create_processing_job(**request)
    with pytest.raises(sagemaker.exceptions.ClientError, match="ResourceInUse"):
        sagemaker.create_processing_job(**request)


def test_a_lost_create_training_job_response_ends_with_one_job(
    endpoint: str,
    clients: AwsClients,
    boto_session: boto3.Session,
    unique_job_names: None,
) -> None:
    with DroppingProxy(endpoint, "CreateTrainingJob") as proxy:
        result = _backend(proxy, boto_session).train(
            TrainRequest(
                dataset_uri=f"s3://{PROCESSED}/runs/{RUN}/dataset",
                model_uri=f"s3://{MODELS}/runs/{RUN}/model",
                run_id=RUN,
                task_name="train",
            )
        )
    creates = [t for t in proxy.targets() if t.endswith("CreateTrainingJob")]
    assert proxy.dropped == 1 and len(creates) == 2  # botocore sent it again
    assert result.status is JobStatus.COMPLETED
    jobs = clients.client("sagemaker").list_training_jobs()["TrainingJobSummaries"]
    assert [j["TrainingJobName"] for j in jobs] == [result.job_name]
    assert not result.job_name.endswith("-a2")


def test_a_lost_create_processing_job_response_ends_with_one_job(
    endpoint: str,
    clients: AwsClients,
    boto_session: boto3.Session,
    unique_job_names: None,
) -> None:
    s3 = clients.client("s3")
    output = f"s3://{PROCESSED}/runs/{RUN}/evaluation"
    put(s3, f"{output}/metrics.json", json.dumps({"balanced_accuracy": 0.7}).encode())
    with DroppingProxy(endpoint, "CreateProcessingJob") as proxy:
        result = _backend(proxy, boto_session).evaluate(
            EvaluateRequest(
                dataset_uri=f"s3://{PROCESSED}/runs/{RUN}/dataset",
                model_uri=f"s3://{MODELS}/runs/{RUN}/model/model.tar.gz",
                output_uri=output,
                run_id=RUN,
                task_name="evaluate",
            )
        )
    creates = [t for t in proxy.targets() if t.endswith("CreateProcessingJob")]
    assert proxy.dropped == 1 and len(creates) == 2
    assert result.metrics == {"balanced_accuracy": 0.7}
    jobs = clients.client("sagemaker").list_processing_jobs()["ProcessingJobSummaries"]
    assert [j["ProcessingJobName"] for j in jobs] == [result.job_name]
