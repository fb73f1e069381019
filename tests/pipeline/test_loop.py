"""The closed loop (pipelines/loop.py) and the local KFP client behind its retraining trigger.

Nothing is mocked: runs are executed by kfp.local (SubprocessRunner) in processes of their own,
the endpoint answers over HTTP, the monitor job reads the captured requests.
"""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kfp import dsl

from skinlesion.kubeflow.local_client import (
    LocalKfpClient,
    LocalKfpError,
    LocalKubeflowSettings,
    typed_arguments,
)
from skinlesion.monitoring.retrain import (
    RETRAIN_SUFFIX,
    RetrainingError,
    kubeflow_settings,
    request_retraining,
)

REPO = Path(__file__).resolve().parents[2]
SOURCE = "tests.pipeline.test_loop:marker_pipeline"


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def write_marker(folder: str, fail: bool) -> None:
    from pathlib import Path

    if fail:
        raise ValueError("asked to fail")
    (Path(folder) / "marker").write_text("ran\n")


@dsl.pipeline(name="marker")
def marker_pipeline(data_uri: str, fail: bool = False, ratio: float = 0.5) -> None:
    """A one-step pipeline: the run writes ``data_uri``/marker (or fails when asked)."""
    write_marker(folder=data_uri, fail=fail)


def settings(tmp_path: Path) -> LocalKubeflowSettings:
    return kubeflow_settings(f"local://{tmp_path / 'kfp'}", "", "loop-test")


def upload(tmp_path: Path) -> LocalKfpClient:
    client = LocalKfpClient(settings(tmp_path))
    client.upload("skinlesion-training", f"abc1234{RETRAIN_SUFFIX}", SOURCE)
    return client


# --- the local client, through the trigger's own code -------------------------------------


def test_a_local_host_must_name_an_absolute_folder() -> None:
    with pytest.raises(LocalKfpError, match=r"local://<absolute folder>"):
        kubeflow_settings("local://relative/kfp")


def test_unsupported_filters_are_refused_not_ignored(tmp_path: Path) -> None:
    client = upload(tmp_path)
    experiment = client.experiment_id("loop-test")
    equals = json.dumps(
        {"predicates": [{"key": "name", "operation": "EQUALS", "string_value": "x"}]}
    )
    with pytest.raises(LocalKfpError, match="state IN"):
        client.runs(experiment, filter=equals)


def test_arguments_follow_the_pipeline_types() -> None:
    # A whole float came back as an int from the trigger's Struct round trip.
    assert typed_arguments(marker_pipeline, {"data_uri": "x", "ratio": 1}) == {
        "data_uri": "x",
        "ratio": 1.0,
    }
    with pytest.raises(LocalKfpError, match="Accepted: data_uri, fail, ratio"):
        typed_arguments(marker_pipeline, {"data_uri": "x", "epochs": 2})


def test_no_retrain_version_means_no_run(tmp_path: Path) -> None:
    with pytest.raises(RetrainingError, match="No pipeline named skinlesion-training"):
        request_retraining(reason="drift", data_uri=str(tmp_path), kubeflow=settings(tmp_path))


