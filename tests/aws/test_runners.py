"""The job runner's life cycle with botocore's Stubber on the SageMaker client.

moto gaps that make a stub necessary here: moto's jobs are Completed the moment they are created
(no InProgress, no Failed, no Stopping), and moto has no StopTrainingJob. Every stubbed request
is still checked by botocore against the service model, and the logs client is moto's.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.stub import Stubber
from tests.aws.helpers import make_settings
from tests.aws.moto_server import REGION

from skinlesion.aws import AwsClients
from skinlesion.backends.base import PreprocessRequest, TrainRequest
from skinlesion.backends.sagemaker import (
    JobAttemptsExhaustedError,
    JobFailedError,
    JobInterruptedError,
    JobStatus,
    JobStoppedError,
    JobTimeoutError,
    ProcessingJobRunner,
    RequestValidationError,
    TrainingJobRunner,
)
from skinlesion.backends.sagemaker.job_requests import (
    JobContext,
    preprocess_job_request,
    training_job_request,
)

NAME = "skl-test-train-0123456789"
ARN = f"arn:aws:sagemaker:{REGION}:123456789012:training-job/"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
# The FailureReason of a job SageMaker could not find instances for (AWS Batch user guide,
# sm_job_stuck_in_runnable_capacity: "failedReason begins with CapacityError").
SPOT_FAILURE = (
    "CapacityError: Unable to provision requested ML compute capacity. Please retry using a "
    "different ML instance type."
)


def training_description(
    name: str, status: str, secondary: str = "", **extra: Any
) -> dict[str, Any]:
    """A DescribeTrainingJob response with every required member."""
    return {
        "TrainingJobName": name,
        "TrainingJobArn": ARN + name,
        "ModelArtifacts": {"S3ModelArtifacts": f"s3://m/model/{name}/output/model.tar.gz"},
        "TrainingJobStatus": status,
        "SecondaryStatus": secondary or status,
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "ResourceConfig": {"VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "CreationTime": NOW,
        **extra,
    }


def processing_description(name: str, status: str, **extra: Any) -> dict[str, Any]:
    """A DescribeProcessingJob response with every required member."""
    return {
        "ProcessingJobName": name,
        "ProcessingJobArn": f"arn:aws:sagemaker:{REGION}:123456789012:processing-job/{name}",
        "ProcessingJobStatus": status,
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": "ml.m5.xlarge",
                "VolumeSizeInGB": 30,
            }
        },
        "AppSpecification": {"ImageUri": "image"},
        "CreationTime": NOW,
        **extra,
    }


def not_found(stubber: Stubber, operation: str, params: dict[str, str]) -> None:
    stubber.add_client_error(
        operation,
        "ValidationException",
        "Requested resource not found.",
        400,
        expected_params=params,
    )


def training_request(name: str = NAME) -> dict[str, Any]:
    return training_job_request(
        make_settings(),
        TrainRequest(dataset_uri="s3://d/ds/", model_uri="s3://m/model/"),
        job_name=name,
        dataset_uri="s3://d/ds/",
        output_path="s3://m/model/",
        checkpoint_uri=f"s3://m/checkpoints/{name}",
        context=JobContext(stage="train", run_id="run-1", task_name="train"),
    )


class FakeClock:
    """A clock that advances only when the runner sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += 60.0


@pytest.fixture
def logs(endpoint: str) -> Any:
    return AwsClients(REGION, endpoint_url=endpoint).client("logs")


def make_runner(kind: type, sagemaker: Any, logs: Any, clock: FakeClock, **kwargs: Any) -> Any:
    return kind(
        sagemaker,
        logs,
        poll_seconds=30,
        timeout_seconds=kwargs.pop("timeout_seconds", 3600),
        max_attempts=kwargs.pop("max_attempts", 3),
        sleep=kwargs.pop("sleep", clock.sleep),
        clock=clock,
        **kwargs,
    )


