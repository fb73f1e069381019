"""Processing and training jobs through the backend, round trip against moto's server.

moto records each job and answers Describe with what it was created with, but runs nothing and
marks it Completed at once: the tests put in S3 what the job would have written (a manifest, a
metrics.json), and the runner's waiting, failures and stops are tested with a Stubber elsewhere.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from tests.aws.helpers import BUCKETS, ROLE_ARN

from skinlesion.aws import AwsClients
from skinlesion.backends.base import EvaluateRequest, JobStatus, PreprocessRequest, TrainRequest
from skinlesion.backends.sagemaker import SageMakerBackend
from skinlesion.backends.sagemaker.errors import JobOutputMissingError
from skinlesion.config import PreprocessConfig, TrainConfig
from skinlesion.settings import Settings

MODELS = BUCKETS["models_bucket"]
PROCESSED = BUCKETS["processed_bucket"]
RUN = "8d3e1f5a-run"


def put_json(s3: Any, uri: str, payload: dict[str, Any]) -> None:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(payload).encode())


def test_preprocess_passes_s3_uris_through_and_reads_the_manifest(
    backend: SageMakerBackend, clients: AwsClients
) -> None:
    s3 = clients.client("s3")
    output = f"s3://{PROCESSED}/runs/{RUN}/preprocess/dataset"
    put_json(s3, f"{output}/manifest.json", {"splits": {"train": 7, "val": 2, "test": 2}})
    before = s3.list_objects_v2(Bucket=MODELS).get("KeyCount", 0)
    result = backend.preprocess(
        PreprocessRequest(
            data_uri=f"s3://{BUCKETS['data_bucket']}/isic2019/",
            output_uri=output,
            config=PreprocessConfig(image_size=64),
            run_id=RUN,
            task_name="preprocess",
        )
    )
    assert result.status is JobStatus.COMPLETED
    assert result.output_uri == output
    assert result.details["splits"] == {"train": 7, "val": 2, "test": 2}
    assert s3.list_objects_v2(Bucket=MODELS).get("KeyCount", 0) == before  # nothing staged
    job = clients.client("sagemaker").describe_processing_job(ProcessingJobName=result.job_name)
    assert (
        job["ProcessingInputs"][0]["S3Input"]["S3Uri"] == f"s3://{BUCKETS['data_bucket']}/isic2019/"
    )
    assert job["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"] == output
    assert job["AppSpecification"]["ContainerEntrypoint"] == [
        "python",
        "-m",
        "skinlesion.jobs.preprocess",
    ]
    assert job["RoleArn"] == ROLE_ARN
    assert result.details["job_arn"] == job["ProcessingJobArn"]


def test_training_round_trip_spot_checkpoints_and_reattach(
    backend: SageMakerBackend, clients: AwsClients, settings: Settings
) -> None:
    dataset = f"s3://{PROCESSED}/runs/{RUN}/preprocess/dataset"
    model = f"s3://{MODELS}/runs/{RUN}/train/model"
    request = TrainRequest(
        dataset_uri=dataset,
        model_uri=model,
        config=TrainConfig(epochs=2),
        run_id=RUN,
        task_name="train",
    )
    result = backend.train(request)
    sagemaker = clients.client("sagemaker")
    job = sagemaker.describe_training_job(TrainingJobName=result.job_name)
    assert job["EnableManagedSpotTraining"] is True
    assert job["StoppingCondition"] == {
        "MaxRuntimeInSeconds": settings.max_runtime_seconds,
        "MaxWaitTimeInSeconds": 2 * settings.max_runtime_seconds,
    }
    assert (
        job["StoppingCondition"]["MaxWaitTimeInSeconds"]
        >= job["StoppingCondition"]["MaxRuntimeInSeconds"]
    )
    assert job["CheckpointConfig"] == {
        "S3Uri": f"s3://{MODELS}/checkpoints/{result.job_name}",
        "LocalPath": "/opt/ml/checkpoints",
    }
    assert job["HyperParameters"] == TrainConfig(epochs=2).to_hyperparameters()
    assert job["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == dataset
    assert job["OutputDataConfig"]["S3OutputPath"] == model
    assert result.output_uri == f"{model}/{result.job_name}/output/model.tar.gz"
    assert result.details["checkpoint_uri"] == job["CheckpointConfig"]["S3Uri"]
    # The same step again (a retry of the pod): the same job, not a second one.
    again = backend.train(request)
    assert again.job_name == result.job_name
    names = [j["TrainingJobName"] for j in sagemaker.list_training_jobs()["TrainingJobSummaries"]]
    assert names == [result.job_name]
    # Another run: another job.
    other = backend.train(TrainRequest(dataset_uri=dataset, model_uri=model, run_id="other-run"))
    assert other.job_name != result.job_name


def test_evaluate_returns_the_numbers_of_metrics_json(
    backend: SageMakerBackend, clients: AwsClients
) -> None:
    output = f"s3://{MODELS}/runs/{RUN}/evaluate/evaluation"
    put_json(
        clients.client("s3"),
        f"{output}/metrics.json",
        {"balanced_accuracy": 0.71, "accuracy": 0.8, "classes": ["MEL"], "per_class": {"MEL": 0.5}},
    )
    result = backend.evaluate(
        EvaluateRequest(
            dataset_uri=f"s3://{PROCESSED}/ds/",
            model_uri=f"s3://{MODELS}/runs/{RUN}/train/model",
            output_uri=output,
            run_id=RUN,
        )
    )
    assert result.metrics == {"balanced_accuracy": 0.71, "accuracy": 0.8}
    assert result.output_uri == output
    job = clients.client("sagemaker").describe_processing_job(ProcessingJobName=result.job_name)
    assert [i["InputName"] for i in job["ProcessingInputs"]] == ["dataset", "model"]


def test_a_completed_job_without_its_output_is_an_error(backend: SageMakerBackend) -> None:
    with pytest.raises(JobOutputMissingError, match=r"metrics\.json"):
        backend.evaluate(
            EvaluateRequest(
                dataset_uri=f"s3://{PROCESSED}/ds/",
                model_uri=f"s3://{MODELS}/m/",
                output_uri=f"s3://{MODELS}/e/",
            )
        )


def test_local_paths_are_staged_in_and_outputs_stay_in_s3(
    backend: SageMakerBackend, clients: AwsClients, tmp_path: Path
) -> None:
    """kfp.local hands local paths: inputs are uploaded once; the output artifact's path gets no
    data (the step writes a pointer there): the job writes under job-outputs/<job>/."""
    data = tmp_path / "isic"
    (data / "images").mkdir(parents=True)
    (data / "labels.csv").write_text(
        "image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC\nISIC_1,1,0,0,0,0,0,0,0\n"
    )
    (data / "images" / "ISIC_1.jpg").write_bytes(b"\xff\xd8\xff")
    output = tmp_path / "dataset"
    request = PreprocessRequest(data_uri=str(data), output_uri=str(output), run_id=RUN)
    name = backend.job_name_for("preprocess", "", RUN, "")[0]
    job_output = f"s3://{MODELS}/job-outputs/{name}/dataset/"
    put_json(clients.client("s3"), f"{job_output}manifest.json", {"splits": {"train": 1}})
    result = backend.preprocess(request)
    assert result.output_uri == result.remote_output_uri == job_output
    assert result.details["splits"] == {"train": 1}
    assert not output.exists()  # nothing downloaded into the artifact's folder
    keys = {o["Key"] for o in clients.client("s3").list_objects_v2(Bucket=MODELS)["Contents"]}
    assert {f"staging/{name}/data/labels.csv", f"staging/{name}/data/images/ISIC_1.jpg"} <= keys
    job = clients.client("sagemaker").describe_processing_job(ProcessingJobName=name)
    assert job["ProcessingInputs"][0]["S3Input"]["S3Uri"] == f"s3://{MODELS}/staging/{name}/data/"
    assert job["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"] == job_output
    # The step's retry (the same run and task) finds the same job and the same output.
    assert backend.preprocess(request).output_uri == job_output


def test_training_for_a_local_model_artifact_leaves_model_tar_gz_in_s3(
    backend: SageMakerBackend, clients: AwsClients, tmp_path: Path
) -> None:
    name = backend.job_name_for("train", "", RUN, "train")[0]
    archive_key = f"job-outputs/{name}/model/{name}/output/model.tar.gz"
    source = tmp_path / "model"
    source.mkdir()
    (source / "model.json").write_text("{}")
    packed = tmp_path / "model.tar.gz"
    with tarfile.open(packed, "w:gz") as tar:
        tar.add(source / "model.json", arcname="model.json")
    clients.client("s3").upload_file(str(packed), MODELS, archive_key)
    out = tmp_path / "artifact"
    result = backend.train(
        TrainRequest(
            dataset_uri=f"s3://{PROCESSED}/ds/", model_uri=str(out), run_id=RUN, task_name="train"
        )
    )
    assert result.output_uri == result.remote_output_uri == f"s3://{MODELS}/{archive_key}"
    assert not out.exists()  # model.tar.gz is not downloaded into the artifact's folder
    job = clients.client("sagemaker").describe_training_job(TrainingJobName=name)
    assert job["OutputDataConfig"]["S3OutputPath"] == f"s3://{MODELS}/job-outputs/{name}/model/"


def test_from_environment_reads_settings_when_called(
    endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(
        json.dumps({"region": {"value": "us-east-1"}, "models_bucket": {"value": "b1"}})
    )
    monkeypatch.setenv("SKINLESION_TERRAFORM_OUTPUTS", str(outputs))
    monkeypatch.setenv("SKINLESION_ENDPOINT_URL", endpoint)
    from skinlesion.backends import get_backend

    backend = get_backend("sagemaker")
    assert isinstance(backend, SageMakerBackend)
    assert backend.settings.models_bucket == "b1"
    assert backend.clients.client("sagemaker").meta.endpoint_url == endpoint
    # An artifact gets a pointer, never the data: jobs are handed its local path and write
    # under the job-outputs root, outside every artifact's URI prefix.
    assert backend.artifact_location("/tmp/x", "s3://b/x") == "/tmp/x"
    assert backend.artifact_location("/tmp/x", "/tmp/x") == "/tmp/x"
    assert backend.job_outputs_root == "s3://b1/job-outputs"
    with pytest.raises(ValueError, match="SKINLESION_SAGEMAKER_EXECUTION_ROLE_ARN"):
        backend.train(TrainRequest(dataset_uri="s3://b/d/", model_uri="s3://b/m/"))
