"""The monitoring pipeline under kfp.local (SubprocessRunner) on the local backend.

Nothing is mocked: each component runs in a subprocess, the monitor runs its job as a
subprocess over the captured traffic, and on an alarm the retraining step starts the training
pipeline through the KFP API of a loopback fake KFP server (the real server needs a cluster).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.kubeflow.fake_kfp import FakeKfp, FakeKfpState
from tests.monitoring.conftest import DRIFTED_HOUR, ENDPOINT, MonitoringSetup
from tests.monitoring.test_retrain import NAMESPACE, add_training_pipeline

pytestmark = pytest.mark.slow


@pytest.fixture
def local_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "local"
    monkeypatch.setenv("SKINLESION_LOCAL_ROOT", str(root))
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "no-token"))
    for name in ("KFP_TOKEN", "KFP_TOKEN_FILE", "KFP_USERNAME", "KFP_PASSWORD", "KFP_COOKIES"):
        monkeypatch.delenv(name, raising=False)
    return root


@pytest.fixture
def fake_kfp() -> Iterator[FakeKfp]:
    with FakeKfp(FakeKfpState()) as fake:
        add_training_pipeline(fake.state, ("abc123-11111111",))
        yield fake


def run_pipeline(setup: MonitoringSetup, pipeline_root: Path, capture: Path, **arguments) -> Path:  # type: ignore[no-untyped-def]
    """Run the monitoring pipeline once; return its run folder."""
    from kfp import local

    from pipelines.monitoring import monitoring_pipeline

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root))
    monitoring_pipeline(
        backend="local",
        endpoint_name=ENDPOINT,
        baseline_uri=str(setup.baseline),
        capture_uri=str(capture),
        window_hours=0,
        data_uri=str(setup.root / "data"),
        **arguments,
    )
    [run] = list(pipeline_root.iterdir())
    return run


def only_hour(setup: MonitoringSetup, target: Path, hour: str) -> Path:
    """A capture root holding one hour of the endpoint's traffic (window_hours=0 reads it all)."""
    source = setup.capture_prefix
    for path in source.rglob("*.jsonl"):
        relative = path.relative_to(setup.capture)
        if relative.parts[-2] == hour:
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            (target / relative).write_bytes(path.read_bytes())
    return target


def test_undrifted_traffic_takes_no_branch(
    monitoring_setup: MonitoringSetup, tmp_path: Path, local_root: Path
) -> None:
    capture = only_hour(monitoring_setup, tmp_path / "capture", "12")
    run = run_pipeline(monitoring_setup, tmp_path / "root", capture)
    summary = json.loads((run / "monitor" / "output" / "monitoring_summary.json").read_text())
    assert summary["alarm"] is False and summary["window"]["images"] == 96
    assert (run / "monitor" / "report").read_text().startswith("<!DOCTYPE html>")
    assert not (run / "notify").exists() and not (run / "trigger-retraining").exists()
    # Nothing notified, nothing requested; the window's metrics were recorded (CloudWatch's
    # shape, as the SageMaker backend would publish them).
    assert sorted(p.name for p in (local_root / "monitoring").iterdir()) == ["metrics.jsonl"]


def test_drifted_traffic_notifies_and_starts_the_training_pipeline(
    monitoring_setup: MonitoringSetup, tmp_path: Path, local_root: Path, fake_kfp: FakeKfp
) -> None:
    capture = only_hour(monitoring_setup, tmp_path / "capture", f"{DRIFTED_HOUR:%H}")
    run = run_pipeline(
        monitoring_setup,
        tmp_path / "root",
        capture,
        training_arguments={"epochs": 2, "model_group": "retrained"},
        kfp_host=fake_kfp.url,
        kfp_namespace=NAMESPACE,
        kfp_experiment="skinlesion-monitoring-test",
    )
    summary = json.loads((run / "monitor" / "output" / "monitoring_summary.json").read_text())
    assert summary["alarm"] is True and summary["data_drift"] is True
    # Notified: locally a log line and a record of what SNS would have carried.
    [note] = (local_root / "monitoring" / "notifications.jsonl").read_text().splitlines()
    note = json.loads(note)
    assert note["channel"] == "log" and "data drift" in note["subject"]
    assert "baseline_drift_check" in note["message"]
    # Retraining: a run of the training pipeline, created through the KFP API.
    [created] = fake_kfp.state.api_requests("POST", "/runs")
    body = created.json()
    assert body["pipeline_version_reference"]["pipeline_id"] == "p-1"
    assert body["runtime_config"]["parameters"] == {
        "backend": "local",
        "data_uri": str(monitoring_setup.root / "data"),
        "epochs": 2,
        "model_group": "retrained",
    }
    [requested] = (local_root / "monitoring" / "retraining_requests.jsonl").read_text().splitlines()
    assert json.loads(requested)["status"] == "submitted"
    request = json.loads((run / "trigger-retraining" / "request").read_text())
    assert request["run_id"] == next(iter(fake_kfp.state.runs))
