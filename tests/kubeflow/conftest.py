"""Fixtures of the Kubeflow tests: the compiled training pipeline, a fake KFP API, params files."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from tests.kubeflow.fake_kfp import FakeKfp, FakeKfpState

from skinlesion.kubeflow.compiling import CompiledPipeline
from skinlesion.kubeflow.discovery import PipelineEntry

REPO_ROOT = Path(__file__).resolve().parents[2]
PIPELINES_DIR = REPO_ROOT / "pipelines"
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/skinlesion-pipeline:3f2a9c1d4e5b"
PIPELINE_ROOT = "s3://skinlesion-dev-models-123456789012/pipeline-root"
BASELINE_URI = "s3://skinlesion-dev-models-123456789012/pipeline-root/baseline/"
CREDENTIAL_VARIABLES = (
    "KFP_TOKEN",
    "KFP_TOKEN_FILE",
    "KFP_USERNAME",
    "KFP_PASSWORD",
    "KFP_PASSWORD_FILE",
    "KFP_COOKIES",
    "KFP_COOKIES_FILE",
    "KFP_HOST",
    "KFP_AUTH",
    "KFP_UI_URL",
    "KF_PIPELINES_ENDPOINT",
    "KF_PIPELINES_UI_ENDPOINT",
    "IMAGE_TAG",
)


@pytest.fixture(scope="session")
def training_entry() -> PipelineEntry:
    from skinlesion.kubeflow.discovery import get_pipeline

    return get_pipeline("training", PIPELINES_DIR)


@pytest.fixture(scope="session")
def compiled_training(training_entry: PipelineEntry) -> CompiledPipeline:
    """The training pipeline compiled with the default options (validated strictly)."""
    from skinlesion.kubeflow.compiling import compile_pipeline

    return compile_pipeline(training_entry)


@pytest.fixture(autouse=True)
def clean_kubeflow_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credential or KFP variable of the machine leaks into a test; no SA token is found."""
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "no-sa-token"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.config/kfp/context.json


@pytest.fixture
def fake_kfp() -> Iterator[FakeKfp]:
    with FakeKfp(FakeKfpState()) as fake:
        yield fake


@pytest.fixture
def tf_outputs(tmp_path: Path) -> Path:
    """Terraform outputs in the `terraform output -json` form, names as terraform/envs/dev has."""
    values = {
        "region": "eu-west-1",
        "name_prefix": "skinlesion-dev",
        "data_bucket": "skinlesion-dev-data-123456789012",
        "models_bucket": "skinlesion-dev-models-123456789012",
        "capture_bucket": "skinlesion-dev-capture-123456789012",
        "pipeline_root": PIPELINE_ROOT,
        "pipeline_image_repository_url": IMAGE.rsplit(":", 1)[0],
        "training_image_repository_url": IMAGE.rsplit(":", 1)[0].replace("pipeline", "training"),
        "inference_image_repository_url": IMAGE.rsplit(":", 1)[0].replace("pipeline", "inference"),
        "model_package_group_name": "skinlesion-dev",
        "endpoint_name": "skinlesion-dev",
        "subnet_ids": ["subnet-1", "subnet-2"],
    }
    path = tmp_path / "terraform-outputs-test.json"
    path.write_text(
        json.dumps(
            {k: {"value": v, "type": "string", "sensitive": False} for k, v in values.items()}
        )
    )
    return path


@pytest.fixture
def params_dir(tmp_path: Path, fake_kfp: FakeKfp) -> Path:
    """pipelines/params/dev.yaml, pointed at the fake KFP (an environment named ``test``)."""
    raw = yaml.safe_load((PIPELINES_DIR / "params" / "dev.yaml").read_text())
    raw["kubeflow"]["host"] = f"{fake_kfp.url}/pipeline"
    raw["kubeflow"]["namespace"] = "skinlesion-test"
    raw["kubeflow"]["experiment"] = "skinlesion-test"
    folder = tmp_path / "params"
    folder.mkdir()
    (folder / "test.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return folder


@pytest.fixture
def cli(
    params_dir: Path,
    tf_outputs: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Callable[..., tuple[int, str]]:
    """Run ``skinlesion kubeflow <command> --env test ...``; return (exit status, stdout)."""
    from skinlesion.cli import main

    monkeypatch.setenv("IMAGE_TAG", IMAGE.rsplit(":", 1)[1])
    monkeypatch.setenv("MONITORING_BASELINE_URI", BASELINE_URI)

    def run(command: str, *args: str) -> tuple[int, str]:
        status = main(
            [
                "kubeflow",
                command,
                *args,
                "--env",
                "test",
                "--params-dir",
                str(params_dir),
                "--tf-outputs",
                str(tf_outputs),
                "--pipelines-dir",
                str(PIPELINES_DIR),
                "--build-dir",
                str(tmp_path / "build"),
            ]
        )
        return status, capsys.readouterr().out

    return run
