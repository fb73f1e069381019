"""Typed AWS settings, read from Terraform's ``terraform output -json`` file and SKINLESION_* variables.

Terraform owns every name it creates (buckets, roles, repositories, the model package group), so
those values are read from its outputs and never typed again; the environment can override any of
them. Settings are read when ``Settings.from_environment()`` is called, never at import time.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ENV_PREFIX = "SKINLESION_"
TERRAFORM_OUTPUTS_ENV = "SKINLESION_TERRAFORM_OUTPUTS"
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
TRAFFIC_SHIFTS = ("all_at_once", "canary", "linear")
_NAME_PREFIX = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*")


class SettingsError(ValueError):
    """A setting is missing or has a value outside what is accepted; the message names both."""


def _setting(default: Any, help: str, *, terraform: bool = False) -> Any:
    """A dataclass field with its documentation; ``terraform`` marks a Terraform output name."""
    return field(default=default, metadata={"help": help, "terraform": terraform})


@dataclass(frozen=True)
class Settings:
    """Everything the SageMaker backend needs to know about the AWS account it drives."""

    # --- Terraform outputs (same names) ---------------------------------------------------
    region: str = _setting(
        "", "AWS region (falls back to AWS_REGION, AWS_DEFAULT_REGION)", terraform=True
    )
    name_prefix: str = _setting(
        "skinlesion",
        "Prefix of every name this project creates (jobs, models, endpoints)",
        terraform=True,
    )
    data_bucket: str = _setting("", "Bucket of the raw ISIC data", terraform=True)
    processed_bucket: str = _setting("", "Bucket of preprocessed datasets", terraform=True)
    models_bucket: str = _setting(
        "", "Bucket of model artifacts, checkpoints and staged local inputs", terraform=True
    )
    pipeline_root: str = _setting("", "KFP pipeline root (s3://...)", terraform=True)
    capture_bucket: str = _setting("", "Bucket of endpoint data capture", terraform=True)
    capture_uri: str = _setting(
        "", "Data capture destination (default s3://<capture_bucket>/capture)", terraform=True
    )
    logs_bucket: str = _setting("", "Bucket of access logs", terraform=True)
    kms_key_arn: str = _setting(
        "",
        "KMS key for job volumes, job outputs, data capture and uploads (empty: AWS managed)",
        terraform=True,
    )
    sagemaker_execution_role_arn: str = _setting(
        "", "Role that SageMaker jobs, models and endpoints run as", terraform=True
    )
    kubeflow_irsa_role_arn: str = _setting(
        "", "Role of the Kubeflow pipeline pods (IRSA); informational here", terraform=True
    )
    training_image_repository_url: str = _setting(
        "",
        "ECR repository of the training/processing image (a tag or digest in it wins over image_tag)",
        terraform=True,
    )
    inference_image_repository_url: str = _setting(
        "", "ECR repository of the inference image", terraform=True
    )
    pipeline_image_repository_url: str = _setting(
        "", "ECR repository of the pipeline (KFP component) image", terraform=True
    )
    model_package_group_name: str = _setting(
        "", "Default model package group of the registry", terraform=True
    )
    sns_topic_arn: str = _setting("", "SNS topic of alarms and approvals", terraform=True)
    endpoint_name: str = _setting(
        "", "SageMaker endpoint of the pipelines (empty: <name_prefix>-endpoint)", terraform=True
    )
    metrics_namespace: str = _setting(
        "SkinLesion", "CloudWatch namespace of the monitoring metrics", terraform=True
    )
    subnet_ids: tuple[str, ...] = _setting(
        (),
        "VPC subnets of jobs, models and endpoints (JSON array in the environment)",
        terraform=True,
    )
    security_group_ids: tuple[str, ...] = _setting(
        (), "VPC security groups, with subnet_ids (JSON array in the environment)", terraform=True
    )
    # --- Not Terraform's business ---------------------------------------------------------
    image_tag: str = _setting("latest", "Tag of the three images when their URL holds none")
    processing_instance_type: str = _setting("ml.m5.xlarge", "Instance type of processing jobs")
    processing_volume_size_gb: int = _setting(30, "EBS volume of processing jobs, GB")
    training_instance_type: str = _setting("ml.g4dn.xlarge", "Instance type of training jobs")
    training_volume_size_gb: int = _setting(30, "EBS volume of training jobs, GB")
    spot_training: bool = _setting(True, "Managed spot training (resumes from checkpoints)")
    max_runtime_seconds: int = _setting(4 * 3600, "MaxRuntimeInSeconds of every job")
    max_wait_seconds: int = _setting(
        0, "MaxWaitTimeInSeconds of spot training (0: twice max_runtime_seconds)"
    )
    network_isolation: bool = _setting(
        False, "EnableNetworkIsolation on jobs and models (no outbound network in the container)"
    )
    inter_container_encryption: bool = _setting(
        False, "EnableInterContainerTrafficEncryption on jobs (multi-instance traffic)"
    )
    job_timeout_seconds: int = _setting(
        0,
        "Wall-clock limit of a step waiting for its job; the job is stopped after it (0: derived)",
    )
    poll_seconds: float = _setting(15.0, "Seconds between two status polls (and log fetches)")
    max_job_attempts: int = _setting(
        3, "Jobs one step may start: a failed or stopped job is followed by <name>-a2, -a3, ..."
    )
    run_id: str = _setting(
        "", "Pipeline run id used to name jobs when a request carries none (KFP run id)"
    )
    assume_role_arn: str = _setting("", "Role the AWS clients assume through STS (empty: none)")
    endpoint_url: str = _setting("", "One endpoint URL for every AWS client (a local emulator)")
    max_api_attempts: int = _setting(10, "botocore 'standard' retry mode: attempts per API call")
    auto_approve: bool = _setting(
        False,
        "Register may set a version Approved (deploys it at once); false: at best "
        "PendingManualApproval, a person approves (docs/sagemaker.md, Approval flow)",
    )
    rollback_alarm_names: tuple[str, ...] = _setting(
        (), "CloudWatch alarms that roll a blue/green update back, besides those on the endpoint"
    )
    blue_green_bake_seconds: int = _setting(
        600, "TerminationWaitInSeconds: the old fleet stays while the alarms watch the new one"
    )
    endpoint_timeout_seconds: int = _setting(3600, "Wall-clock limit of waiting for InService")
    traffic_shift: str = _setting(
        "all_at_once",
        "How a blue/green update shifts traffic: all_at_once, canary or linear",
    )
    canary_size_percent: int = _setting(
        10, "canary: share of the new fleet that gets traffic first, percent (1-50)"
    )
    linear_step_percent: int = _setting(
        25, "linear: share of the new fleet turned on per step, percent (10-50)"
    )
    traffic_shift_wait_seconds: int = _setting(
        300, "canary/linear: bake between two traffic steps, seconds (0-3600)"
    )
    scale_in_cooldown_seconds: int = _setting(300, "ScaleInCooldown of the target tracking policy")
    scale_out_cooldown_seconds: int = _setting(60, "ScaleOutCooldown of the target tracking policy")

    def __post_init__(self) -> None:
        for name in (
            "processing_volume_size_gb",
            "training_volume_size_gb",
            "max_runtime_seconds",
            "poll_seconds",
            "max_job_attempts",
            "max_api_attempts",
            "endpoint_timeout_seconds",
        ):
            if getattr(self, name) <= 0:
                raise SettingsError(f"Invalid {name} {getattr(self, name)!r}: must be > 0.")
        for name in (
            "max_wait_seconds",
            "job_timeout_seconds",
            "blue_green_bake_seconds",
            "scale_in_cooldown_seconds",
            "scale_out_cooldown_seconds",
        ):
            if getattr(self, name) < 0:
                raise SettingsError(f"Invalid {name} {getattr(self, name)!r}: must be >= 0.")
        if self.max_job_attempts > 9:
            raise SettingsError(f"Invalid max_job_attempts {self.max_job_attempts}: 1 to 9.")
        for name in ("processing_instance_type", "training_instance_type"):
            if not getattr(self, name).startswith("ml."):
                raise SettingsError(
                    f"Invalid {name} {getattr(self, name)!r}: a SageMaker type such as ml.m5.xlarge."
                )
        if (
            self.spot_training
            and self.max_wait_seconds
            and self.max_wait_seconds < self.max_runtime_seconds
        ):
            raise SettingsError(
                f"Invalid max_wait_seconds {self.max_wait_seconds}: spot training needs it >= "
                f"max_runtime_seconds ({self.max_runtime_seconds}), or 0 for twice that."
            )
        if not _NAME_PREFIX.fullmatch(self.name_prefix) or len(self.name_prefix) > 40:
            raise SettingsError(
                f"Invalid name_prefix {self.name_prefix!r}: letters, digits and hyphens, "
                "at most 40 characters, starting and ending with a letter or digit."
            )
        self._check_traffic_shift()
        if bool(self.subnet_ids) != bool(self.security_group_ids):
            raise SettingsError(
                "subnet_ids and security_group_ids go together: set both (a VPC) or neither."
            )

    def _check_traffic_shift(self) -> None:
        # The ranges are TrafficRoutingConfig's in the SageMaker API reference
        # (docs.aws.amazon.com/sagemaker/latest/APIReference/API_TrafficRoutingConfig.html):
        # WaitIntervalInSeconds 0-3600, CanarySize <= 50 % and LinearStepSize 10-50 % of the fleet.
        if self.traffic_shift not in TRAFFIC_SHIFTS:
            raise SettingsError(
                f"Invalid traffic_shift {self.traffic_shift!r} ({env_name('traffic_shift')}). "
                f"Accepted: {', '.join(TRAFFIC_SHIFTS)}."
            )
        for name, low, high in (
            ("canary_size_percent", 1, 50),
            ("linear_step_percent", 10, 50),
            ("traffic_shift_wait_seconds", 0, 3600),
        ):
            value = getattr(self, name)
            if not low <= value <= high:
                raise SettingsError(
                    f"Invalid {name} {value!r} ({env_name(name)}): {low} to {high}."
                )

    @property
    def traffic_shift_waits(self) -> int:
        """How many WaitIntervalInSeconds a blue/green update sits through before the final bake."""
        if self.traffic_shift == "canary":
            return 1
        if self.traffic_shift == "linear":
            return -(-100 // self.linear_step_percent) - 1  # n steps, a wait between two
        return 0

    # --- Loading --------------------------------------------------------------------------
    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Terraform outputs (file named by SKINLESION_TERRAFORM_OUTPUTS), then SKINLESION_* wins."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        outputs_file = env.get(TERRAFORM_OUTPUTS_ENV, "")
        if outputs_file:
            values.update(terraform_values(load_terraform_outputs(Path(outputs_file))))
        for f in dataclasses.fields(cls):
            raw = env.get(env_name(f.name))
            if raw is not None and raw != "":
                values[f.name] = _parse(f.name, raw, f.type)
        if not values.get("region"):
            values["region"] = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or ""
        return cls(**values)

    def require(self, *names: str) -> None:
        """Raise one error naming every missing setting and where each one can come from."""
        missing = [n for n in names if not getattr(self, n)]
        if missing:
            where = "; ".join(
                f"{n}: {env_name(n)}"
                + (" or Terraform output " + n if _field(n).metadata["terraform"] else "")
                for n in missing
            )
            raise SettingsError(
                f"Missing settings for the SageMaker backend ({where}). Point "
                f"{TERRAFORM_OUTPUTS_ENV} at `terraform output -json` or set the variables."
            )

    # --- Derived values (computed, never stored twice) ----------------------------------------
    @property
    def training_image_uri(self) -> str:
        """The training/processing image with its tag."""
        return image_uri(self.training_image_repository_url, self.image_tag)

    @property
    def inference_image_uri(self) -> str:
        """The inference image with its tag."""
        return image_uri(self.inference_image_repository_url, self.image_tag)

    @property
    def default_endpoint_name(self) -> str:
        """The endpoint a pipeline deploys to when it names none: inside the IAM name prefix."""
        return self.endpoint_name or f"{self.name_prefix}-endpoint"

    @property
    def effective_max_wait_seconds(self) -> int:
        """MaxWaitTimeInSeconds for spot training: the setting, or twice the runtime."""
        return self.max_wait_seconds or 2 * self.max_runtime_seconds

    @property
    def effective_job_timeout_seconds(self) -> int:
        """How long a step waits for its job: the setting, or the job's own limit plus an hour."""
        if self.job_timeout_seconds:
            return self.job_timeout_seconds
        job_limit = (
            self.effective_max_wait_seconds if self.spot_training else self.max_runtime_seconds
        )
        return job_limit + 3600

    @property
    def checkpoint_root(self) -> str:
        """Where training checkpoints live: one prefix per job, shared by its attempts."""
        return f"s3://{self.models_bucket}/checkpoints"

    @property
    def staging_root(self) -> str:
        """Where local inputs are uploaded and local outputs are written before download."""
        return f"s3://{self.models_bucket}/staging"

    @property
    def default_capture_uri(self) -> str:
        """The data capture destination: capture_uri, else the capture bucket."""
        if self.capture_uri:
            return self.capture_uri
        return f"s3://{self.capture_bucket}/capture" if self.capture_bucket else ""

    def as_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (they hold no secrets)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }


