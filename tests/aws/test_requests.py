"""The request dicts the jobs are created with, asserted whole, and checked against the service
model (botocore's rules plus enum, pattern and maximum rules) by the validator."""

from __future__ import annotations

import re
from typing import Any

import pytest
from tests.aws.helpers import REGISTRY, ROLE_ARN, make_settings, offline_client

from skinlesion.backends.base import EvaluateRequest, PreprocessRequest, TrainRequest
from skinlesion.backends.sagemaker.errors import RequestValidationError
from skinlesion.backends.sagemaker.job_requests import (
    JobContext,
    evaluate_job_request,
    preprocess_job_request,
    training_job_request,
)
from skinlesion.backends.sagemaker.validation import request_problems, validate_request
from skinlesion.config import PreprocessConfig, TrainConfig
from skinlesion.training import METRIC_DEFINITIONS

KMS = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
TRAINING_IMAGE = f"{REGISTRY}/skinlesion-training:0.1.0"
CONTEXT = JobContext(stage="train", run_id="5f0c7a1e-run", task_name="train")
TAGS = [
    {"Key": "skinlesion:stage", "Value": "train"},
    {"Key": "skinlesion:run-id", "Value": "5f0c7a1e-run"},
    {"Key": "skinlesion:task", "Value": "train"},
    {"Key": "skinlesion:prefix", "Value": "skl-test"},  # the budget filters cost by it
]


@pytest.fixture(scope="module")
def sagemaker_model() -> Any:
    return offline_client("sagemaker").meta.service_model


def test_training_request_with_spot_checkpoints_kms_and_vpc(sagemaker_model: Any) -> None:
    settings = make_settings(
        kms_key_arn=KMS,
        subnet_ids=("subnet-0a1", "subnet-0b2"),
        security_group_ids=("sg-0c3",),
        network_isolation=True,
        inter_container_encryption=True,
        max_runtime_seconds=3600,
        max_wait_seconds=7200,
    )
    config = TrainConfig(epochs=3, architecture="mobilenet_v2", extra={"note": "x"})
    request = training_job_request(
        settings,
        TrainRequest(dataset_uri="s3://d/ds/", model_uri="s3://m/model/", config=config),
        job_name="skl-test-train-0123456789",
        dataset_uri="s3://d/ds/",
        output_path="s3://m/model/",
        checkpoint_uri="s3://m/checkpoints/skl-test-train-0123456789",
        context=CONTEXT,
    )
    assert request == {
        "TrainingJobName": "skl-test-train-0123456789",
        "AlgorithmSpecification": {
            "TrainingImage": TRAINING_IMAGE,
            "TrainingInputMode": "File",
            # The image's launcher under tini: torchrun across hosts when there are several.
            "ContainerEntrypoint": ["tini", "--", "train"],
            "MetricDefinitions": METRIC_DEFINITIONS,
            "EnableSageMakerMetricsTimeSeries": True,
        },
        "RoleArn": ROLE_ARN,
        "HyperParameters": config.to_hyperparameters(),
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": "s3://d/ds/",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "InputMode": "File",
            }
        ],
        "OutputDataConfig": {"S3OutputPath": "s3://m/model/", "KmsKeyId": KMS},
        "ResourceConfig": {
            "InstanceType": "ml.g4dn.xlarge",
            "InstanceCount": 1,
            "VolumeSizeInGB": 30,
            # No VolumeKmsKeyId: ml.g4dn has NVMe instance storage, on which SageMaker refuses a
            # volume key (instance_storage.py cites the rule); the output keeps the key.
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200},
        "EnableNetworkIsolation": True,
        "EnableInterContainerTrafficEncryption": True,
        "EnableManagedSpotTraining": True,
        "CheckpointConfig": {
            "S3Uri": "s3://m/checkpoints/skl-test-train-0123456789",
            "LocalPath": "/opt/ml/checkpoints",
        },
        "Environment": {"PYTHONUNBUFFERED": "1", "SKINLESION_LOG_LEVEL": "INFO"},
        "VpcConfig": {"SecurityGroupIds": ["sg-0c3"], "Subnets": ["subnet-0a1", "subnet-0b2"]},
        "Tags": TAGS,
    }
    assert all(isinstance(v, str) for v in request["HyperParameters"].values())
    assert request["HyperParameters"]["epochs"] == "3"
    assert request["HyperParameters"]["note"] == "x"
    assert request_problems(sagemaker_model, "CreateTrainingJob", request) == []


def test_training_request_on_demand_has_no_max_wait(sagemaker_model: Any) -> None:
    settings = make_settings(spot_training=False)
    request = training_job_request(
        settings,
        TrainRequest(dataset_uri="s3://d/ds/", model_uri="s3://m/model/"),
        job_name="j",
        dataset_uri="s3://d/ds/",
        output_path="s3://m/model/",
        checkpoint_uri="s3://m/c/j",
        context=JobContext(stage="train"),
    )
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": settings.max_runtime_seconds}
    assert request["EnableManagedSpotTraining"] is False
    assert request["OutputDataConfig"] == {"S3OutputPath": "s3://m/model/"}
    assert "VpcConfig" not in request
    assert request["Tags"] == [
        {"Key": "skinlesion:stage", "Value": "train"},
        {"Key": "skinlesion:prefix", "Value": "skl-test"},
    ]
    assert request_problems(sagemaker_model, "CreateTrainingJob", request) == []


