"""Retraining through the KFP API (a loopback fake of the KFP server), and its local record."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
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
    """The training pipeline as `make submit` leaves it: uploaded, with these versions, each
    followed by its retraining version (``<name>-retrain``, caching off)."""
    state.pipelines["p-1"] = {
        "pipeline_id": "p-1",
        "display_name": "skinlesion-training",
        "namespace": NAMESPACE,
        "created_at": "2024-05-01T03:00:00Z",
    }
    names = [n for name in versions for n in (name, f"{name}-retrain")]
    for number, name in enumerate(names):
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
    assert settings.service_account == ""  # not told: the server's default
    # The trigger's pod is told its own service account (spec.serviceAccountName).
    told = kubeflow_settings(
        "in-cluster",
        namespace_file=namespace_file,
        environ={"SKINLESION_RUN_SERVICE_ACCOUNT": "skinlesion-pipeline-runner"},
    )
    assert told.service_account == "skinlesion-pipeline-runner"
    assert kubeflow_settings("") is None


def test_the_newest_retraining_version_is_started_on_the_current_data(
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
    assert made.status == "submitted" and made.pipeline_version == "def456-22222222-retrain"
    [request] = fake_kfp.state.api_requests("POST", "/runs")
    body = request.json()
    assert body["pipeline_version_reference"] == {
        "pipeline_id": "p-1",
        "pipeline_version_id": "v-3",
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


def test_no_retraining_version_is_a_clear_error(fake_kfp: FakeKfp) -> None:
    for version in [v for v in fake_kfp.state.versions.values()]:
        if version["display_name"].endswith("-retrain"):
            del fake_kfp.state.versions[version["pipeline_version_id"]]
    settings = KubeflowSettings(host=fake_kfp.url, namespace=NAMESPACE)
    with pytest.raises(RetrainingError, match=r"no retraining version .*make submit"):
        request_retraining(reason="drift", data_uri="s3://d", kubeflow=settings)
    assert not fake_kfp.state.api_requests("POST", "/runs")


def _alarm(fake: FakeKfp, record_dir: Path, **kwargs: object) -> object:
    settings = KubeflowSettings(host=fake.url, namespace=NAMESPACE, experiment="skinlesion-dev")
    return request_retraining(
        reason="data drift (embeddings)",
        data_uri="s3://data/isic2019",
        kubeflow=settings,
        record_dir=record_dir,
        **kwargs,  # type: ignore[arg-type]
    )


def test_two_alarms_inside_the_cooldown_start_one_training_run(
    fake_kfp: FakeKfp, tmp_path: Path
) -> None:
    first = _alarm(fake_kfp, tmp_path)
    assert first.status == "submitted"
    [run] = fake_kfp.state.runs.values()
    assert run["state"] == "PENDING"

    # An hour later drift still holds: the run is in flight, so nothing new starts.
    second = _alarm(fake_kfp, tmp_path)
    assert second.status == "skipped" and second.run_id == ""
    assert second.blocking_run_id == run["run_id"]
    assert f"training run {run['run_id']} is PENDING" in second.skip_reason
    # Finished, but created inside the 24 h cooldown: still nothing.
    run["state"] = "SUCCEEDED"
    third = _alarm(fake_kfp, tmp_path)
    assert third.status == "skipped"
    assert "inside the 24 h cooldown" in third.skip_reason
    assert len(fake_kfp.state.api_requests("POST", "/runs")) == 1
    assert len(fake_kfp.state.runs) == 1

    # The skips are on record with their reasons, next to the run that was started.
    records = [json.loads(line) for line in (tmp_path / REQUESTS_FILE).read_text().splitlines()]
    assert [r["status"] for r in records] == ["submitted", "skipped", "skipped"]
    assert all(r["skip_reason"] for r in records[1:])

    # The trigger asked the server, with filters the server accepts (the stand-in answers 400
    # to what KFP refuses), for the experiment's runs.
    lists = fake_kfp.state.api_requests("GET", "/runs")
    assert lists and all(r.query["experiment_id"] for r in lists)
    filters = [json.loads(r.query["filter"][0]) for r in lists]
    assert {
        "key": "state",
        "operation": "IN",
        "string_values": {"values": ["PENDING", "RUNNING"]},
    } in [f["predicates"][0] for f in filters]


def test_after_the_cooldown_a_new_run_starts(fake_kfp: FakeKfp, tmp_path: Path) -> None:
    first = _alarm(fake_kfp, tmp_path)
    [run] = fake_kfp.state.runs.values()
    run["state"] = "SUCCEEDED"
    run["created_at"] = (datetime.now(UTC) - timedelta(hours=25)).strftime("%Y-%m-%dT%H:%M:%SZ")
    second = _alarm(fake_kfp, tmp_path)
    assert second.status == "submitted" and second.run_id != first.run_id
    # A shorter cooldown is a parameter; 0 turns it off.
    run_two = fake_kfp.state.runs[second.run_id]
    run_two["state"] = "FAILED"
    assert _alarm(fake_kfp, tmp_path, cooldown_hours=0).status == "submitted"
    with pytest.raises(RetrainingError, match="cooldown_hours"):
        _alarm(fake_kfp, tmp_path, cooldown_hours=-1)


def test_a_long_training_run_in_flight_blocks_past_the_cooldown(
    fake_kfp: FakeKfp, tmp_path: Path
) -> None:
    _alarm(fake_kfp, tmp_path)
    [run] = fake_kfp.state.runs.values()
    run["state"] = "RUNNING"
    run["created_at"] = (datetime.now(UTC) - timedelta(hours=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    made = _alarm(fake_kfp, tmp_path)
    assert made.status == "skipped" and "is RUNNING" in made.skip_reason


def test_runs_of_other_pipelines_do_not_hold_retraining_back(
    fake_kfp: FakeKfp, tmp_path: Path
) -> None:
    _alarm(fake_kfp, tmp_path, cooldown_hours=0)
    [run] = fake_kfp.state.runs.values()
    # The monitoring run that fired the alarm is itself RUNNING in the same experiment.
    run["pipeline_version_reference"] = {"pipeline_id": "p-monitoring", "pipeline_version_id": "m"}
    run["state"] = "RUNNING"
    assert _alarm(fake_kfp, tmp_path).status == "submitted"


def test_the_stand_in_refuses_filters_the_server_refuses(fake_kfp: FakeKfp) -> None:
    """backend/src/apiserver/filter/filter.go (checkPredicate) and list/list.go at 2.2.0."""
    import urllib.request
    from urllib.error import HTTPError
    from urllib.parse import urlencode

    experiment = {"experiment_id": "e-1", "display_name": "x", "namespace": NAMESPACE}
    fake_kfp.state.experiments["e-1"] = experiment

    def status(**query: str) -> tuple[int, str]:
        url = f"{fake_kfp.url}{API}/runs?{urlencode({'experiment_id': 'e-1', **query})}"
        try:
            with urllib.request.urlopen(url) as response:
                return response.status, response.read().decode()
        except HTTPError as error:
            return error.code, error.read().decode()

    def predicate(**fields: object) -> str:
        return json.dumps({"predicates": [fields]})

    assert (
        status(
            filter=predicate(key="state", operation="IN", string_values={"values": ["RUNNING"]})
        )[0]
        == 200
    )
    code, body = status(filter=predicate(key="state", operation="IN", string_value="RUNNING"))
    assert code == 400 and "cannot use IN operator with scalar type string" in body
    code, body = status(filter=predicate(key="pipeline_id", operation="EQUALS", string_value="p"))
    assert code == 400 and "unrecognized field 'pipeline_id'" in body
    code, body = status(
        filter=predicate(key="state", operation="EQUALS", string_values={"values": ["A"]})
    )
    assert code == 400 and "cannot use scalar operator EQUALS on array type []string" in body
    code, body = status(filter=json.dumps({"predicates": [], "op": 1}))
    assert code == 400 and "failed to parse valid filter" in body
    code, body = status(sort_by="created_at newest")
    assert code == 400 and "invalid sort by format" in body
    code, body = status(sort_by="pipeline desc")
    assert code == 400 and "Invalid sorting field" in body
