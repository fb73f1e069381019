"""Eviction vs cancellation: SIGTERM leaves the job running; the exit handler stops it.

A real step process (a subprocess running the SageMaker backend's evaluate against the moto
server of this test process) gets a real SIGTERM while its job runs: the job stays InProgress,
and a second invocation of the same step re-attaches to it by name (no ``-a2``). The exit
handler's ``steps.stop_run_jobs`` stops the run's InProgress jobs and no other run's.

moto gaps, closed here: moto's jobs are Completed the moment they are created, so
``jobs_stay_in_progress`` keeps them InProgress until the test finishes them (the real service
keeps a job InProgress while it runs); moto has no StopTrainingJob, so stopping a training job
is checked with botocore's Stubber (test at the end), processing jobs with moto.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import Stubber
from tests.aws.helpers import BUCKETS, make_settings, offline_client, put
from tests.aws.moto_server import ACCOUNT, REGION

from skinlesion import steps
from skinlesion.aws import AwsClients
from skinlesion.backends.base import EvaluateRequest, JobStatus
from skinlesion.backends.sagemaker import SageMakerBackend
from skinlesion.settings import Settings, env_name

PROCESSED = BUCKETS["processed_bucket"]
MODELS = BUCKETS["models_bucket"]
RUN = "5b1f0c2e-7d44-4c1e-9a51-0d6c2f3e8a10"
OUTPUT = f"s3://{PROCESSED}/pipeline-root/training/{RUN}/evaluate/evaluation"


def moto_sagemaker() -> Any:
    """The SageMaker backend of the moto server running in this process."""
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends[ACCOUNT][REGION]


@pytest.fixture
def jobs_stay_in_progress() -> Iterator[None]:
    from moto.sagemaker.models import SageMakerModelBackend

    original_processing = SageMakerModelBackend.create_processing_job
    original_training = SageMakerModelBackend.create_training_job

    def create_processing_job(backend: Any, **kwargs: Any) -> Any:
        job = original_processing(backend, **kwargs)
        job.processing_job_status = "InProgress"
        return job

    def create_training_job(backend: Any, **kwargs: Any) -> Any:
        job = original_training(backend, **kwargs)
        job.training_job_status = "InProgress"
        return job

    SageMakerModelBackend.create_processing_job = create_processing_job  # type: ignore[method-assign]
    SageMakerModelBackend.create_training_job = create_training_job  # type: ignore[method-assign]
    try:
        yield
    finally:
        SageMakerModelBackend.create_processing_job = original_processing  # type: ignore[method-assign]
        SageMakerModelBackend.create_training_job = original_training  # type: ignore[method-assign]


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as the SKINLESION_* variables a step pod gets."""
    env: dict[str, str] = {}
    for name, value in settings.as_dict().items():
        if value in ("", [], None):
            continue
        env[env_name(name)] = json.dumps(value) if isinstance(value, list) else str(value)
    return env


STEP = textwrap.dedent(
    f"""
    import logging, sys
    from skinlesion.backends.base import EvaluateRequest
    from skinlesion.backends.sagemaker import SageMakerBackend
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    SageMakerBackend.from_environment().evaluate(EvaluateRequest(
        dataset_uri="s3://{PROCESSED}/ds/", model_uri="s3://{MODELS}/model.tar.gz",
        output_uri="{OUTPUT}", run_id="artifact:{OUTPUT}", task_name="evaluate"))
    """
)


def _request() -> EvaluateRequest:
    return EvaluateRequest(
        dataset_uri=f"s3://{PROCESSED}/ds/",
        model_uri=f"s3://{MODELS}/model.tar.gz",
        output_uri=OUTPUT,
        run_id=f"artifact:{OUTPUT}",
        task_name="evaluate",
    )


def test_sigterm_leaves_the_job_running_and_the_retry_reattaches(
    settings: Settings, clients: AwsClients, jobs_stay_in_progress: None
) -> None:
    env = {**os.environ, **settings_env(settings), "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(
        [sys.executable, "-c", STEP], env=env, stderr=subprocess.PIPE, text=True
    )
    sagemaker = clients.client("sagemaker")
    try:
        deadline = time.monotonic() + 120
        jobs: list[dict[str, Any]] = []
        while not jobs and time.monotonic() < deadline and process.poll() is None:
            jobs = sagemaker.list_processing_jobs()["ProcessingJobSummaries"]
            time.sleep(0.2)
        assert jobs, "the step never created its job"
        time.sleep(0.5)  # the step is now polling the job
        process.send_signal(signal.SIGTERM)  # the node is drained
        _, stderr = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
    name = jobs[0]["ProcessingJobName"]
    assert process.returncode != 0
    assert f"left SageMaker processing job {name} running" in stderr
    job = sagemaker.describe_processing_job(ProcessingJobName=name)
    assert job["ProcessingJobStatus"] == "InProgress"  # not stopped by the eviction

    # KFP retries the step; meanwhile the job finishes.
    moto_sagemaker().processing_jobs[name].processing_job_status = "Completed"
    put(clients.client("s3"), f"{OUTPUT}/metrics.json", b'{"balanced_accuracy": 0.8}')
    result = SageMakerBackend(settings, clients, sleep=lambda _: None).evaluate(_request())
    assert result.job_name == name and not name.endswith("-a2")
    assert result.status is JobStatus.COMPLETED
    assert len(sagemaker.list_processing_jobs()["ProcessingJobSummaries"]) == 1