def test_a_new_job_is_created_and_followed_through_its_statuses(
    stubbed_sagemaker: tuple[Any, Stubber], logs: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client, stubber = stubbed_sagemaker
    request = training_request()
    not_found(stubber, "describe_training_job", {"TrainingJobName": NAME})
    stubber.add_response("create_training_job", {"TrainingJobArn": ARN + NAME}, request)
    for status, secondary in [
        ("InProgress", "Starting"),
        ("InProgress", "Downloading"),
        ("InProgress", "Training"),
        ("InProgress", "Training"),
        ("InProgress", "Uploading"),
    ]:
        stubber.add_response(
            "describe_training_job",
            training_description(NAME, status, secondary),
            {"TrainingJobName": NAME},
        )
    stubber.add_response(
        "describe_training_job",
        training_description(
            NAME, "Completed", BillableTimeInSeconds=120, TrainingTimeInSeconds=400
        ),
        {"TrainingJobName": NAME},
    )
    clock = FakeClock()
    with caplog.at_level(logging.INFO):
        state = make_runner(TrainingJobRunner, client, logs, clock).run(request)
    assert state.status is JobStatus.COMPLETED and state.name == NAME
    assert state.description["BillableTimeInSeconds"] == 120
    assert clock.sleeps == [30] * 5
    transitions = [
        r.getMessage() for r in caplog.records if "SageMaker training job" in r.getMessage()
    ]
    assert transitions == [
        f"Created SageMaker training job {NAME}",
        f"SageMaker training job {NAME}: InProgress / Starting",
        f"SageMaker training job {NAME}: InProgress / Downloading",
        f"SageMaker training job {NAME}: InProgress / Training",
        f"SageMaker training job {NAME}: InProgress / Uploading",
        f"SageMaker training job {NAME}: Completed / Completed",
    ]


def test_a_failure_raises_with_the_failure_reason_verbatim(
    stubbed_sagemaker: tuple[Any, Stubber], logs: Any
) -> None:
    client, stubber = stubbed_sagemaker
    name = "skl-test-preprocess-abc"
    reason = "AlgorithmError: DataValidationError: 41% of rows unusable (limit 5%): see validation_report.json"
    not_found(stubber, "describe_processing_job", {"ProcessingJobName": name})
    stubber.add_response("create_processing_job", {"ProcessingJobArn": "arn:aws:sagemaker:x"}, None)
    stubber.add_response(
        "describe_processing_job",
        processing_description(name, "InProgress"),
        {"ProcessingJobName": name},
    )
    stubber.add_response(
        "describe_processing_job",
        processing_description(name, "Failed", FailureReason=reason, ExitMessage="exit code 1"),
        {"ProcessingJobName": name},
    )
    request = preprocess_job_request(
        make_settings(),
        PreprocessRequest(data_uri="s3://raw/x/", output_uri="s3://p/ds/"),
        job_name=name,
        data_uri="s3://raw/x/",
        output_uri="s3://p/ds/",
        context=JobContext(stage="preprocess"),
    )
    with pytest.raises(JobFailedError) as caught:
        make_runner(ProcessingJobRunner, client, logs, FakeClock()).run(request)
    assert caught.value.failure_reason == reason
    assert str(caught.value) == (
        f"SageMaker processing job {name} failed: {reason}\nExitMessage: exit code 1"
    )


def test_a_retried_step_reattaches_to_its_running_job(
    stubbed_sagemaker: tuple[Any, Stubber], logs: Any
) -> None:
    """No CreateTrainingJob: the job of the first try is still running and is followed."""
    client, stubber = stubbed_sagemaker
    stubber.add_response(
        "describe_training_job",
        training_description(NAME, "InProgress", "Training"),
        {"TrainingJobName": NAME},
    )
    stubber.add_response(
        "describe_training_job",
        training_description(NAME, "InProgress", "Training"),
        {"TrainingJobName": NAME},
    )
    stubber.add_response(
        "describe_training_job", training_description(NAME, "Completed"), {"TrainingJobName": NAME}
    )
    state = make_runner(TrainingJobRunner, client, logs, FakeClock()).run(training_request())
    assert state.status is JobStatus.COMPLETED


def test_a_retried_step_reuses_a_completed_job_without_waiting(
    stubbed_sagemaker: tuple[Any, Stubber], logs: Any
) -> None:
    client, stubber = stubbed_sagemaker
    stubber.add_response(
        "describe_training_job", training_description(NAME, "Completed"), {"TrainingJobName": NAME}
    )
    clock = FakeClock()
    state = make_runner(TrainingJobRunner, client, logs, clock).run(training_request())
    assert state.status is JobStatus.COMPLETED and clock.sleeps == []


def test_after_a_failed_job_the_next_attempt_gets_the_next_name(
    stubbed_sagemaker: tuple[Any, Stubber], logs: Any
) -> None:
    """The -a2 job reuses the checkpoint prefix of the first: a spot job resumes, not restarts."""
    client, stubber = stubbed_sagemaker
    second = f"{NAME}-a2"
    request = training_request()
    stubber.add_response(
        "describe_training_job",
        training_description(NAME, "Failed", FailureReason=SPOT_FAILURE),
        {"TrainingJobName": NAME},
    )
    not_found(stubber, "describe_training_job", {"TrainingJobName": second})
    stubber.add_response(
        "create_training_job",
        {"TrainingJobArn": ARN + second},
        {**request, "TrainingJobName": second},
    )
    stubber.add_response(
        "describe_training_job",
        training_description(second, "Completed"),
        {"TrainingJobName": second},
    )
    state = make_runner(TrainingJobRunner, client, logs, FakeClock()).run(request)
    assert state.name == second
    assert request["CheckpointConfig"]["S3Uri"].endswith(NAME)


def test_a_stopping_job_is_waited_for_before_the_next_attempt(
    stubbed_sagemaker: tuple[Any, Stubber], logs: Any
) -> None:
    client, stubber = stubbed_sagemaker
    second = f"{NAME}-a2"
    stubber.add_response(
        "describe_training_job", training_description(NAME, "Stopping"), {"TrainingJobName": NAME}
    )
    stubber.add_response(
        "describe_training_job", training_description(NAME, "Stopped"), {"TrainingJobName": NAME}
    )
    not_found(stubber, "describe_training_job", {"TrainingJobName": second})
    stubber.add_response("create_training_job", {"TrainingJobArn": ARN + second}, None)
    stubber.add_response(
        "describe_training_job",
        training_description(second, "Completed"),
        {"TrainingJobName": second},
    )
    assert (
        make_runner(TrainingJobRunner, client, logs, FakeClock()).run(training_request()).name
        == second
    )


def test_attempts_run_out(stubbed_sagemaker: tuple[Any, Stubber], logs: Any) -> None:
    client, stubber = stubbed_sagemaker
    for name in (NAME, f"{NAME}-a2"):
        stubber.add_response(
            "describe_training_job",
            training_description(name, "Failed", FailureReason="InternalServerError: try again"),
            {"TrainingJobName": name},
        )
    with pytest.raises(JobAttemptsExhaustedError, match="SKINLESION_MAX_JOB_ATTEMPTS"):
        make_runner(TrainingJobRunner, client, logs, FakeClock(), max_attempts=2).run(
            training_request()
        )


def test_sigterm_leaves_the_job_running_and_restores_the_handler(
    stubbed_sagemaker: tuple[Any, Stubber], logs: Any
) -> None:
    """A drained node sends the step's pod the same SIGTERM as a cancelled run: the job must
    keep running (no StopTrainingJob is queued: the Stubber would refuse one)."""
    client, stubber = stubbed_sagemaker
    stubber.add_response(
        "describe_training_job",
        training_description(NAME, "InProgress", "Training"),
        {"TrainingJobName": NAME},
    )
    stubber.add_response(
        "describe_training_job",
        training_description(NAME, "InProgress", "Training"),
        {"TrainingJobName": NAME},
    )
    before = signal.getsignal(signal.SIGTERM)

    def sleep_then_evicted(seconds: float) -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    runner = make_runner(TrainingJobRunner, client, logs, FakeClock(), sleep=sleep_then_evicted)
    with pytest.raises(
        JobInterruptedError, match=f"SIGTERM received: left SageMaker training job {NAME} running"
    ):
        runner.run(training_request())
    assert signal.getsignal(signal.SIGTERM) == before


@pytest.mark.parametrize(
    "reason",
    [
        "AlgorithmError: ValueError: image_size must be >= 32, got 8",
        "ClientError: Data download failed: access denied to s3://d/ds/",
    ],
)
def test_a_failure_of_the_jobs_own_making_is_not_retried(
    stubbed_sagemaker: tuple[Any, Stubber], logs: Any, reason: str
) -> None:
    """The job fails: the step raises at once, not retryable, and creates no -a2 job."""
    client, stubber = stubbed_sagemaker
    request = training_request()
    not_found(stubber, "describe_training_job", {"TrainingJobName": NAME})
    stubber.add_response("create_training_job", {"TrainingJobArn": ARN + NAME}, request)
    stubber.add_response(
        "describe_training_job",
        training_description(NAME, "Failed", FailureReason=reason),
        {"TrainingJobName": NAME},
    )
    with pytest.raises(JobFailedError) as caught:
        make_runner(TrainingJobRunner, client, logs, FakeClock()).run(request)
    assert caught.value.retryable is False and caught.value.failure_reason == reason


@pytest.mark.parametrize(
    ("reason", "retryable"),
    [
        ("AlgorithmError: exit code 1", False),
        ("ClientError: ValidationException: bad channel", False),
        (SPOT_FAILURE, True),
        ("InternalServerError: We encountered an internal error.", True),
        ("ThrottlingException: Rate exceeded", True),
    ],
)
def test_a_retried_step_that_finds_its_job_failed_re_raises_or_retries(
    stubbed_sagemaker: tuple[Any, Stubber], logs: Any, reason: str, retryable: bool
) -> None:
    """KFP retried the pod; the job of the first try is Failed. Its own failure is raised
    again without a new (paid) job; a platform failure starts the next attempt."""
    client, stubber = stubbed_sagemaker
    request = training_request()
    second = f"{NAME}-a2"
    stubber.add_response(
        "describe_training_job",
        training_description(NAME, "Failed", FailureReason=reason),
        {"TrainingJobName": NAME},
    )
    if retryable:
        not_found(stubber, "describe_training_job", {"TrainingJobName": second})
        stubber.add_response(
            "create_training_job",
            {"TrainingJobArn": ARN + second},
            {**request, "TrainingJobName": second},
        )
        stubber.add_response(
            "describe_training_job",
            training_description(second, "Completed"),
            {"TrainingJobName": second},
        )
        assert make_runner(TrainingJobRunner, client, logs, FakeClock()).run(request).name == second
        return
    with pytest.raises(JobFailedError) as caught:
        make_runner(TrainingJobRunner, client, logs, FakeClock()).run(request)
    assert caught.value.retryable is False
    assert caught.value.failure_reason == reason and caught.value.job_name == NAME


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("ResourceInUse", f"Training job {NAME} already exists"),
        ("ValidationException", f"Job {NAME} already exists in this account"),
    ],
)
def test_a_create_that_says_the_job_exists_attaches_to_it(
    stubbed_sagemaker: tuple[Any, Stubber], logs: Any, code: str, message: str
) -> None:
    """Stubber (the error code shapes); the lost-response path over real HTTP is in
    test_create_or_attach.py."""
    client, stubber = stubbed_sagemaker
    request = training_request()
    not_found(stubber, "describe_training_job", {"TrainingJobName": NAME})
    stubber.add_client_error("create_training_job", code, message, 400, expected_params=request)
    stubber.add_response(
        "describe_training_job",
        training_description(NAME, "InProgress", "Training"),
        {"TrainingJobName": NAME},
    )
    stubber.add_response(
        "describe_training_job", training_description(NAME, "Completed"), {"TrainingJobName": NAME}
    )
    state = make_runner(TrainingJobRunner, client, logs, FakeClock()).run(request)
    assert state.name == NAME and state.status is JobStatus.COMPLETED


