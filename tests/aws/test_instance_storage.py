"""No volume KMS key on instance types with local NVMe storage, for jobs and endpoints alike.

SageMaker refuses ``VolumeKmsKeyId`` (jobs) and ``KmsKeyId`` (endpoint configs) on such types;
the rule and its sources are in ``skinlesion.backends.sagemaker.instance_storage``. The service
model cannot express it, so it is checked here for every instance type the project can send:
the settings' defaults, the deploy default, and every params file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.aws.helpers import make_settings, offline_client

from skinlesion.backends.base import DeployRequest, PreprocessRequest, TrainRequest
from skinlesion.backends.sagemaker.deployment import EndpointDeployer
from skinlesion.backends.sagemaker.instance_storage import has_instance_storage
from skinlesion.backends.sagemaker.job_requests import (
    JobContext,
    preprocess_job_request,
    training_job_request,
)
from skinlesion.backends.sagemaker.validation import request_problems
from skinlesion.settings import Settings

KMS = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
PARAMS = Path(__file__).resolve().parents[2] / "pipelines" / "params"


def _instance_types(node: Any) -> list[str]:
    """Every value of a key ending in ``instance_type`` in a params file."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if str(key).endswith("instance_type") and isinstance(value, str):
                found.append(value)
            else:
                found += _instance_types(value)
    elif isinstance(node, list):
        for item in node:
            found += _instance_types(item)
    return found


def project_instance_types() -> list[str]:
    """The defaults of Settings and DeployRequest, and every type in pipelines/params/*.yaml."""
    defaults = {f.name: f.default for f in dataclasses.fields(Settings)}
    types = {
        defaults["processing_instance_type"],
        defaults["training_instance_type"],
        DeployRequest(model_version_arn="a", endpoint_name="e").instance_type,
    }
    for path in sorted(PARAMS.glob("*.yaml")):
        types.update(_instance_types(yaml.safe_load(path.read_text())))
    return sorted(types)


# Known answers from the SageMaker docs' instance storage list and the SDK's rule.
KNOWN = [
    ("ml.m5.xlarge", False),
    ("ml.m5.large", False),
    ("ml.c5.2xlarge", False),
    ("ml.p3.2xlarge", False),
    ("ml.inf1.xlarge", False),
    ("ml.g4dn.xlarge", True),
    ("ml.m5d.large", True),
    ("ml.c6id.xlarge", True),
    ("ml.p3dn.24xlarge", True),
    ("ml.p4d.24xlarge", True),
    ("ml.p4de.24xlarge", True),
    ("ml.g5.xlarge", True),
    ("ml.g6.xlarge", True),
    ("ml.p5.48xlarge", True),
    ("ml.trn1.2xlarge", True),
]


@pytest.mark.parametrize(("instance_type", "expected"), KNOWN)
def test_known_instance_storage_types(instance_type: str, expected: bool) -> None:
    assert has_instance_storage(instance_type) is expected


def test_the_project_sends_the_defaults_and_params_types() -> None:
    types = project_instance_types()
    # The training default has instance storage: the bug this file guards against.
    assert "ml.g4dn.xlarge" in types and "ml.m5.xlarge" in types and "ml.m5.large" in types


@pytest.mark.parametrize("instance_type", [*project_instance_types(), *(t for t, _ in KNOWN)])
def test_jobs_and_endpoints_follow_one_rule(instance_type: str) -> None:
    settings = make_settings(
        kms_key_arn=KMS,
        training_instance_type=instance_type,
        processing_instance_type=instance_type,
    )
    model = offline_client("sagemaker").meta.service_model
    training = training_job_request(
        settings,
        TrainRequest(dataset_uri="s3://d/ds/", model_uri="s3://m/model/"),
        job_name="j",
        dataset_uri="s3://d/ds/",
        output_path="s3://m/model/",
        checkpoint_uri="s3://m/c/j",
        context=JobContext(stage="train"),
    )
    processing = preprocess_job_request(
        settings,
        PreprocessRequest(data_uri="s3://d/isic/", output_uri="s3://p/ds/"),
        job_name="j",
        data_uri="s3://d/isic/",
        output_uri="s3://p/ds/",
        context=JobContext(stage="preprocess"),
    )
    endpoint = EndpointDeployer(None, None, None, settings).endpoint_config_request(
        DeployRequest(model_version_arn="arn:p", endpoint_name="e", instance_type=instance_type),
        "model",
        "s3://c/capture",
    )
    local = has_instance_storage(instance_type)
    assert ("VolumeKmsKeyId" in training["ResourceConfig"]) is not local
    assert ("VolumeKmsKeyId" in processing["ProcessingResources"]["ClusterConfig"]) is not local
    assert ("KmsKeyId" in endpoint) is not local
    # The key still encrypts what the job and the endpoint write.
    assert training["OutputDataConfig"]["KmsKeyId"] == KMS
    assert processing["ProcessingOutputConfig"]["KmsKeyId"] == KMS
    assert endpoint["DataCaptureConfig"]["KmsKeyId"] == KMS
    # The service model also checks the type against each operation's list (ml.inf1 hosts only);
    # every other member must be valid.
    for operation, request in (
        ("CreateTrainingJob", training),
        ("CreateProcessingJob", processing),
        ("CreateEndpointConfig", endpoint),
    ):
        problems = request_problems(model, operation, request)
        assert [p for p in problems if "InstanceType" not in p] == []


def test_a_malformed_instance_type_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"Invalid instance type 'g4dn.xlarge': expected ml\."):
        has_instance_storage("g4dn.xlarge")