def env_name(field_name: str) -> str:
    """The environment variable of a setting: ``SKINLESION_`` + its name in capitals."""
    return ENV_PREFIX + field_name.upper()


def image_uri(repository_url: str, tag: str) -> str:
    """``repo:tag``, unless the repository URL already carries a tag or a digest."""
    if not repository_url:
        return ""
    last = repository_url.rsplit("/", 1)[-1]
    if "@" in last or ":" in last:
        return repository_url
    return f"{repository_url}:{tag}"


def load_terraform_outputs(path: Path) -> dict[str, Any]:
    """Read ``terraform output -json`` (``{name: {"value": ...}}``) or a flat ``{name: value}``."""
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SettingsError(
            f"{TERRAFORM_OUTPUTS_ENV} points at {path}, which does not exist. "
            "Write it with `terraform output -json > <file>`."
        ) from None
    except json.JSONDecodeError as error:
        raise SettingsError(
            f"{path} is not JSON ({error}); expected `terraform output -json`."
        ) from None
    if not isinstance(raw, dict):
        raise SettingsError(
            f"{path} holds a {type(raw).__name__}; expected a JSON object of outputs."
        )
    return {k: v["value"] if isinstance(v, dict) and "value" in v else v for k, v in raw.items()}


def terraform_values(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """Keep the outputs that are settings (converted to their types); others are ignored."""
    values: dict[str, Any] = {}
    for name, value in outputs.items():
        try:
            f = _field(name)
        except KeyError:
            log.debug("Terraform output %s is not a setting; ignored", name)
            continue
        if value is None:
            continue
        values[name] = _parse(name, value if isinstance(value, str) else json.dumps(value), f.type)
    return values


def _field(name: str) -> dataclasses.Field[Any]:
    for f in dataclasses.fields(Settings):
        if f.name == name:
            return f
    raise KeyError(name)


def _parse(name: str, raw: str, type_name: Any) -> Any:
    kind = str(type_name)
    source = env_name(name)
    if kind == "str":
        return raw
    if kind == "bool":
        if raw.strip().lower() in TRUE_WORDS:
            return True
        if raw.strip().lower() in FALSE_WORDS:
            return False
        raise SettingsError(
            f"Invalid {source} {raw!r}. Accepted: {', '.join(TRUE_WORDS + FALSE_WORDS)}."
        )
    if kind in ("int", "float"):
        try:
            return int(raw) if kind == "int" else float(raw)
        except ValueError:
            expected = "an integer" if kind == "int" else "a number"
            raise SettingsError(f"Invalid {source} {raw!r}: expected {expected}.") from None
    if kind == "tuple[str, ...]":
        try:
            items = json.loads(raw)
        except json.JSONDecodeError:
            items = None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise SettingsError(
                f'Invalid {source} {raw!r}: expected a JSON array of strings, e.g. ["a", "b"].'
            )
        return tuple(items)
    raise SettingsError(f"Setting {name} has unsupported type {kind}.")
