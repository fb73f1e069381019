"""Terraform code checks: fmt, validate of every root, variables, outputs and version pins."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tests.terraform.helpers import ENV_ROOTS, MODULES, TERRAFORM_DIR, Make

pytestmark = pytest.mark.terraform

# The outputs that `skinlesion` settings, `make submit` and the manifests read, by name.
SETTINGS_OUTPUTS = {
    "region",
    "name_prefix",
    "data_bucket",
    "processed_bucket",
    "models_bucket",
    "pipeline_root",
    "capture_bucket",
    "capture_uri",
    "logs_bucket",
    "kms_key_arn",
    "sagemaker_execution_role_arn",
    "kubeflow_irsa_role_arn",
    "training_image_repository_url",
    "inference_image_repository_url",
    "pipeline_image_repository_url",
    "model_package_group_name",
    "sns_topic_arn",
    "endpoint_name",
    "kubeflow_namespace",
    "subnet_ids",
    "security_group_ids",
}

BLOCK = re.compile(r'^(variable|output) "([A-Za-z0-9_]+)" \{\n(.*?)^\}', re.M | re.S)


def _blocks(directory: Path, kind: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted(directory.glob("*.tf")):
        for block_kind, name, body in BLOCK.findall(path.read_text()):
            if block_kind == kind:
                found[name] = body
    return found


def _code(directory: Path) -> str:
    return "\n".join(p.read_text() for p in sorted(directory.glob("*.tf")))


ALL_DIRS = [TERRAFORM_DIR / "envs" / e for e in ENV_ROOTS] + [
    TERRAFORM_DIR / "modules" / m for m in MODULES
]
DIR_IDS = [str(d.relative_to(TERRAFORM_DIR)) for d in ALL_DIRS]


def test_layout_has_the_modules_and_environments() -> None:
    assert {"storage", "identity", "registries", "observability", "ci", "platform"} <= set(MODULES)
    assert {"dev", "prod", "local"} <= set(ENV_ROOTS)


def test_fmt_check(make: Make) -> None:
    make("tf-fmt-check")


def test_validate_every_root(make: Make) -> None:
    result = make("tf-validate", timeout=300)
    for env in ENV_ROOTS:
        section = result.stdout.split(f"== terraform validate envs/{env}\n", 1)
        assert len(section) == 2, f"envs/{env} was not validated:\n{result.stdout}"
        assert section[1].lstrip().startswith("Success! The configuration is valid."), section[1]


@pytest.mark.parametrize("directory", ALL_DIRS, ids=DIR_IDS)
def test_every_variable_is_typed_described_and_used(directory: Path) -> None:
    variables = _blocks(directory, "variable")
    code = _code(directory)
    for name, body in variables.items():
        assert re.search(r"^\s+type\s+=", body, re.M), (
            f"{directory.name}: variable {name} has no type"
        )
        assert re.search(r'^\s+description\s+=\s+"[^"]{10,}', body, re.M), (
            f"{directory.name}: variable {name} has no description"
        )
        assert re.search(rf"\bvar\.{name}\b", code), f"{directory.name}: variable {name} is unused"


@pytest.mark.parametrize("directory", ALL_DIRS, ids=DIR_IDS)
def test_every_output_is_described(directory: Path) -> None:
    for name, body in _blocks(directory, "output").items():
        assert re.search(r'^\s+description\s+=\s+"[^"]{10,}', body, re.M), (
            f"{directory.name}: output {name} has no description"
        )


@pytest.mark.parametrize("env", ENV_ROOTS)
def test_roots_publish_the_settings_outputs(env: str) -> None:
    outputs = set(_blocks(TERRAFORM_DIR / "envs" / env, "output"))
    assert outputs >= SETTINGS_OUTPUTS, f"envs/{env} lacks {sorted(SETTINGS_OUTPUTS - outputs)}"
    platform = set(_blocks(TERRAFORM_DIR / "modules" / "platform", "output"))
    assert outputs == platform, "every root passes the platform module's outputs through"


@pytest.mark.parametrize("env", ENV_ROOTS)
def test_roots_pin_the_provider_and_configure_state(env: str) -> None:
    code = _code(TERRAFORM_DIR / "envs" / env)
    assert re.search(r'source\s+=\s+"hashicorp/aws"\s+version\s+=\s+"~> 5\.100"', code)
    assert re.search(r'required_version\s+=\s+">= 1\.5\.0"', code)
    if env == "local":
        assert 'backend "local" {}' in code
        assert "max_retries = 1" in code
    else:
        assert 'backend "s3" {}' in code, "dev and prod take their state settings at init"
        example = (TERRAFORM_DIR / "envs" / env / "backend.hcl.example").read_text()
        for key in ("bucket", "key", "region", "dynamodb_table", "encrypt"):
            assert re.search(rf"^{key}\s+=", example, re.M), f"backend.hcl.example lacks {key}"


def test_no_aws_managed_policy_or_full_access_anywhere() -> None:
    code = "\n".join(p.read_text() for p in TERRAFORM_DIR.rglob("*.tf"))
    assert "arn:aws:iam::aws:policy" not in code
    assert "FullAccess" not in code
    # The key policy's kms:* for the account root is how KMS delegates to IAM; the roles' policies
    # name their actions one by one.
    roles = _code(TERRAFORM_DIR / "modules" / "identity") + _code(TERRAFORM_DIR / "modules" / "ci")
    assert not re.search(r'"[a-z0-9-]+:\*"', roles), "a service-wide wildcard in a role policy"


def test_every_checkov_skip_says_why() -> None:
    skips = []
    for path in TERRAFORM_DIR.rglob("*.tf"):
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                skips.append((path.name, line.strip()))
                assert re.fullmatch(r"#checkov:skip=CKV2?_AWS_\d+:\S.{20,}", line.strip()), line
    assert skips, "expected the documented skips (logs bucket, key policy)"


def _default(directory: Path, name: str) -> str:
    body = _blocks(directory, "variable")[name]
    match = re.search(r"^\s+default\s+=\s+(.+)$", body, re.M)
    assert match, f"{directory.name}: variable {name} has no default"
    return match.group(1).strip()


@pytest.mark.parametrize(
    ("env", "may_approve", "retention"), [("dev", "true", "30"), ("prod", "false", "90")]
)
def test_only_dev_auto_approves_and_log_retention_per_env(
    env: str, may_approve: str, retention: str
) -> None:
    """prod keeps the human in the loop by default; dev approves itself only by its own flag."""
    root = TERRAFORM_DIR / "envs" / env
    assert _default(root, "pipeline_may_approve") == may_approve
    assert _default(root, "log_retention_days") == retention
    assert _default(root, "kubeflow_service_account") == '"skinlesion-pipeline-runner"'
    assert re.search(r"pipeline_may_approve\s+=\s+var\.pipeline_may_approve", _code(root))


def test_modules_default_to_no_self_approval_and_the_pipeline_service_account() -> None:
    """A root that passes nothing gets the Deny and the dedicated service account."""
    for module in ("identity", "platform"):
        directory = TERRAFORM_DIR / "modules" / module
        assert _default(directory, "pipeline_may_approve") == "false"
        assert _default(directory, "kubeflow_service_account") == '"skinlesion-pipeline-runner"'
    code = "\n".join(p.read_text() for p in TERRAFORM_DIR.rglob("*.tf"))
    assert not re.search(r'default\s+=\s+"default-editor"', code)
