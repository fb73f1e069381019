"""Submit and schedule against a fake KFP v2beta1 API (tests/kubeflow/fake_kfp.py).

The fake stands in for a real KFP API server, which cannot run here (no cluster). The tests check
what ``kfp.Client`` sends through our commands: the uploaded pipeline spec, the version name,
the run's runtime config (parameters, pipeline root), the service account, the cron trigger,
and the credentials on every request.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from tests.kubeflow.conftest import IMAGE, PIPELINE_ROOT, PIPELINES_DIR, REPO_ROOT
from tests.kubeflow.fake_kfp import API, FakeKfp

from skinlesion.kubeflow.submit import source_revision
from skinlesion.kubeflow.validation import load_documents, validate_documents

TOKEN = "kfp-test-token-1f0c6c2ad9b84e0f"

Cli = Callable[..., tuple[int, str]]


@pytest.fixture
def token_auth(fake_kfp: FakeKfp, monkeypatch: pytest.MonkeyPatch) -> str:
    fake_kfp.state.tokens = {TOKEN}
    monkeypatch.setenv("KFP_TOKEN", TOKEN)
    monkeypatch.setenv("KFP_AUTH", "token")
    return TOKEN


def _uploaded_spec(fake: FakeKfp, version_id: str) -> list[dict]:
    return load_documents(fake.state.uploads[version_id].decode())


def _tasks(spec: dict) -> list[dict]:
    tasks = list(spec["root"]["dag"]["tasks"].values())
    for component in spec["components"].values():
        tasks += list(component.get("dag", {}).get("tasks", {}).values())
    return tasks


def test_submit_uploads_a_version_named_by_the_commit_and_starts_a_run(
    cli: Cli, fake_kfp: FakeKfp, token_auth: str, tmp_path: Path
) -> None:
    status, out = cli("submit", "--pipeline", "training", "--set", "epochs=3")
    assert status == 0, out
    state = fake_kfp.state

    # Every API call carried the bearer token.
    assert state.api_requests()
    assert {r.headers.get("authorization") for r in state.api_requests()} == {f"Bearer {TOKEN}"}

    # The experiment was created in the profile namespace.
    [experiment] = state.experiments.values()
    assert experiment["display_name"] == "skinlesion-test"
    assert experiment["namespace"] == "skinlesion-test"

    # The pipeline was uploaded to the namespace, then the version named by the commit.
    [pipeline] = state.pipelines.values()
    assert pipeline["display_name"] == "skinlesion-training"
    assert pipeline["namespace"] == "skinlesion-test"
    # Two versions: the run's, then the retraining one (<version>-retrain, caching off).
    upload_version, retrain_upload = state.api_requests("POST", "/pipelines/upload_version")
    revision = source_revision(REPO_ROOT)
    name = upload_version.query["name"][0]
    assert name.startswith(revision.commit[:12])
    assert name.count("-") == (2 if revision.dirty else 1)
    assert revision.commit in upload_version.query["description"][0]
    [version] = [v for v in state.versions.values() if v["display_name"] == name]
    assert retrain_upload.query["name"][0].endswith("-retrain")
    assert retrain_upload.query["name"][0].startswith(revision.commit[:12])

    # The uploaded spec: exactly the file kept under the build dir, strictly valid, and
    # compiled for the environment (the ECR image, the S3 pipeline root).
    kept = tmp_path / "build" / "test" / "training.yaml"
    assert state.uploads[version["pipeline_version_id"]] == kept.read_bytes()
    documents = _uploaded_spec(fake_kfp, version["pipeline_version_id"])
    validate_documents(documents)
    images = {e["container"]["image"] for e in documents[0]["deploymentSpec"]["executors"].values()}
    assert images == {IMAGE}
    assert documents[0]["defaultPipelineRoot"] == PIPELINE_ROOT

    # The run: in the experiment, on that version, with the params file's arguments, the commit,
    # the override, the S3 pipeline root and the profile's service account.
    [create_run] = state.api_requests("POST", "/runs")
    body = create_run.json()
    assert body["experiment_id"] == experiment["experiment_id"]
    assert body["pipeline_version_reference"] == {
        "pipeline_id": pipeline["pipeline_id"],
        "pipeline_version_id": version["pipeline_version_id"],
    }
    assert body["service_account"] == "skinlesion-pipeline-runner"
    runtime = body["runtime_config"]
    assert runtime["pipeline_root"] == PIPELINE_ROOT
    parameters = runtime["parameters"]
    assert parameters["backend"] == "sagemaker"
    assert parameters["data_uri"] == "s3://skinlesion-dev-data-123456789012/isic2019"
    assert parameters["model_group"] == "skinlesion-dev"
    assert parameters["epochs"] == 3
    assert parameters["threshold"] == 0.6
    assert parameters["git_commit"] == revision.commit
    assert body["display_name"].startswith(f"training test {revision.short} ")

    # The run's URL in the KFP UI.
    [run] = state.runs.values()
    assert f"run URL: {fake_kfp.url}/pipeline/#/runs/details/{run['run_id']}" in out


def test_a_second_submit_reuses_the_pipeline_and_its_version(
    cli: Cli, fake_kfp: FakeKfp, token_auth: str
) -> None:
    assert cli("submit")[0] == 0
    assert cli("submit")[0] == 0
    state = fake_kfp.state
    assert len(state.api_requests("POST", "/pipelines/upload")) == 1
    # The run's version and the retraining version, each uploaded once.
    assert len(state.api_requests("POST", "/pipelines/upload_version")) == 2
    assert len(state.api_requests("POST", "/experiments")) == 1
    runs = [r.json() for r in state.api_requests("POST", "/runs")]
    assert len(runs) == 2
    assert runs[0]["pipeline_version_reference"] == runs[1]["pipeline_version_reference"]


@pytest.mark.parametrize(
    ("states", "expected_status", "expected_outcome"),
    [
        (["PENDING", "RUNNING", "SUCCEEDED"], 0, "SUCCEEDED"),
        (["RUNNING", "FAILED"], 1, "FAILED"),
        # The SDK's own wait would poll a cancelled run until its timeout.
        (["RUNNING", "CANCELING", "CANCELED"], 3, "CANCELED"),
    ],
)
def test_submit_wait_ends_on_the_runs_final_state(
    cli: Cli,
    fake_kfp: FakeKfp,
    token_auth: str,
    states: list[str],
    expected_status: int,
    expected_outcome: str,
) -> None:
    fake_kfp.state.run_states = states
    fake_kfp.state.run_error = "Task train failed: SageMaker job failed: ResourceLimitExceeded"
    status, out = cli("submit", "--wait", "--poll", "0.01", "--timeout", "60")
    assert status == expected_status, out
    assert f": {expected_outcome} after" in out
    polls = fake_kfp.state.api_requests("GET", "/runs/")
    assert len(polls) == len(states)
    if expected_outcome == "FAILED":
        assert "ResourceLimitExceeded" in out


def test_the_latest_version_is_found_for_a_run_started_from_a_step(
    cli: Cli, fake_kfp: FakeKfp, token_auth: str
) -> None:
    from skinlesion.kubeflow.client import connect
    from skinlesion.kubeflow.settings import AuthMode, KubeflowSettings

    assert cli("submit")[0] == 0
    settings = KubeflowSettings(
        host=f"{fake_kfp.url}/pipeline", namespace="skinlesion-test", auth=AuthMode.TOKEN
    )
    latest = connect(settings).latest_version("skinlesion-training")
    uploaded = fake_kfp.state.api_requests("POST", "/pipelines/upload_version")[-1]
    assert latest.version_name == uploaded.query["name"][0]


def test_wait_gives_up_on_a_run_stuck_in_canceling(fake_kfp: FakeKfp) -> None:
    from skinlesion.kubeflow.client import connect
    from skinlesion.kubeflow.settings import AuthMode, KubeflowSettings
    from skinlesion.kubeflow.submit import RunOutcome, wait_for_run

    fake_kfp.state.runs["r1"] = {"run_id": "r1", "display_name": "stuck"}
    fake_kfp.state.run_states = ["RUNNING", "CANCELING"]
    settings = KubeflowSettings(host=fake_kfp.url, namespace="ns", auth=AuthMode.NONE)
    ticks = iter(range(0, 10_000, 60))  # each poll is a minute later
    result = wait_for_run(
        connect(settings),
        "r1",
        poll_seconds=0,
        cancel_grace_seconds=300,
        sleep=lambda _: None,
        clock=lambda: float(next(ticks)),
    )
    assert result.outcome == RunOutcome.CANCELED
    assert result.state == "CANCELING"
    assert result.outcome.exit_code == 3


def test_connect_works_inside_a_running_component(fake_kfp: FakeKfp) -> None:
    """In a component (_KFP_RUNTIME=true, the executor imported first) kfp binds no Client and
    importing kfp.client alone hits a circular import; connect() must still build its client."""
    script = (
        "import kfp.dsl.executor_main\n"
        "from skinlesion.kubeflow.client import connect\n"
        "from skinlesion.kubeflow.settings import AuthMode, KubeflowSettings\n"
        f"settings = KubeflowSettings(host={fake_kfp.url!r}, namespace='ns', auth=AuthMode.NONE)\n"
        "print(connect(settings).experiment_id('monitoring-retrain'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=os.environ | {"_KFP_RUNTIME": "true"},
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() in fake_kfp.state.experiments


def test_standalone_kfp_without_namespace_is_asked_for_its_mode(
    cli: Cli, fake_kfp: FakeKfp, params_dir: Path
) -> None:
    """kfp.Client calls healthz when no namespace is given (a single-user KFP)."""
    fake_kfp.state.multi_user = False
    path = params_dir / "test.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["kubeflow"]["namespace"] = ""
    raw["kubeflow"]["auth"] = "none"
    path.write_text(yaml.safe_dump(raw))
    status, out = cli("submit")
    assert status == 0, out
    assert fake_kfp.state.api_requests("GET", "/healthz")
    [experiment] = fake_kfp.state.experiments.values()
    assert experiment["namespace"] == ""


def test_rejected_credentials_fail_with_a_hint_and_no_secret(
    cli: Cli,
    fake_kfp: FakeKfp,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wrong = "kfp-wrong-token-77aa90d3c1"
    fake_kfp.state.tokens = {TOKEN}
    monkeypatch.setenv("KFP_TOKEN", wrong)
    caplog.set_level("DEBUG")
    status, out = cli("submit")
    assert status == 2
    assert "HTTP 401" in caplog.text
    assert "KFP_TOKEN" in caplog.text  # the hint names the credentials to check
    assert wrong not in caplog.text + out + capsys.readouterr().err
    assert not fake_kfp.state.runs


def test_unauthenticated_requests_redirected_to_a_login_page_are_explained(
    cli: Cli, fake_kfp: FakeKfp, caplog: pytest.LogCaptureFixture
) -> None:
    fake_kfp.state.cookies = {"AWSELBAuthSessionCookie-0": "x" * 40}
    fake_kfp.state.redirect_unauthenticated = True
    status, _ = cli("submit")
    assert status == 2
    assert "not authenticated" in caplog.text or "login page" in caplog.text


def test_alb_session_cookies_are_sent_on_every_request(
    cli: Cli, fake_kfp: FakeKfp, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cookies = {"AWSELBAuthSessionCookie-0": "a0" * 30, "AWSELBAuthSessionCookie-1": "b1" * 30}
    fake_kfp.state.cookies = cookies
    monkeypatch.setenv("KFP_COOKIES", "; ".join(f"{k}={v}" for k, v in cookies.items()))
    caplog.set_level("DEBUG")
    status, out = cli("submit")  # auth: auto picks the cookies
    assert status == 0, out
    for request in fake_kfp.state.api_requests():
        for name, value in cookies.items():
            assert f"{name}={value}" in request.headers["cookie"]
    for value in cookies.values():
        assert value not in caplog.text + out


def test_in_cluster_service_account_token_is_read_for_each_request(
    cli: Cli, fake_kfp: FakeKfp, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    token_file = tmp_path / "sa-token"
    token_file.write_text("sa-token-one-5f1e2d3c")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token_file))
    fake_kfp.state.tokens = {"sa-token-one-5f1e2d3c", "sa-token-two-9a8b7c6d"}
    assert cli("submit")[0] == 0
    token_file.write_text("sa-token-two-9a8b7c6d")  # the kubelet rotated it
    assert cli("submit")[0] == 0
    sent = [r.headers["authorization"] for r in fake_kfp.state.api_requests()]
    assert sent[0] == "Bearer sa-token-one-5f1e2d3c"
    assert sent[-1] == "Bearer sa-token-two-9a8b7c6d"


# -- schedules ---------------------------------------------------------------------------------
SCHEDULED = {
    "skinlesion-training-monthly",
    "skinlesion-monitoring-drift-hourly",
    "skinlesion-monitoring-quality-6h",
}


def _recurring_by_name(fake: FakeKfp, name: str) -> list[dict]:
    return [r for r in fake.state.recurring_runs.values() if r["display_name"] == name]


def _recurring_names(fake: FakeKfp) -> list[str]:
    return sorted(r["display_name"] for r in fake.state.recurring_runs.values())


def test_schedule_creates_the_monthly_training_run_and_a_second_apply_replaces_it(
    cli: Cli, fake_kfp: FakeKfp, token_auth: str
) -> None:
    status, out = cli("schedule")
    assert status == 0, out
    [first] = _recurring_by_name(fake_kfp, "skinlesion-training-monthly")
    # Every enabled entry of schedules.yaml, once each: monthly training, hourly drift and
    # 6-hourly quality monitoring.
    assert _recurring_names(fake_kfp) == sorted(SCHEDULED)
    first_ids = set(fake_kfp.state.recurring_runs)

    requests = fake_kfp.state.api_requests("POST", "/recurringruns")
    assert sorted(r.json()["display_name"] for r in requests) == sorted(SCHEDULED)
    [body] = [
        r.json() for r in requests if r.json()["display_name"] == "skinlesion-training-monthly"
    ]
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 3 1 * *"}}
    assert body["mode"] == "ENABLE"
    assert body["max_concurrency"] == 1
    assert body["no_catchup"] is True
    assert body["service_account"] == "skinlesion-pipeline-runner"
    assert body["runtime_config"]["pipeline_root"] == PIPELINE_ROOT
    assert body["runtime_config"]["parameters"]["backend"] == "sagemaker"
    assert body["experiment_id"] == next(iter(fake_kfp.state.experiments))
    version_id = body["pipeline_version_reference"]["pipeline_version_id"]
    # enable_caching: false in schedules.yaml: the scheduled spec caches nothing.
    spec = _uploaded_spec(fake_kfp, version_id)[0]
    assert not any(t.get("cachingOptions", {}).get("enableCache") for t in _tasks(spec))
    assert f"#/recurringrun/details/{first['recurring_run_id']}" in out

    status, out = cli("schedule")
    assert status == 0, out
    [second] = _recurring_by_name(fake_kfp, "skinlesion-training-monthly")
    assert second["recurring_run_id"] != first["recurring_run_id"]
    assert _recurring_names(fake_kfp) == sorted(SCHEDULED)
    deletes = fake_kfp.state.api_requests("DELETE", "/recurringruns/")
    assert sorted(d.path.rsplit("/", 1)[1] for d in deletes) == sorted(first_ids)
    assert f"replaced {first['recurring_run_id']}" in out
    # Same commit, same spec: each version (training, its -retrain version, monitoring) was
    # uploaded once.
    names = [
        r.query["name"][0] for r in fake_kfp.state.api_requests("POST", "/pipelines/upload_version")
    ]
    assert len(names) == 3 and sum(n.endswith("-retrain") for n in names) == 1


def test_schedules_lists_and_pause_resume_delete_act_by_name(
    cli: Cli, fake_kfp: FakeKfp, token_auth: str
) -> None:
    assert cli("schedule")[0] == 0
    [recurring] = _recurring_by_name(fake_kfp, "skinlesion-training-monthly")
    recurring_id = recurring["recurring_run_id"]

    status, out = cli("schedules")
    assert status == 0
    assert "skinlesion-training-monthly" in out and "cron 0 0 3 1 * *" in out and "ENABLED" in out

    assert cli("pause-schedule", "skinlesion-training-monthly")[0] == 0
    assert fake_kfp.state.api_requests("POST", f"/recurringruns/{recurring_id}:disable")
    assert fake_kfp.state.recurring_runs[recurring_id]["status"] == "DISABLED"
    assert "DISABLED" in cli("schedules")[1]

    assert cli("resume-schedule", "skinlesion-training-monthly")[0] == 0
    assert fake_kfp.state.api_requests("POST", f"/recurringruns/{recurring_id}:enable")
    assert fake_kfp.state.recurring_runs[recurring_id]["status"] == "ENABLED"

    assert cli("delete-schedule", "skinlesion-training-monthly")[0] == 0
    assert _recurring_names(fake_kfp) == sorted(SCHEDULED - {"skinlesion-training-monthly"})
    for name in SCHEDULED - {"skinlesion-training-monthly"}:
        assert cli("delete-schedule", name)[0] == 0
    assert not fake_kfp.state.recurring_runs
    assert "no schedules" in cli("schedules")[1]


def test_acting_on_an_unknown_schedule_names_the_existing_ones(
    cli: Cli, fake_kfp: FakeKfp, token_auth: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert cli("schedule")[0] == 0
    assert cli("pause-schedule", "nightly")[0] == 2
    assert "No schedule named 'nightly'" in caplog.text
    assert "skinlesion-training-monthly" in caplog.text


def test_schedule_of_a_missing_pipeline_is_refused_until_disabled(
    cli: Cli, fake_kfp: FakeKfp, token_auth: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    schedules = yaml.safe_load((PIPELINES_DIR / "schedules.yaml").read_text())
    for entry in schedules["schedules"]:
        entry["enabled"] = True
    path = tmp_path / "schedules.yaml"
    path.write_text(yaml.safe_dump(schedules))
    has_monitoring = (PIPELINES_DIR / "monitoring.py").exists()
    status, _ = cli("schedule", "--schedules-file", str(path))
    if has_monitoring:
        assert status == 0
        assert len(fake_kfp.state.recurring_runs) == len(schedules["schedules"])
    else:
        assert status == 2
        assert "pipeline 'monitoring', which does not exist" in caplog.text
        assert not fake_kfp.state.recurring_runs  # nothing half-applied


def test_api_paths_are_the_kfp_v2beta1_ones(cli: Cli, fake_kfp: FakeKfp, token_auth: str) -> None:
    assert cli("schedule")[0] == 0
    assert cli("submit")[0] == 0
    paths = {(r.method, r.path.split("/")[3]) for r in fake_kfp.state.api_requests()}
    assert all(r.path.startswith(API) for r in fake_kfp.state.api_requests())
    assert {("GET", "experiments"), ("POST", "experiments"), ("GET", "pipelines")} <= paths
    assert {("POST", "pipelines"), ("POST", "runs"), ("POST", "recurringruns")} <= paths
    assert {("GET", "recurringruns")} <= paths


def test_the_run_that_retraining_starts_uses_a_version_with_caching_off_on_every_task(
    cli: Cli, fake_kfp: FakeKfp, token_auth: str, tmp_path: Path
) -> None:
    """make submit uploads <version>-retrain; the trigger starts it; its spec caches nothing."""
    from skinlesion.kubeflow.settings import AuthMode, KubeflowSettings
    from skinlesion.monitoring.retrain import request_retraining

    assert cli("submit", "--pipeline", "training")[0] == 0
    [submitted] = fake_kfp.state.api_requests("POST", "/runs")
    own_version_id = submitted.json()["pipeline_version_reference"]["pipeline_version_id"]
    fake_kfp.state.runs.clear()  # the submitted run would hold the trigger back (in flight)
    settings = KubeflowSettings(
        host=f"{fake_kfp.url}/pipeline",
        namespace="skinlesion-test",
        experiment="skinlesion-test",
        auth=AuthMode.TOKEN,
    )
    made = request_retraining(reason="drift", data_uri="s3://data/new", kubeflow=settings)
    assert made.status == "submitted" and made.pipeline_version.endswith("-retrain")
    created = fake_kfp.state.api_requests("POST", "/runs")[-1].json()
    version_id = created["pipeline_version_reference"]["pipeline_version_id"]
    assert fake_kfp.state.versions[version_id]["display_name"] == made.pipeline_version
    spec = _uploaded_spec(fake_kfp, version_id)[0]
    tasks = _tasks(spec)
    assert tasks and all(not t.get("cachingOptions", {}).get("enableCache") for t in tasks)
    # The run's own version (make submit's) keeps its caching: preprocess/train are cached.
    assert own_version_id != version_id
    own_tasks = _tasks(_uploaded_spec(fake_kfp, own_version_id)[0])
    assert any(t.get("cachingOptions", {}).get("enableCache") for t in own_tasks)