@pytest.mark.slow
def test_the_trigger_starts_a_run_then_respects_in_flight_and_cooldown(tmp_path: Path) -> None:
    client = upload(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    first = request_retraining(
        reason="drift", data_uri=str(data), kubeflow=settings(tmp_path), record_dir=tmp_path
    )
    assert first.status == "submitted" and first.pipeline_version == "abc1234-retrain"
    # Still PENDING or RUNNING: the next alarm is skipped, naming the run in flight.
    second = request_retraining(reason="drift", data_uri=str(data), kubeflow=settings(tmp_path))
    assert second.status == "skipped" and second.blocking_run_id == first.run_id
    assert "not starting a second one" in second.skip_reason

    run = client.wait(first.run_id, timeout=300)
    assert run.state == "SUCCEEDED", run.error
    assert (data / "marker").read_text() == "ran\n"  # the pipeline really ran
    # Ended, but inside the cooldown.
    third = request_retraining(reason="drift", data_uri=str(data), kubeflow=settings(tmp_path))
    assert third.status == "skipped" and "cooldown" in third.skip_reason
    # After the cooldown a run starts again; a failing one ends FAILED with its reason.
    later = datetime.now(UTC) + timedelta(hours=25)
    fourth = request_retraining(
        reason="drift",
        data_uri=str(data),
        arguments={"fail": True},
        kubeflow=settings(tmp_path),
        now=later,
    )
    assert fourth.status == "submitted"
    failed = client.wait(fourth.run_id, timeout=300)
    assert (
        failed.state == "FAILED"
        and "asked to fail" in (tmp_path / "kfp" / "runs" / f"{fourth.run_id}.log").read_text()
    )
    records = [json.loads(line) for line in (tmp_path / "retraining_requests.jsonl").open()]
    assert [r["status"] for r in records] == ["submitted"]


# --- the whole loop -----------------------------------------------------------------------


@pytest.mark.slow
def test_the_loop_retrains_through_the_trigger_and_holds_back_a_challenger_that_loses(
    tmp_path: Path,
) -> None:
    from skinlesion.backends.local import LocalBackend, LocalSettings

    workdir = tmp_path / "loop"
    # A margin no challenger can clear: the decision is known, the hold-back path checked.
    done = subprocess.run(
        [
            sys.executable, "-m", "pipelines.loop", "--workdir", str(workdir),
            "--per-class", "8", "--new-per-class", "7", "--epochs", "1", "--image-size", "32",
            "--threshold", "0", "--margin", "1.0", "--timeout", "900",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])},
        capture_output=True,
        text=True,
        timeout=1500,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((workdir / "loop.json").read_text())
    story = done.stdout

    # The shifted traffic made the monitor alarm, and its trigger step started the run.
    assert summary["monitoring"]["alarm"] is True and "data drift" in story
    request = summary["retraining_request"]
    [run_file] = (workdir / "kfp" / "runs").glob("*.json")
    run = json.loads(run_file.read_text())
    assert request["status"] == "submitted" and request["run_id"] == run["run_id"]
    assert run["state"] == "SUCCEEDED" and run["arguments"]["data_uri"] == str(
        workdir / "data" / "current"
    )
    # The second alarm, while the run was in flight, was skipped because of it.
    assert summary["second_request"]["status"] == "skipped"
    assert summary["second_request"]["blocking_run_id"] == run["run_id"]
    lines = (workdir / "local" / "monitoring" / "retraining_requests.jsonl").read_text()
    assert [json.loads(line)["status"] for line in lines.splitlines()] == ["submitted", "skipped"]

    # The challenger trained on data that includes the new camera's images.
    challenger_dataset = next(Path(run["run_dir"]).rglob("manifest.json")).parent
    trained_on = (challenger_dataset / "train" / "index.csv").read_text()
    assert "ARRIVED_" in trained_on

    # Both models were scored on the same images, and the champion's scores were re-measured.
    comparison = summary["comparison"]
    assert comparison["champion"]["images"] == comparison["challenger"]["images"] > 0
    assert (workdir / "comparison" / "champion-on-challenger-test" / "predictions.csv").is_file()

    # Held back: registered, not approved, not deployed; the champion kept serving.
    backend = LocalBackend(LocalSettings(root=workdir / "local"))
    versions = {v.arn: v for v in backend.list_versions("skinlesion-loop")}
    champion, challenger = summary["champion"]["arn"], summary["challenger"]["arn"]
    assert summary["outcome"] == "held back" and summary["decision"]["rollout"] is False
    assert versions[challenger].approval_status.value == "PendingManualApproval"
    assert summary["served"] == champion
    assert "Held back" in story and "the margin is +1.0000" in story
    assert "balanced accuracy" in story and "malignant sensitivity" in story


def test_the_decision_names_what_held_the_challenger_back() -> None:
    from pipelines.loop import Scores, decide

    champion = Scores(balanced_accuracy=0.70, malignant_sensitivity=0.80, images=40)
    better = Scores(balanced_accuracy=0.75, malignant_sensitivity=0.80, images=40)
    misses_more = Scores(balanced_accuracy=0.75, malignant_sensitivity=0.60, images=40)
    assert decide(champion, better, status="PendingManualApproval", margin=0.0).rollout
    held = decide(champion, better, status="PendingManualApproval", margin=0.1)
    assert not held.rollout and "the margin is +0.1000" in held.reason
    held = decide(champion, misses_more, status="PendingManualApproval", margin=0.0)
    assert not held.rollout and "malignant sensitivity fell from 0.800 to 0.600" in held.reason
    held = decide(champion, better, status="Rejected", margin=0.0)
    assert not held.rollout and "gate rejected" in held.reason


def test_the_loop_refuses_a_workdir_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me\n")
    from pipelines.loop import main

    assert main(["--workdir", str(tmp_path)]) == 2
    assert (tmp_path / "precious.txt").read_text() == "keep me\n"
