"""make push: ECR login, tag and push of the three images, from Terraform's outputs.

No Docker engine here: a stand-in ``docker`` records what it is asked to do. ECR's
GetAuthorizationToken comes from moto.
"""

from __future__ import annotations

import importlib.util
import json
import stat
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from moto import mock_aws
from tests.containers.helpers import CONTAINERS

from skinlesion.aws import AwsClients

REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
OUTPUTS = {
    "region": "eu-west-1",
    "training_image_repository_url": f"{REGISTRY}/skinlesion-dev/training",
    "inference_image_repository_url": f"{REGISTRY}/skinlesion-dev/inference",
    "pipeline_image_repository_url": f"{REGISTRY}/skinlesion-dev/pipeline",
}


def load_publish() -> ModuleType:
    spec = importlib.util.spec_from_file_location("publish", CONTAINERS / "publish.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["publish"] = module
    spec.loader.exec_module(module)
    return module


publish = load_publish()


@pytest.fixture
def fake_docker(tmp_path: Path) -> tuple[Path, Path]:
    """A `docker` that logs each call (arguments and standard input) as a JSON line."""
    log = tmp_path / "docker.log"
    script = tmp_path / "docker"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        "data = sys.stdin.read() if '--password-stdin' in sys.argv else ''\n"
        f"with open({str(log)!r}, 'a') as f:\n"
        "    f.write(json.dumps({'args': sys.argv[1:], 'stdin': data}) + '\\n')\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script, log


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def calls(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_push_logs_in_once_then_tags_and_pushes_each_image(
    fake_docker: tuple[Path, Path], aws_credentials: None
) -> None:
    docker, log = fake_docker
    with mock_aws():
        uris = publish.push(
            OUTPUTS, ["training", "inference", "pipeline"], "0123abcd", docker=str(docker),
            clients=AwsClients("eu-west-1"),
        )  # fmt: skip
    assert uris == [f"{OUTPUTS[f'{n}_image_repository_url']}:0123abcd" for n in publish.IMAGES]
    recorded = calls(log)
    assert recorded[0]["args"] == ["login", "--username", "AWS", "--password-stdin", REGISTRY]
    assert recorded[0]["stdin"] == "123456789012-auth-token"  # moto's token, after "AWS:"
    assert [c["args"] for c in recorded[1:]] == [
        ["tag", "skinlesion-training:0123abcd", uris[0]],
        ["push", uris[0]],
        ["tag", "skinlesion-inference:0123abcd", uris[1]],
        ["push", uris[1]],
        ["tag", "skinlesion-pipeline:0123abcd", uris[2]],
        ["push", uris[2]],
    ]
    # The password travels on standard input only, never as an argument.
    assert all("123456789012-auth-token" not in c["args"] for c in recorded)


def test_push_names_what_is_missing(fake_docker: tuple[Path, Path]) -> None:
    docker, _ = fake_docker
    with pytest.raises(publish.PublishError, match="lack pipeline_image_repository_url"):
        publish.remote_image({"region": "eu-west-1"}, "pipeline", "t")
    with pytest.raises(publish.PublishError, match=r"Unknown image 'gpu'\. Accepted: training"):
        publish.remote_image(OUTPUTS, "gpu", "t")
    with pytest.raises(publish.PublishError, match="No image tag"):
        publish.push(OUTPUTS, ["pipeline"], "", docker=str(docker))
    with pytest.raises(publish.PublishError, match="not on PATH"):
        publish.push(OUTPUTS, ["pipeline"], "t", docker="no-such-docker-client")


def test_uri_command_prints_the_pipeline_image(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({k: {"value": v} for k, v in OUTPUTS.items()}))
    result = subprocess.run(
        [sys.executable, str(CONTAINERS / "publish.py"), "--outputs", str(outputs), "--tag", "abc",
         "uri", "pipeline"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{REGISTRY}/skinlesion-dev/pipeline:abc"