def _start_job(backend: SageMakerBackend, run: str, task: str) -> str:
    """Create an InProgress processing job tagged as the steps tag it (an output artifact URI)."""
    name, context = backend.job_name_for(
        "evaluate", "", f"artifact:s3://{PROCESSED}/pipeline-root/training/{run}/{task}/out", task
    )
    backend.clients.client("sagemaker").create_processing_job(
        ProcessingJobName=name,
        ProcessingResources={
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": "ml.m5.xlarge",
                "VolumeSizeInGB": 30,
            }
        },
        AppSpecification={"ImageUri": backend.settings.training_image_uri},
        RoleArn=backend.settings.sagemaker_execution_role_arn,
        Tags=context.tags(),
    )
    return name


@pytest.mark.parametrize("state", ["FAILED", "CANCELED"])
def test_the_exit_handler_stops_the_runs_running_jobs(
    settings: Settings,
    clients: AwsClients,
    jobs_stay_in_progress: None,
    monkeypatch: pytest.MonkeyPatch,
    state: str,
) -> None:
    backend = SageMakerBackend(settings, clients, sleep=lambda _: None)
    ours = _start_job(backend, RUN, "evaluate")
    other = _start_job(backend, "another-run", "evaluate")
    for key, value in settings_env(settings).items():
        monkeypatch.setenv(key, value)
    # KFP gives the run as a resource name; its last segment is the run id.
    stopped = steps.stop_run_jobs(backend="sagemaker", run_id=f"runs/{RUN}", state=state)
    sagemaker = clients.client("sagemaker")
    assert stopped == [ours]
    assert sagemaker.describe_processing_job(ProcessingJobName=ours)["ProcessingJobStatus"] == (
        "Stopped"
    )
    assert sagemaker.describe_processing_job(ProcessingJobName=other)["ProcessingJobStatus"] == (
        "InProgress"
    )


def test_a_succeeded_run_stops_nothing(
    settings: Settings, clients: AwsClients, jobs_stay_in_progress: None
) -> None:
    backend = SageMakerBackend(settings, clients, sleep=lambda _: None)
    ours = _start_job(backend, RUN, "evaluate")
    assert steps.stop_run_jobs(backend="sagemaker", run_id=RUN, state="SUCCEEDED") == []
    status = clients.client("sagemaker").describe_processing_job(ProcessingJobName=ours)
    assert status["ProcessingJobStatus"] == "InProgress"


def test_stop_jobs_stops_a_tagged_training_job() -> None:
    """Stubber: moto has no StopTrainingJob (and lists no tags on a stub's jobs)."""
    settings = make_settings()
    sagemaker = offline_client("sagemaker")

    class Clients:
        def client(self, service: str) -> Any:
            return sagemaker if service == "sagemaker" else offline_client(service)

    backend = SageMakerBackend(settings, Clients(), sleep=lambda _: None)  # type: ignore[arg-type]
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/skl-test-train-abc"
    summary = {
        "TrainingJobName": "skl-test-train-abc",
        "TrainingJobArn": arn,
        "CreationTime": "2026-01-01T00:00:00Z",
        "TrainingJobStatus": "InProgress",
    }
    listing = {"StatusEquals": "InProgress", "NameContains": "skl-test"}
    with Stubber(sagemaker) as stubber:
        stubber.add_response("list_training_jobs", {"TrainingJobSummaries": [summary]}, listing)
        stubber.add_response(
            "list_tags",
            {"Tags": [{"Key": "skinlesion:run-id", "Value": f"artifact:s3://b/p/{RUN}/train/m"}]},
            {"ResourceArn": arn},
        )
        stubber.add_response("stop_training_job", {}, {"TrainingJobName": "skl-test-train-abc"})
        stubber.add_response("list_processing_jobs", {"ProcessingJobSummaries": []}, listing)
        assert backend.stop_jobs(RUN) == ["skl-test-train-abc"]
        stubber.assert_no_pending_responses()
