"""Retraining through the KFP API (a loopback fake of the KFP server), and its local record."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.kubeflow.fake_kfp import API, FakeKfp, FakeKfpState

from skinlesion.kubeflow.settings import IN_CLUSTER_HOST, AuthMode, KubeflowSettings
from skinlesion.monitoring.retrain import (
    REQUESTS_FILE,
    RetrainingError,
    kubeflow_settings,
    request_retraining,
    training_arguments,
)

NAMESPACE = "skinlesion-dev"


def add_training_pipeline(state: FakeKfpState, versions: tuple[str, ...]) -> str:
    """The training pipeline as `make submit` leaves it: uploaded, with these versions."""
    state.pipelines["p-1"] = {
        "pipeline_id": "p-1",
        "display_name": "skinlesion-training",
        "namespace": NAMESPACE,
        "created_at": "2024-05-01T03:00:00Z",
    }
    for number, name in enumerate(versions):
        state.versions[f"v-{number}"] = {
            "pipeline_id": "p-1",
            "pipeline_version_id": f"v-{number}",
            "display_name": name,
            "created_at": f"2024-05-0{number + 1}T03:00:00Z",
        }
    return "p-1"


@pytest.fixture
def fake_kfp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKfp]:
    for name in ("KFP_TOKEN", "KFP_TOKEN_FILE", "KFP_USERNAME", "KFP_PASSWORD", "KFP_COOKIES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "no-token"))
    with FakeKfp(FakeKfpState()) as fake:
        add_training_pipeline(fake.state, ("abc123-11111111", "def456-22222222"))
        yield fake


def test_in_cluster_means_the_cluster_api_the_pods_namespace_and_its_token(tmp_path: Path) -> None:
    namespace_file = tmp_path / "namespace"
    namespace_file.write_text("skinlesion-prod\n")
    settings = kubeflow_settings("in-cluster", namespace_file=namespace_file)
    assert settings.host == IN_CLUSTER_HOST
    assert settings.namespace == "skinlesion-prod"
    assert settings.auth == AuthMode.SA_TOKEN
    assert kubeflow_settings("") is None


def test_the_newest_training_version_is_started_on_the_current_data(
    fake_kfp: FakeKfp, tmp_path: Path
) -> None:
    settings = KubeflowSettings(host=fake_kfp.url, namespace=NAMESPACE, experiment="monitoring")
    made = request_retraining(
        reason="data drift (embeddings)",
        data_uri="s3://data/isic2019",
        arguments={"epochs": 10.0, "model_group": "skinlesion-dev", "backend": "sagemaker"},
        kubeflow=settings,
        record_dir=tmp_path,
    )
    assert made.status == "submitted" and made.pipeline_version == "def456-22222222"
    [request] = fake_kfp.state.api_requests("POST", "/runs")
    body = request.json()
    assert body["pipeline_version_reference"] == {
        "pipeline_id": "p-1",
        "pipeline_version_id": "v-1",
    }
    parameters = body["runtime_config"]["parameters"]
    assert parameters == {
        "data_uri": "s3://data/isic2019",
        "epochs": 10,
        "model_group": "skinlesion-dev",
        "backend": "sagemaker",
    }
    assert body["display_name"].startswith("skinlesion-training retrain ")
    [experiment] = fake_kfp.state.experiments.values()
    assert experiment["display_name"] == "monitoring" and experiment["namespace"] == NAMESPACE
    [run] = fake_kfp.state.runs.values()
    assert made.run_id == run["run_id"]
    assert made.run_url.endswith(f"#/runs/details/{made.run_id}")
    [recorded] = (tmp_path / REQUESTS_FILE).read_text().splitlines()
    assert json.loads(recorded)["run_id"] == made.run_id


def test_the_service_account_token_is_what_signs_the_request(
    fake_kfp: FakeKfp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = tmp_path / "token"
    token.write_text("projected-sa-token-4e1d")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    fake_kfp.state.tokens = {"projected-sa-token-4e1d"}
    settings = KubeflowSettings(host=fake_kfp.url, namespace=NAMESPACE, auth=AuthMode.SA_TOKEN)
    made = request_retraining(reason="quality drop", data_uri="s3://data/new", kubeflow=settings)
    assert made.status == "submitted"
    sent = {r.headers.get("authorization") for r in fake_kfp.state.api_requests()}
    assert sent == {"Bearer projected-sa-token-4e1d"}
    assert all(r.path.startswith(API) for r in fake_kfp.state.api_requests())


def test_a_missing_training_pipeline_is_a_clear_error(fake_kfp: FakeKfp) -> None:
    fake_kfp.state.pipelines.clear()
    settings = KubeflowSettings(host=fake_kfp.url, namespace=NAMESPACE)
    with pytest.raises(RetrainingError, match="upload it first"):
        request_retraining(reason="drift", data_uri="s3://d", kubeflow=settings)
    assert not fake_kfp.state.api_requests("POST", "/runs")


def test_without_a_host_the_request_is_recorded_only(tmp_path: Path) -> None:
    made = request_retraining(reason="drift", data_uri="/data/isic", record_dir=tmp_path)
    assert made.status == "recorded" and made.run_id == ""
    assert json.loads((tmp_path / REQUESTS_FILE).read_text())["arguments"] == {
        "data_uri": "/data/isic"
    }
    with pytest.raises(RetrainingError, match="data_uri"):
        training_arguments("", {"epochs": 2})
