"""The request dicts of the five jobs, built from the settings and the step's S3 locations.

Pure functions: no clients, no environment. Every s3:// URI goes into the request unchanged (a
channel, a ProcessingInput or an output path), and hyperparameters come from
``TrainConfig.to_hyperparameters()`` only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from skinlesion.backends.base import (
    BaselineRequest,
    BatchScoreRequest,
    EvaluateRequest,
    MonitorRequest,
    PreprocessRequest,
    TrainRequest,
)
from skinlesion.backends.sagemaker.instance_storage import volume_kms_key
from skinlesion.batch import IMAGE_CONTENT_TYPE
from skinlesion.capture import format_inference_time
from skinlesion.contract import PROCESSING_INPUT, PROCESSING_OUTPUT
from skinlesion.settings import Settings
from skinlesion.training import METRIC_DEFINITIONS

PYTHON = "python"
PREPROCESS_MODULE = "skinlesion.jobs.preprocess"
TRAIN_MODULE = "skinlesion.jobs.train"
# The training image's launcher (containers/training/train.py, installed as /usr/local/bin/train)
# under tini: it reads resourceconfig.json and starts torchrun across the hosts (or the job
# module directly on one CPU/GPU), so a multi-instance job trains one model, not one per host.
TRAIN_ENTRYPOINT = ["tini", "--", "train"]
EVALUATE_MODULE = "skinlesion.jobs.evaluate"
BASELINE_MODULE = "skinlesion.jobs.baseline"
MONITOR_MODULE = "skinlesion.jobs.monitor"
TRAIN_CHANNEL = "train"
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
RUN_ID_TAG = "skinlesion:run-id"
PREFIX_TAG = "skinlesion:prefix"
JOB_ENVIRONMENT = {"PYTHONUNBUFFERED": "1", "SKINLESION_LOG_LEVEL": "INFO"}


@dataclass(frozen=True)
class JobContext:
    """Who asked for a job: tagged on it so it can be traced back to its pipeline run."""

    stage: str
    run_id: str = ""
    task_name: str = ""

    def tags(self) -> list[dict[str, str]]:
        """SageMaker tags (empty values left out: a tag value may be empty, noise is not useful)."""
        pairs = [
            ("skinlesion:stage", self.stage),
            (RUN_ID_TAG, self.run_id),
            ("skinlesion:task", self.task_name),
        ]
        return [{"Key": k, "Value": v} for k, v in pairs if v]


def job_tags(settings: Settings, context: JobContext) -> list[dict[str, str]]:
    """The context's tags plus ``skinlesion:prefix`` (the Terraform budget filters cost by it)."""
    return [*context.tags(), {"Key": PREFIX_TAG, "Value": settings.name_prefix}]


def processing_input(name: str, s3_uri: str) -> dict[str, Any]:
    """A ProcessingInput that mounts an S3 prefix under /opt/ml/processing/input/<name>."""
    return {
        "InputName": name,
        "S3Input": {
            "S3Uri": s3_uri,
            "LocalPath": f"{PROCESSING_INPUT}/{name}",
            "S3DataType": "S3Prefix",
            "S3InputMode": "File",
            "S3DataDistributionType": "FullyReplicated",
        },
    }


def processing_output(name: str, s3_uri: str) -> dict[str, Any]:
    """A ProcessingOutput that uploads /opt/ml/processing/output/<name> to an S3 prefix."""
    return {
        "OutputName": name,
        "S3Output": {
            "S3Uri": s3_uri,
            "LocalPath": f"{PROCESSING_OUTPUT}/{name}",
            "S3UploadMode": "EndOfJob",
        },
    }


def vpc_config(settings: Settings) -> dict[str, Any]:
    """The VpcConfig member, or nothing when no subnets are set."""
    if not settings.subnet_ids:
        return {}
    return {
        "VpcConfig": {
            "SecurityGroupIds": list(settings.security_group_ids),
            "Subnets": list(settings.subnet_ids),
        }
    }


