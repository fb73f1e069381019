"""Settings: Terraform's outputs file, SKINLESION_* overrides, types, errors, documentation."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from skinlesion.settings import (
    TERRAFORM_OUTPUTS_ENV,
    Settings,
    SettingsError,
    env_name,
    image_uri,
)

# The shape `terraform output -json` prints: every output with its value, type and sensitivity.
TERRAFORM_OUTPUTS = {
    "region": {"sensitive": False, "type": "string", "value": "eu-west-1"},
    "name_prefix": {"sensitive": False, "type": "string", "value": "skinlesion-dev"},
    "data_bucket": {"sensitive": False, "type": "string", "value": "skinlesion-dev-data-1a2b"},
    "processed_bucket": {"sensitive": False, "type": "string", "value": "skinlesion-dev-proc"},
    "models_bucket": {"sensitive": False, "type": "string", "value": "skinlesion-dev-models"},
    "pipeline_root": {
        "sensitive": False,
        "type": "string",
        "value": "s3://skinlesion-dev-models/kfp",
    },
    "capture_bucket": {"sensitive": False, "type": "string", "value": "skinlesion-dev-capture"},
    "capture_uri": {
        "sensitive": False,
        "type": "string",
        "value": "s3://skinlesion-dev-capture/dc",
    },
    "logs_bucket": {"sensitive": False, "type": "string", "value": "skinlesion-dev-logs"},
    "kms_key_arn": {
        "sensitive": False,
        "type": "string",
        "value": "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    },
    "sagemaker_execution_role_arn": {
        "sensitive": False,
        "type": "string",
        "value": "arn:aws:iam::111122223333:role/skinlesion-dev-sagemaker",
    },
    "kubeflow_irsa_role_arn": {
        "sensitive": False,
        "type": "string",
        "value": "arn:aws:iam::111122223333:role/skinlesion-dev-kubeflow",
    },
    "training_image_repository_url": {
        "sensitive": False,
        "type": "string",
        "value": "111122223333.dkr.ecr.eu-west-1.amazonaws.com/skinlesion-dev-training",
    },
    "inference_image_repository_url": {
        "sensitive": False,
        "type": "string",
        "value": "111122223333.dkr.ecr.eu-west-1.amazonaws.com/skinlesion-dev-inference",
    },
    "pipeline_image_repository_url": {
        "sensitive": False,
        "type": "string",
        "value": "111122223333.dkr.ecr.eu-west-1.amazonaws.com/skinlesion-dev-pipeline",
    },
    "model_package_group_name": {"sensitive": False, "type": "string", "value": "skinlesion-dev"},
    "sns_topic_arn": {
        "sensitive": False,
        "type": "string",
        "value": "arn:aws:sns:eu-west-1:111122223333:skinlesion-dev-alerts",
    },
    "metrics_namespace": {"sensitive": False, "type": "string", "value": "SkinLesionDev"},
    "endpoint_name": {"sensitive": False, "type": "string", "value": "skinlesion-dev-endpoint"},
    "subnet_ids": {
        "sensitive": False,
        "type": ["list", "string"],
        "value": ["subnet-0a1", "subnet-0b2"],
    },
    "security_group_ids": {"sensitive": False, "type": ["list", "string"], "value": ["sg-0c3"]},
    "eks_cluster_name": {"sensitive": False, "type": "string", "value": "not-a-setting"},
}


@pytest.fixture
def outputs_file(tmp_path: Path) -> Path:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(TERRAFORM_OUTPUTS))
    return path


def test_terraform_outputs_fill_every_terraform_setting(outputs_file: Path) -> None:
    settings = Settings.from_environment({TERRAFORM_OUTPUTS_ENV: str(outputs_file)})
    for f in dataclasses.fields(Settings):
        if f.metadata["terraform"]:
            expected = TERRAFORM_OUTPUTS[f.name]["value"]
            got = getattr(settings, f.name)
            assert (list(got) if isinstance(got, tuple) else got) == expected, f.name
    assert settings.training_image_uri.endswith("/skinlesion-dev-training:latest")
    assert settings.checkpoint_root == "s3://skinlesion-dev-models/checkpoints"
    assert settings.default_capture_uri == "s3://skinlesion-dev-capture/dc"


def test_environment_overrides_terraform_and_parses_types(outputs_file: Path) -> None:
    env = {
        TERRAFORM_OUTPUTS_ENV: str(outputs_file),
        "SKINLESION_MODELS_BUCKET": "other-models",
        "SKINLESION_SPOT_TRAINING": "false",
        "SKINLESION_MAX_RUNTIME_SECONDS": "7200",
        "SKINLESION_POLL_SECONDS": "2.5",
        "SKINLESION_SUBNET_IDS": '["subnet-x"]',
        "SKINLESION_IMAGE_TAG": "git-abc123",
        "SKINLESION_REGION": "",  # empty means unset: Terraform's value stays
    }
    settings = Settings.from_environment(env)
    assert settings.models_bucket == "other-models"
    assert settings.spot_training is False
    assert settings.max_runtime_seconds == 7200
    assert settings.poll_seconds == 2.5
    assert settings.subnet_ids == ("subnet-x",)
    assert settings.region == "eu-west-1"
    assert settings.inference_image_uri.endswith("skinlesion-dev-inference:git-abc123")


def test_region_falls_back_to_the_aws_variables() -> None:
    assert Settings.from_environment({"AWS_REGION": "ap-south-1"}).region == "ap-south-1"
    assert Settings.from_environment({"AWS_DEFAULT_REGION": "us-west-2"}).region == "us-west-2"
    assert Settings.from_environment({}).region == ""


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"SKINLESION_SPOT_TRAINING": "maybe"},
            "SKINLESION_SPOT_TRAINING 'maybe'. Accepted: 1, true",
        ),
        ({"SKINLESION_MAX_RUNTIME_SECONDS": "1h"}, "expected an integer"),
        ({"SKINLESION_SUBNET_IDS": "subnet-a,subnet-b"}, "expected a JSON array of strings"),
        (
            {"SKINLESION_MAX_RUNTIME_SECONDS": "3600", "SKINLESION_MAX_WAIT_SECONDS": "1800"},
            "spot training needs it >= max_runtime_seconds (3600)",
        ),
        ({"SKINLESION_SUBNET_IDS": '["subnet-a"]'}, "set both (a VPC) or neither"),
        ({"SKINLESION_NAME_PREFIX": "bad_prefix"}, "Invalid name_prefix 'bad_prefix'"),
        ({"SKINLESION_TRAINING_INSTANCE_TYPE": "p3.2xlarge"}, "ml.m5.xlarge"),
        ({"SKINLESION_MAX_JOB_ATTEMPTS": "0"}, "must be > 0"),
    ],
)
def test_bad_values_name_the_variable_and_what_is_accepted(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        Settings.from_environment(env)


def test_missing_or_broken_outputs_file_is_explained(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="terraform output -json"):
        Settings.from_environment({TERRAFORM_OUTPUTS_ENV: str(tmp_path / "absent.json")})
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(SettingsError, match="is not JSON"):
        Settings.from_environment({TERRAFORM_OUTPUTS_ENV: str(broken)})


def test_flat_outputs_are_accepted_too(tmp_path: Path) -> None:
    path = tmp_path / "flat.json"
    path.write_text(json.dumps({"region": "eu-central-1", "models_bucket": "m"}))
    settings = Settings.from_environment({TERRAFORM_OUTPUTS_ENV: str(path)})
    assert (settings.region, settings.models_bucket) == ("eu-central-1", "m")


def test_require_lists_every_missing_setting_and_its_sources() -> None:
    settings = Settings(region="us-east-1")
    with pytest.raises(SettingsError) as caught:
        settings.require("region", "models_bucket", "assume_role_arn")
    text = str(caught.value)
    assert "models_bucket: SKINLESION_MODELS_BUCKET or Terraform output models_bucket" in text
    assert "assume_role_arn: SKINLESION_ASSUME_ROLE_ARN" in text
    assert "Terraform output assume_role_arn" not in text
    assert "region" not in text.split("(")[1].split(":")[0]


def test_derived_values() -> None:
    settings = Settings(max_runtime_seconds=1000, spot_training=True)
    assert settings.effective_max_wait_seconds == 2000
    assert settings.effective_job_timeout_seconds == 2000 + 3600
    assert (
        Settings(spot_training=False, max_runtime_seconds=10).effective_job_timeout_seconds == 3610
    )
    assert Settings(job_timeout_seconds=5).effective_job_timeout_seconds == 5
    assert image_uri("r.example/repo", "v1") == "r.example/repo:v1"
    assert image_uri("r.example:5000/repo:pinned", "v1") == "r.example:5000/repo:pinned"
    assert image_uri("r.example/repo@sha256:abc", "v1") == "r.example/repo@sha256:abc"
    assert image_uri("", "v1") == ""


def test_no_environment_is_read_before_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKINLESION_MODELS_BUCKET", "from-env")
    assert Settings().models_bucket == ""
    assert Settings.from_environment().models_bucket == "from-env"


def test_every_setting_is_documented(repo_root: Path) -> None:
    doc = (repo_root / "docs" / "sagemaker.md").read_text()
    undocumented = [
        env_name(f.name) for f in dataclasses.fields(Settings) if env_name(f.name) not in doc
    ]
    assert not undocumented, f"docs/sagemaker.md lacks {undocumented}"
    assert TERRAFORM_OUTPUTS_ENV in doc


def test_pipeline_defaults_name_resources_inside_the_iam_prefix() -> None:
    """The pipelines' endpoint and model group default to the settings' names: the IAM policies
    allow ``<name_prefix>-*`` only (terraform/modules/identity), so a literal "skinlesion" in a
    compiled default would be refused on a real account."""
    import inspect

    from pipelines.monitoring import monitoring_pipeline
    from pipelines.training import training_pipeline
    from skinlesion.aws import AwsClients
    from skinlesion.backends.sagemaker import SageMakerBackend

    for pipeline in (training_pipeline, monitoring_pipeline):
        inputs = pipeline.component_spec.inputs or {}
        for name in ("endpoint_name", "model_group"):
            if name in inputs:
                assert inputs[name].default == "", (pipeline.name, name)
    settings = Settings(
        region="eu-west-1", name_prefix="skl-dev", model_package_group_name="skl-dev-models"
    )
    backend = SageMakerBackend(settings, AwsClients("eu-west-1"))
    assert backend.default_endpoint_name() == "skl-dev-endpoint"
    assert backend.default_model_group() == "skl-dev-models"
    assert inspect.signature(training_pipeline.pipeline_func).parameters  # a real pipeline
