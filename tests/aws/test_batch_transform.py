"""Batch scoring on the SageMaker backend: CreateModel from the package, CreateTransformJob, the
.out answers turned into predictions.jsonl.

moto's server implements CreateTransformJob and DescribeTransformJob (moto/sagemaker/responses.py:
create_transform_job, describe_transform_job): it records the job, answers Describe with what it
was created with and marks it Completed at once, running nothing. So the test puts in S3 what the
inference container would have answered (``<output>/<image>.out``), as test_jobs_moto.py does for
the other jobs. The request itself is checked against SageMaker's service model
(validation.request_problems: botocore's rules plus enums, patterns and maximums).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.aws.helpers import BUCKETS, make_settings, offline_client, registered

from skinlesion.aws import AwsClients
from skinlesion.backends.base import BatchScoreRequest, JobStatus
from skinlesion.backends.sagemaker import SageMakerBackend
from skinlesion.backends.sagemaker.job_requests import JobContext, transform_job_request
from skinlesion.backends.sagemaker.validation import request_problems
from skinlesion.batch import BatchInputError

DATA = BUCKETS["data_bucket"]
MODELS = BUCKETS["models_bucket"]
IMAGES = ("ISIC_0024306.jpg", "sub/ISIC_0024307.jpeg")


def _answer(top: str) -> bytes:
    probabilities = {"MEL": 0.1, "NV": 0.7, "BCC": 0.2}
    prediction = {"probabilities": probabilities, "top_class": top, "top_probability": 0.7}
    return json.dumps({"predictions": [prediction], "model_version": "x"}).encode()


def test_batch_score_runs_a_transform_job_and_writes_one_line_per_image(
    backend: SageMakerBackend, clients: AwsClients
) -> None:
    s3 = clients.client("s3")
    version = registered(backend, clients, "run-1", 0.70)
    for name in IMAGES:
        s3.put_object(Bucket=DATA, Key=f"batch/2026-12/{name}", Body=b"\xff\xd8\xff jpeg")
    output = f"s3://{MODELS}/runs/b1/batch-score/predictions"
    for name in IMAGES:  # what the container answers, where Batch Transform puts it
        key = f"runs/b1/batch-score/predictions/transform/{name}.out"
        s3.put_object(Bucket=MODELS, Key=key, Body=_answer("NV"))

    result = backend.batch_score(
        BatchScoreRequest(
            model_version_arn=version.arn,
            images_uri=f"s3://{DATA}/batch/2026-12/",
            output_uri=output,
            instance_type="ml.m5.xlarge",
            run_id="b1",
            task_name="batch-score",
        )
    )
    assert result.status is JobStatus.COMPLETED and result.details["images"] == 2
    sagemaker = clients.client("sagemaker")
    model = sagemaker.describe_model(ModelName=result.details["model"])
    assert model["PrimaryContainer"]["ModelPackageName"] == version.arn
    job = sagemaker.describe_transform_job(TransformJobName=result.job_name)
    assert job["ModelName"] == result.details["model"]
    assert job["TransformInput"]["ContentType"] == "image/jpeg"
    assert job["TransformInput"]["SplitType"] == "None"
    assert job["TransformOutput"]["S3OutputPath"] == f"{output}/transform/"
    assert job["TransformResources"]["InstanceType"] == "ml.m5.xlarge"
    body = s3.get_object(Bucket=MODELS, Key="runs/b1/batch-score/predictions/predictions.jsonl")
    lines = [json.loads(line) for line in body["Body"].read().decode().splitlines()]
    assert [line["image"] for line in lines] == sorted(IMAGES)
    assert lines[0] == {
        "image": "ISIC_0024306.jpg",
        "probabilities": {"MEL": 0.1, "NV": 0.7, "BCC": 0.2},
        "predicted_class": "NV",
        "model_version": version.arn,
    }


def test_a_non_jpeg_under_the_prefix_is_refused_before_any_job(
    backend: SageMakerBackend, clients: AwsClients
) -> None:
    s3 = clients.client("s3")
    version = registered(backend, clients, "run-1", 0.70)
    s3.put_object(Bucket=DATA, Key="batch/x/ISIC_1.jpg", Body=b"j")
    s3.put_object(Bucket=DATA, Key="batch/x/labels.csv", Body=b"c")
    with pytest.raises(BatchInputError, match=r"labels.csv.*accepts only .jpg, .jpeg"):
        backend.batch_score(
            BatchScoreRequest(version.arn, f"s3://{DATA}/batch/x/", f"s3://{MODELS}/out")
        )
    assert clients.client("sagemaker").list_transform_jobs()["TransformJobSummaries"] == []


@pytest.fixture(scope="module")
def sagemaker_model() -> Any:
    return offline_client("sagemaker").meta.service_model


def _request(**overrides: Any) -> dict[str, Any]:
    request = BatchScoreRequest("arn:x", "s3://d/i/", "s3://m/o/", **overrides)
    return transform_job_request(
        make_settings(),
        request,
        job_name="skl-test-batch-0123456789",
        model_name="skl-test-batch-v1-0a1b2c3d",
        images_uri="s3://d/i/",
        output_uri="s3://m/o/transform/",
        context=JobContext(stage="batch", run_id="r", task_name="batch-score"),
    )


def test_the_transform_request_is_valid_for_the_service(sagemaker_model: Any) -> None:
    assert request_problems(sagemaker_model, "CreateTransformJob", _request()) == []


def test_an_instance_type_transform_jobs_do_not_take_is_refused(sagemaker_model: Any) -> None:
    # TransformInstanceType is an enum in the service model: g4dn.xlarge is one, t3.micro is not.
    problems = request_problems(
        sagemaker_model, "CreateTransformJob", _request(instance_type="ml.t3.micro")
    )
    assert any("TransformResources.InstanceType" in p and "ml.t3.micro" in p for p in problems)
    problems = request_problems(sagemaker_model, "CreateTransformJob", _request(instance_count=0))
    assert any("InstanceCount" in p for p in problems)