def test_the_wall_clock_timeout_stops_the_job(
    stubbed_sagemaker: tuple[Any, Stubber], logs: Any
) -> None:
    client, stubber = stubbed_sagemaker
    # The re-attach probe finds the job running; then it never ends (the clock runs 60 s a poll).
    for _ in range(4):
        stubber.add_response(
            "describe_training_job",
            training_description(NAME, "InProgress", "Training"),
            {"TrainingJobName": NAME},
        )
    stubber.add_response("stop_training_job", {}, {"TrainingJobName": NAME})
    clock = FakeClock()
    with pytest.raises(JobTimeoutError, match="did not finish within 100 s"):
        make_runner(TrainingJobRunner, client, logs, clock, timeout_seconds=100).run(
            training_request()
        )
    assert clock.sleeps == [30, 30]


def test_a_stopped_job_raises(stubbed_sagemaker: tuple[Any, Stubber], logs: Any) -> None:
    client, stubber = stubbed_sagemaker
    stubber.add_response(
        "describe_training_job", training_description(NAME, "InProgress"), {"TrainingJobName": NAME}
    )
    stubber.add_response(
        "describe_training_job",
        training_description(NAME, "Stopped", "MaxWaitTimeExceeded"),
        {"TrainingJobName": NAME},
    )
    with pytest.raises(JobStoppedError, match=r"was stopped \(MaxWaitTimeExceeded\)"):
        make_runner(TrainingJobRunner, client, logs, FakeClock()).run(training_request())