def processing_job_request(
    settings: Settings,
    *,
    job_name: str,
    module: str,
    arguments: list[str],
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    context: JobContext,
) -> dict[str, Any]:
    """CreateProcessingJob for ``python -m <module> <arguments>`` in the training image."""
    cluster: dict[str, Any] = {
        "InstanceCount": 1,
        "InstanceType": settings.processing_instance_type,
        "VolumeSizeInGB": settings.processing_volume_size_gb,
    }
    output_config: dict[str, Any] = {"Outputs": outputs}
    # Instance storage types take no volume key (instance_storage.py); outputs keep the key.
    cluster.update(volume_kms_key(settings.processing_instance_type, settings.kms_key_arn))
    if settings.kms_key_arn:
        output_config["KmsKeyId"] = settings.kms_key_arn
    request: dict[str, Any] = {
        "ProcessingJobName": job_name,
        "ProcessingInputs": inputs,
        "ProcessingOutputConfig": output_config,
        "ProcessingResources": {"ClusterConfig": cluster},
        "StoppingCondition": {"MaxRuntimeInSeconds": settings.max_runtime_seconds},
        "AppSpecification": {
            "ImageUri": settings.training_image_uri,
            "ContainerEntrypoint": [PYTHON, "-m", module],
            "ContainerArguments": arguments,
        },
        "Environment": dict(JOB_ENVIRONMENT),
        "NetworkConfig": {
            "EnableInterContainerTrafficEncryption": settings.inter_container_encryption,
            "EnableNetworkIsolation": settings.network_isolation,
            **vpc_config(settings),
        },
        "RoleArn": settings.sagemaker_execution_role_arn,
    }
    request["Tags"] = job_tags(settings, context)
    return request


def preprocess_job_request(
    settings: Settings,
    request: PreprocessRequest,
    *,
    job_name: str,
    data_uri: str,
    output_uri: str,
    context: JobContext,
) -> dict[str, Any]:
    """The preprocessing job: the ISIC folder in, the dataset folder out."""
    data_path = f"{PROCESSING_INPUT}/data"
    output_path = f"{PROCESSING_OUTPUT}/dataset"
    arguments = ["--input", data_path, "--output", output_path]
    if request.labels:
        arguments += ["--labels", request.labels]
    arguments += ["--source-uri", request.data_uri]
    for f in dataclasses.fields(request.config):
        arguments += [f"--{f.name.replace('_', '-')}", str(getattr(request.config, f.name))]
    return processing_job_request(
        settings,
        job_name=job_name,
        module=PREPROCESS_MODULE,
        arguments=arguments,
        inputs=[processing_input("data", data_uri)],
        outputs=[processing_output("dataset", output_uri)],
        context=context,
    )


def evaluate_job_request(
    settings: Settings,
    request: EvaluateRequest,
    *,
    job_name: str,
    dataset_uri: str,
    model_uri: str,
    output_uri: str,
    context: JobContext,
) -> dict[str, Any]:
    """The evaluation job: dataset and model (model.tar.gz) in, the evaluation folder out."""
    arguments = [
        "--dataset", f"{PROCESSING_INPUT}/dataset",
        "--model", f"{PROCESSING_INPUT}/model",
        "--output", f"{PROCESSING_OUTPUT}/evaluation",
    ]  # fmt: skip
    return processing_job_request(
        settings,
        job_name=job_name,
        module=EVALUATE_MODULE,
        arguments=arguments,
        inputs=[processing_input("dataset", dataset_uri), processing_input("model", model_uri)],
        outputs=[processing_output("evaluation", output_uri)],
        context=context,
    )


def baseline_job_request(
    settings: Settings,
    request: BaselineRequest,
    *,
    job_name: str,
    dataset_uri: str,
    model_uri: str,
    output_uri: str,
    raw_uri: str,
    context: JobContext,
) -> dict[str, Any]:
    """The baseline job: dataset, model (and optionally the raw ISIC folder) in, baseline out."""
    inputs = [processing_input("dataset", dataset_uri), processing_input("model", model_uri)]
    arguments = [
        "--dataset", f"{PROCESSING_INPUT}/dataset",
        "--model", f"{PROCESSING_INPUT}/model",
        "--output", f"{PROCESSING_OUTPUT}/baseline",
        "--split", request.split,
        "--model-uri", model_uri,
    ]  # fmt: skip
    if raw_uri:
        inputs.append(processing_input("data", raw_uri))
        arguments += ["--raw", f"{PROCESSING_INPUT}/data"]
    return processing_job_request(
        settings,
        job_name=job_name,
        module=BASELINE_MODULE,
        arguments=arguments,
        inputs=inputs,
        outputs=[processing_output("baseline", output_uri)],
        context=context,
    )


def monitor_job_request(
    settings: Settings,
    request: MonitorRequest,
    *,
    job_name: str,
    baseline_uri: str,
    model_uri: str,
    manifest_uri: str,
    output_uri: str,
    labels_uri: str,
    context: JobContext,
) -> dict[str, Any]:
    """The monitor job over one window: the window's capture files as a ManifestFile input, so
    the job reads exactly the window from its local disk (and works with network isolation)."""
    capture = processing_input("capture", manifest_uri)
    capture["S3Input"]["S3DataType"] = "ManifestFile"
    inputs = [
        processing_input("baseline", baseline_uri),
        processing_input("model", model_uri),
        capture,
    ]
    arguments = [
        "--baseline", f"{PROCESSING_INPUT}/baseline",
        "--model", f"{PROCESSING_INPUT}/model",
        "--capture", f"{PROCESSING_INPUT}/capture",
        "--output", f"{PROCESSING_OUTPUT}/monitor",
        "--checks", request.checks,
    ]  # fmt: skip
    if labels_uri:
        inputs.append(processing_input("labels", labels_uri))
        arguments += ["--labels", f"{PROCESSING_INPUT}/labels"]
    if request.start is not None:
        arguments += ["--start", format_inference_time(request.start)]
    if request.end is not None:
        arguments += ["--end", format_inference_time(request.end)]
    return processing_job_request(
        settings,
        job_name=job_name,
        module=MONITOR_MODULE,
        arguments=arguments,
        inputs=inputs,
        outputs=[processing_output("monitor", output_uri)],
        context=context,
    )