def test_preprocess_request_passes_every_setting_as_the_jobs_arguments(
    sagemaker_model: Any,
) -> None:
    settings = make_settings(kms_key_arn=KMS)
    config = PreprocessConfig(image_size=128, seed=7, workers=2)
    request = preprocess_job_request(
        settings,
        PreprocessRequest(
            data_uri="s3://raw/isic2019/",
            output_uri="s3://p/ds/",
            config=config,
            labels="subsets/mini.csv",
        ),
        job_name="skl-test-preprocess-abc",
        data_uri="s3://raw/isic2019/",
        output_uri="s3://p/ds/",
        context=JobContext(stage="preprocess", run_id="r1", task_name="preprocess"),
    )
    arguments = [
        "--input", "/opt/ml/processing/input/data",
        "--output", "/opt/ml/processing/output/dataset",
        "--labels", "subsets/mini.csv",
        "--source-uri", "s3://raw/isic2019/",
        "--image-size", "128",
        "--val-fraction", "0.15",
        "--test-fraction", "0.15",
        "--seed", "7",
        "--max-invalid-fraction", "0.05",
        "--workers", "2",
    ]  # fmt: skip
    assert request == {
        "ProcessingJobName": "skl-test-preprocess-abc",
        "ProcessingInputs": [
            {
                "InputName": "data",
                "S3Input": {
                    "S3Uri": "s3://raw/isic2019/",
                    "LocalPath": "/opt/ml/processing/input/data",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                    "S3DataDistributionType": "FullyReplicated",
                },
            }
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "dataset",
                    "S3Output": {
                        "S3Uri": "s3://p/ds/",
                        "LocalPath": "/opt/ml/processing/output/dataset",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ],
            "KmsKeyId": KMS,
        },
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": "ml.m5.xlarge",
                "VolumeSizeInGB": 30,
                "VolumeKmsKeyId": KMS,
            }
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": settings.max_runtime_seconds},
        "AppSpecification": {
            "ImageUri": TRAINING_IMAGE,
            "ContainerEntrypoint": ["python", "-m", "skinlesion.jobs.preprocess"],
            "ContainerArguments": arguments,
        },
        "Environment": {"PYTHONUNBUFFERED": "1", "SKINLESION_LOG_LEVEL": "INFO"},
        "NetworkConfig": {
            "EnableInterContainerTrafficEncryption": False,
            "EnableNetworkIsolation": False,
        },
        "RoleArn": ROLE_ARN,
        "Tags": [
            {"Key": "skinlesion:stage", "Value": "preprocess"},
            {"Key": "skinlesion:run-id", "Value": "r1"},
            {"Key": "skinlesion:task", "Value": "preprocess"},
            {"Key": "skinlesion:prefix", "Value": "skl-test"},
        ],
    }
    assert request_problems(sagemaker_model, "CreateProcessingJob", request) == []
    # The job itself accepts these arguments and reads back the same configuration.
    from skinlesion.jobs.preprocess import get_args_parser

    parsed = get_args_parser().parse_args(arguments)
    assert (parsed.image_size, parsed.seed, parsed.workers, parsed.labels) == (
        128,
        7,
        2,
        "subsets/mini.csv",
    )


def test_evaluate_request_mounts_dataset_and_model(sagemaker_model: Any) -> None:
    settings = make_settings(subnet_ids=("subnet-1",), security_group_ids=("sg-1",))
    request = evaluate_job_request(
        settings,
        EvaluateRequest(
            dataset_uri="s3://p/ds/", model_uri="s3://m/model/", output_uri="s3://m/eval/"
        ),
        job_name="skl-test-evaluate-abc",
        dataset_uri="s3://p/ds/",
        model_uri="s3://m/model/",
        output_uri="s3://m/eval/",
        context=JobContext(stage="evaluate"),
    )
    assert [
        (i["InputName"], i["S3Input"]["S3Uri"], i["S3Input"]["LocalPath"])
        for i in request["ProcessingInputs"]
    ] == [
        ("dataset", "s3://p/ds/", "/opt/ml/processing/input/dataset"),
        ("model", "s3://m/model/", "/opt/ml/processing/input/model"),
    ]
    assert request["ProcessingOutputConfig"] == {
        "Outputs": [
            {
                "OutputName": "evaluation",
                "S3Output": {
                    "S3Uri": "s3://m/eval/",
                    "LocalPath": "/opt/ml/processing/output/evaluation",
                    "S3UploadMode": "EndOfJob",
                },
            }
        ]
    }
    assert request["AppSpecification"]["ContainerArguments"] == [
        "--dataset", "/opt/ml/processing/input/dataset",
        "--model", "/opt/ml/processing/input/model",
        "--output", "/opt/ml/processing/output/evaluation",
    ]  # fmt: skip
    assert request["NetworkConfig"]["VpcConfig"] == {
        "SecurityGroupIds": ["sg-1"],
        "Subnets": ["subnet-1"],
    }
    assert (
        "Tags" in request
        and request_problems(sagemaker_model, "CreateProcessingJob", request) == []
    )
    from skinlesion.jobs.evaluate import get_args_parser

    parsed = get_args_parser().parse_args(request["AppSpecification"]["ContainerArguments"])
    assert str(parsed.model) == "/opt/ml/processing/input/model"