def test_an_invalid_request_never_reaches_the_service(
    stubbed_sagemaker: tuple[Any, Stubber], logs: Any
) -> None:
    client, _ = stubbed_sagemaker
    request = training_request()
    request["ResourceConfig"]["InstanceType"] = "ml.nonexistent.xlarge"
    with pytest.raises(RequestValidationError, match="InstanceType"):
        make_runner(TrainingJobRunner, client, logs, FakeClock()).run(request)


def test_job_logs_are_streamed_while_the_job_runs(
    stubbed_sagemaker: tuple[Any, Stubber], logs: Any
) -> None:
    """moto has the logs API but SageMaker never writes to it there; the test writes the lines
    a training container would, between two polls, and sees each once, during the run."""
    client, stubber = stubbed_sagemaker
    group = "/aws/sagemaker/TrainingJobs"
    stream = f"{NAME}/algo-1-1700000000"
    stubber.add_response(
        "describe_training_job",
        training_description(NAME, "InProgress", "Training"),
        {"TrainingJobName": NAME},
    )
    for _ in range(3):
        stubber.add_response(
            "describe_training_job",
            training_description(NAME, "InProgress", "Training"),
            {"TrainingJobName": NAME},
        )
    stubber.add_response(
        "describe_training_job", training_description(NAME, "Completed"), {"TrainingJobName": NAME}
    )
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=stream)
    seen: list[tuple[int, str]] = []
    polls = {"count": 0}

    def sleep(seconds: float) -> None:
        polls["count"] += 1
        batch = [f"epoch={polls['count']} train_loss=0.{polls['count']}", f"line {polls['count']}b"]
        logs.put_log_events(
            logGroupName=group,
            logStreamName=stream,
            logEvents=[
                {"timestamp": int(time.time() * 1000) + i, "message": m}
                for i, m in enumerate(batch)
            ],
        )

    runner = make_runner(
        TrainingJobRunner,
        client,
        logs,
        FakeClock(),
        sleep=sleep,
        log_sink=lambda s, m: seen.append((polls["count"], m)),
        log_page_size=1,
    )
    runner.run(training_request())
    assert seen == [
        (1, "epoch=1 train_loss=0.1"),
        (1, "line 1b"),
        (2, "epoch=2 train_loss=0.2"),
        (2, "line 2b"),
        (3, "epoch=3 train_loss=0.3"),
        (3, "line 3b"),
    ]


def test_a_processing_job_is_stopped_on_timeout_too(
    stubbed_sagemaker: tuple[Any, Stubber], logs: Any
) -> None:
    """moto's processing jobs complete at once, so the stop path is stubbed."""
    client, stubber = stubbed_sagemaker
    name = "skl-test-evaluate-abc"
    for _ in range(3):
        stubber.add_response(
            "describe_processing_job",
            processing_description(name, "InProgress"),
            {"ProcessingJobName": name},
        )
    stubber.add_response("stop_processing_job", {}, {"ProcessingJobName": name})
    request = preprocess_job_request(
        make_settings(),
        PreprocessRequest(data_uri="s3://raw/x/", output_uri="s3://p/ds/"),
        job_name=name,
        data_uri="s3://raw/x/",
        output_uri="s3://p/ds/",
        context=JobContext(stage="evaluate"),
    )
    with pytest.raises(JobTimeoutError, match=f"SageMaker processing job {name} did not finish"):
        make_runner(ProcessingJobRunner, client, logs, FakeClock(), timeout_seconds=60).run(request)
