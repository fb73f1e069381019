"""Every stage on the SageMaker backend against moto, with the jobs really run.

moto simulates job execution only in that it records jobs; here ``JobSimulator`` runs each
created job's module as a subprocess with SageMaker's container layout (inputs from moto's S3,
lines into moto's CloudWatch Logs, outputs back to S3), so the backend polls real InProgress
jobs, streams their real logs, and hands real outputs from stage to stage.

The requests are made as the pipeline steps make them: each output is the step's artifact folder
(which receives only a pointer), each input the S3 URI the previous job wrote to (its handoff
record), so the data stays in S3 under job-outputs/ and nothing reaches the artifact folders.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from tests.aws.helpers import BUCKETS
from tests.aws.job_simulator import JobSimulator

from skinlesion.aws import AwsClients
from skinlesion.backends.base import (
    ApprovalStatus,
    DeployRequest,
    EvaluateRequest,
    PreprocessRequest,
    RegisterRequest,
    TrainRequest,
)
from skinlesion.backends.sagemaker import JobFailedError, SageMakerBackend
from skinlesion.backends.sagemaker.s3 import S3DataPlane, S3Uri
from skinlesion.config import PreprocessConfig, TrainConfig
from skinlesion.settings import Settings

RUN = "3c9a7e52-simulated"
ROOT = f"s3://{BUCKETS['models_bucket']}/pipeline-root/{RUN}"


@pytest.fixture
def simulated(backend: SageMakerBackend, endpoint: str, tmp_path: Path) -> Any:
    with JobSimulator(endpoint, tmp_path / "jobs").active() as simulator:
        yield simulator


@pytest.fixture
def fast_backend(settings: Settings, clients: AwsClients) -> SageMakerBackend:
    """Real sleeps between polls, but short ones."""
    from dataclasses import replace

    return SageMakerBackend(replace(settings, poll_seconds=0.2), clients)


@pytest.mark.slow
def test_preprocess_train_evaluate_register_deploy(
    fast_backend: SageMakerBackend,
    clients: AwsClients,
    simulated: JobSimulator,
    sample_data_dir: Path,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    data = S3Uri.parse(f"s3://{BUCKETS['data_bucket']}/isic-sample")
    S3DataPlane(clients.client("s3"), "s3://unused/").upload(sample_data_dir, data)
    backend = fast_backend
    artifacts = tmp_path / "artifacts"  # the steps' artifact folders, as kfp.local hands them
    with caplog.at_level(logging.INFO):
        dataset = backend.preprocess(
            PreprocessRequest(
                data_uri=str(data),
                output_uri=str(artifacts / "dataset"),
                config=PreprocessConfig(image_size=48, workers=1),
                run_id=RUN,
                task_name="preprocess",
            )
        )
        trained = backend.train(
            TrainRequest(
                dataset_uri=dataset.output_uri,
                model_uri=str(artifacts / "model"),
                config=TrainConfig(epochs=1, image_size=48, batch_size=32, pretrained="none"),
                run_id=RUN,
                task_name="train",
            )
        )
        evaluated = backend.evaluate(
            EvaluateRequest(
                dataset_uri=dataset.output_uri,
                model_uri=trained.output_uri,  # model.tar.gz itself, as the train step hands it
                output_uri=str(artifacts / "evaluation"),
                run_id=RUN,
                task_name="evaluate",
            )
        )
    assert simulated.started == [dataset.job_name, trained.job_name, evaluated.job_name]
    assert sum(split["count"] for split in dataset.details["splits"].values()) == 8 * 24
    outputs = f"s3://{BUCKETS['models_bucket']}/job-outputs"
    assert dataset.output_uri == f"{outputs}/{dataset.job_name}/dataset/"
    assert trained.output_uri == (
        f"{outputs}/{trained.job_name}/model/{trained.job_name}/output/model.tar.gz"
    )
    assert evaluated.output_uri == f"{outputs}/{evaluated.job_name}/evaluation/"
    assert not artifacts.exists()  # no job output was downloaded to an artifact folder
    assert "validation:balanced_accuracy" in trained.metrics
    assert 0.0 <= evaluated.metrics["balanced_accuracy"] <= 1.0
    # The training job's own epoch line reached the step's log through CloudWatch.
    job_lines = [r.getMessage() for r in caplog.records if r.name == "skinlesion.sagemaker.job"]
    assert any("val_balanced_accuracy=" in line for line in job_lines)
    # Checkpoints were synced to the shared prefix for a resume.
    checkpoints = S3DataPlane(clients.client("s3"), "s3://unused/").list_keys(
        trained.details["checkpoint_uri"]
    )
    assert checkpoints

    version = backend.register(
        RegisterRequest(
            model_uri=trained.output_uri,
            evaluation_uri=evaluated.output_uri,
            model_group="skinlesion-simulated",
            metrics=evaluated.metrics,
            data_uri=str(data),
            architecture="efficientnet_lite0",
            run_id=RUN,
        )
    )
    assert version.approval_status is ApprovalStatus.APPROVED
    assert version.model_data_uri == trained.output_uri
    endpoint = backend.deploy(
        DeployRequest(model_version_arn=version.arn, endpoint_name="skinlesion-simulated")
    )
    assert endpoint.status == "InService"
    backend.delete_endpoint("skinlesion-simulated")


@pytest.mark.slow
def test_a_failing_job_surfaces_its_own_reason(
    fast_backend: SageMakerBackend, clients: AwsClients, simulated: JobSimulator, tmp_path: Path
) -> None:
    empty = S3Uri.parse(f"s3://{BUCKETS['data_bucket']}/empty")
    clients.client("s3").put_object(
        Bucket=empty.bucket, Key=f"{empty.key}/README.txt", Body=b"no labels here"
    )
    with pytest.raises(JobFailedError) as caught:
        fast_backend.preprocess(
            PreprocessRequest(data_uri=str(empty), output_uri=f"{ROOT}/bad/dataset", run_id=RUN)
        )
    assert caught.value.failure_reason.startswith("AlgorithmError: exit code 1")
    assert "labels" in caught.value.failure_reason.lower()
    job = clients.client("sagemaker").describe_processing_job(
        ProcessingJobName=caught.value.job_name
    )
    assert job["FailureReason"] == caught.value.failure_reason
    assert json.dumps(job, default=str)  # the stored job stays describable