def test_metric_definitions_parse_the_trainers_epoch_line() -> None:
    line = "epoch=3 train_loss=0.512 val_loss=0.601 val_balanced_accuracy=0.7421 lr=0.00100 images_per_sec=153.2"
    found = {}
    for definition in METRIC_DEFINITIONS:
        match = re.search(definition["Regex"], line)
        if match:
            found[definition["Name"]] = float(match.group(1))
    assert found == {
        "epoch": 3.0,
        "train:loss": 0.512,
        "validation:loss": 0.601,
        "validation:balanced_accuracy": 0.7421,
        "learning_rate": 0.001,
        "train:images_per_sec": 153.2,
    }


# --- the validator itself -------------------------------------------------------------------
def _valid_training_request() -> dict[str, Any]:
    return training_job_request(
        make_settings(),
        TrainRequest(dataset_uri="s3://d/ds/", model_uri="s3://m/model/"),
        job_name="ok-name",
        dataset_uri="s3://d/ds/",
        output_path="s3://m/model/",
        checkpoint_uri="s3://m/c/ok-name",
        context=CONTEXT,
    )


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        (
            ("TrainingJobName",),
            "x" * 64,
            "TrainingJobName: 64 characters, more than the maximum 63",
        ),
        (("TrainingJobName",), "bad_name", "does not match the pattern"),
        (
            ("AlgorithmSpecification", "TrainingInputMode"),
            "Streaming",
            "is not one of Pipe, File, FastFile",
        ),
        (("ResourceConfig", "InstanceType"), "ml.m5.giant", "is not one of"),
        (("ResourceConfig", "InstanceCount"), -1, "less than the minimum 0"),
        (("StoppingCondition", "MaxRuntimeInSeconds"), 0, "less than the minimum 1"),
        (("RoleArn",), "arn:aws:iam::123:role/x", "does not match the pattern"),
        (("CheckpointConfig", "S3Uri"), "gs://not-s3/x", "does not match the pattern"),
        (("HyperParameters", "epochs"), "1" * 2501, "more than the maximum 2500"),
    ],
)
def test_validator_catches_what_botocore_lets_through(
    sagemaker_model: Any, path: tuple[str, ...], value: Any, problem: str
) -> None:
    request = _valid_training_request()
    target = request
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    problems = request_problems(sagemaker_model, "CreateTrainingJob", request)
    assert any(problem in p for p in problems), problems
    with pytest.raises(RequestValidationError, match="CreateTrainingJob request is invalid"):
        validate_request(sagemaker_model, "CreateTrainingJob", request)


def test_validator_reports_botocores_own_findings(sagemaker_model: Any) -> None:
    request = _valid_training_request()
    del request["RoleArn"]
    request["Unknown"] = 1
    request["ResourceConfig"]["InstanceCount"] = "one"
    problems = request_problems(sagemaker_model, "CreateTrainingJob", request)
    assert any("Missing required parameter" in p and "RoleArn" in p for p in problems)
    assert any('Unknown parameter in input: "Unknown"' in p for p in problems)
    assert any("InstanceCount" in p and "type" in p for p in problems)


def test_validator_counts_list_and_map_sizes(sagemaker_model: Any) -> None:
    request = _valid_training_request()
    request["HyperParameters"] = {f"k{i}": "v" for i in range(101)}
    request["Tags"] = [{"Key": f"k{i}", "Value": "v"} for i in range(51)]
    problems = request_problems(sagemaker_model, "CreateTrainingJob", request)
    assert any("HyperParameters: 101 entries, more than the maximum 100" in p for p in problems)
    assert any("Tags: 51 items, more than the maximum 50" in p for p in problems)


def test_validator_understands_unicode_property_patterns(sagemaker_model: Any) -> None:
    # CustomerMetadataProperties keys use Java's \p{L}: letters of any script are fine, a tab is not.
    base = {"ModelPackageGroupName": "g", "CustomerMetadataProperties": {"läsion_ñ": "ok"}}
    assert request_problems(sagemaker_model, "CreateModelPackage", base) == []
    bad = {"ModelPackageGroupName": "g", "CustomerMetadataProperties": {"a\tb": "ok"}}
    assert any(
        "does not match the pattern" in p
        for p in request_problems(sagemaker_model, "CreateModelPackage", bad)
    )