def training_job_request(
    settings: Settings,
    request: TrainRequest,
    *,
    job_name: str,
    dataset_uri: str,
    output_path: str,
    checkpoint_uri: str,
    context: JobContext,
) -> dict[str, Any]:
    """CreateTrainingJob: the dataset prefix as channel "train"; SageMaker writes
    ``<output_path>/<job>/output/model.tar.gz``; checkpoints sync with ``checkpoint_uri``."""
    resources: dict[str, Any] = {
        "InstanceType": settings.training_instance_type,
        "InstanceCount": request.config.instance_count,
        "VolumeSizeInGB": settings.training_volume_size_gb,
    }
    output: dict[str, Any] = {"S3OutputPath": output_path}
    # Instance storage types take no volume key (instance_storage.py); outputs keep the key.
    resources.update(volume_kms_key(settings.training_instance_type, settings.kms_key_arn))
    if settings.kms_key_arn:
        output["KmsKeyId"] = settings.kms_key_arn
    stopping: dict[str, Any] = {"MaxRuntimeInSeconds": settings.max_runtime_seconds}
    if settings.spot_training:
        stopping["MaxWaitTimeInSeconds"] = settings.effective_max_wait_seconds
    training: dict[str, Any] = {
        "TrainingJobName": job_name,
        "AlgorithmSpecification": {
            "TrainingImage": settings.training_image_uri,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": list(TRAIN_ENTRYPOINT),
            "MetricDefinitions": [dict(d) for d in METRIC_DEFINITIONS],
            "EnableSageMakerMetricsTimeSeries": True,
        },
        "RoleArn": settings.sagemaker_execution_role_arn,
        "HyperParameters": request.config.to_hyperparameters(),
        "InputDataConfig": [
            {
                "ChannelName": TRAIN_CHANNEL,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": dataset_uri,
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "InputMode": "File",
            }
        ],
        "OutputDataConfig": output,
        "ResourceConfig": resources,
        "StoppingCondition": stopping,
        "EnableNetworkIsolation": settings.network_isolation,
        "EnableInterContainerTrafficEncryption": settings.inter_container_encryption,
        "EnableManagedSpotTraining": settings.spot_training,
        "CheckpointConfig": {"S3Uri": checkpoint_uri, "LocalPath": CHECKPOINT_LOCAL_PATH},
        "Environment": dict(JOB_ENVIRONMENT),
        **vpc_config(settings),
    }
    training["Tags"] = job_tags(settings, context)
    return training


def transform_job_request(
    settings: Settings,
    request: BatchScoreRequest,
    *,
    job_name: str,
    model_name: str,
    images_uri: str,
    output_uri: str,
    context: JobContext,
) -> dict[str, Any]:
    """CreateTransformJob: each image of ``images_uri`` alone (SplitType None, SingleRecord) to the
    inference container's /invocations as image/jpeg; each answer to ``<output>/<image>.out``."""
    resources: dict[str, Any] = {
        "InstanceType": request.instance_type,
        "InstanceCount": request.instance_count,
    }
    resources.update(volume_kms_key(request.instance_type, settings.kms_key_arn))
    output: dict[str, Any] = {
        "S3OutputPath": output_uri,
        "Accept": "application/json",
        "AssembleWith": "None",
    }
    if settings.kms_key_arn:
        output["KmsKeyId"] = settings.kms_key_arn
    transform: dict[str, Any] = {
        "TransformJobName": job_name,
        "ModelName": model_name,
        "BatchStrategy": "SingleRecord",
        # A real-time endpoint's body limit (the app's max_body_bytes): one image per request.
        "MaxPayloadInMB": 6,
        "ModelClientConfig": {"InvocationsTimeoutInSeconds": 60, "InvocationsMaxRetries": 1},
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": images_uri}},
            "ContentType": IMAGE_CONTENT_TYPE,
            "CompressionType": "None",
            "SplitType": "None",
        },
        "TransformOutput": output,
        "TransformResources": resources,
        "Environment": dict(JOB_ENVIRONMENT),
        "Tags": job_tags(settings, context),
    }
    return transform
