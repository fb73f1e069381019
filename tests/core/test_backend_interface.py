"""The backend interface as both implementations honour it, and the defects it closed.

Each test here failed on the code before "one backend for every stage": a processing job ran
without its own run folder, the gate never reached the registry, the local deploy raised a
different error than SageMaker's, and library modules branched on the backend's name.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from skinlesion import steps
from skinlesion.backends.base import ApprovalStatus, DeployRequest, EvaluateRequest
from skinlesion.backends.errors import (
    EndpointNotFoundError,
    JobFailedError,
    ModelNotApprovedError,
)
from skinlesion.backends.local import ROOT_ENV, LocalBackend, LocalSettings
from skinlesion.contract import JobKind, failure_file, run_job

SRC = Path(__file__).resolve().parents[2] / "src" / "skinlesion"


@dataclass
class FakeArtifact:
    """What a component hands ``skinlesion.steps``: a path, a URI and metadata."""

    path: str
    uri: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


def test_a_failing_local_processing_job_reports_its_own_reason_from_its_own_run_folder(
    tmp_path: Path,
) -> None:
    backend = LocalBackend(LocalSettings(root=tmp_path / "root"))
    with pytest.raises(JobFailedError) as raised:
        backend.evaluate(
            EvaluateRequest(
                dataset_uri=str(tmp_path / "no-dataset"),
                model_uri=str(tmp_path / "no-model"),
                output_uri=str(tmp_path / "evaluation"),
                job_name="evaluate-broken",
            )
        )
    error = raised.value
    assert error.job_name == "evaluate-broken" and not error.retryable
    assert "see its log" not in str(error)
    assert "no-" in error.failure_reason  # the job's own words name the missing input
    message = failure_file(JobKind.PROCESSING, tmp_path / "root/jobs/evaluate-broken/opt/ml")
    assert message.read_text().startswith(error.failure_reason)


def test_every_job_fails_through_one_wrapper_into_its_kinds_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKINLESION_ML_ROOT", str(tmp_path))

    def broken() -> None:
        raise ValueError("bad input, accepted: good input")

    assert run_job(JobKind.TRAINING, "Training", broken) == 1
    assert run_job(JobKind.PROCESSING, "Evaluation", broken) == 1
    assert run_job(JobKind.PROCESSING, "Evaluation", lambda: None) == 0
    for name in ("failure", "message"):
        text = (tmp_path / "output" / name).read_text()
        assert text.startswith("ValueError: bad input, accepted: good input")


def _registered(tmp_path: Path, balanced_accuracy: float, minimum: float) -> tuple[str, str]:
    model = tmp_path / f"model-{balanced_accuracy}-{minimum}"
    model.mkdir()
    (model / "model.tar.gz").write_bytes(b"not opened by the registry")
    evaluation = tmp_path / f"evaluation-{balanced_accuracy}-{minimum}"
    evaluation.mkdir()
    (evaluation / "metrics.json").write_text(json.dumps({"balanced_accuracy": balanced_accuracy}))
    return steps.register(
        backend="local",
        model=FakeArtifact(str(model), metadata={"model_data": str(model / "model.tar.gz")}),
        evaluation=FakeArtifact(str(evaluation), metadata={"evaluation": str(evaluation)}),
        model_group="gate-test",
        data_uri="data",
        architecture="tiny",
        approval_margin=0.0,
        min_balanced_accuracy=minimum,
    )


def test_a_candidate_below_the_gate_is_registered_as_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ROOT_ENV, str(tmp_path / "root"))
    _, status = _registered(tmp_path, balanced_accuracy=0.55, minimum=0.60)
    assert status == ApprovalStatus.REJECTED.value
    _, status = _registered(tmp_path, balanced_accuracy=0.65, minimum=0.60)
    assert status == ApprovalStatus.APPROVED.value


def test_both_backends_refuse_an_unapproved_version_with_the_same_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ROOT_ENV, str(tmp_path / "root"))
    arn, status = _registered(tmp_path, balanced_accuracy=0.1, minimum=0.6)
    assert status == "Rejected"
    backend = LocalBackend.from_environment()
    with pytest.raises(ModelNotApprovedError, match="only Approved"):
        backend.deploy(DeployRequest(model_version_arn=arn, endpoint_name="never"))
    # The SageMaker backend's class is the same one (tests/aws/test_deployment.py raises it).
    from skinlesion.backends.sagemaker import ModelNotApprovedError as OnSageMaker

    assert OnSageMaker is ModelNotApprovedError


def test_deleting_an_unknown_endpoint_is_an_error(tmp_path: Path) -> None:
    backend = LocalBackend(LocalSettings(root=tmp_path))
    with pytest.raises(EndpointNotFoundError, match="nothing-here"):
        backend.delete_endpoint("nothing-here")
    done = subprocess.run(
        [sys.executable, "-m", "skinlesion.cli", "endpoint", "delete", "nothing-here"],
        env={"PATH": "/usr/bin:/bin", ROOT_ENV: str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "nothing-here" in done.stderr.strip().splitlines()[-1]


def _library_lines(pattern: str, *, allowed: tuple[str, ...] = ()) -> list[str]:
    hits = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        if relative in allowed:
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if re.search(pattern, line):
                hits.append(f"{relative}:{number}: {line.strip()}")
    return hits


def test_no_library_module_branches_on_the_backends_name() -> None:
    assert _library_lines(r"backend\s*==|backend\s*!=") == []


def test_the_environment_is_indexed_only_at_the_edges() -> None:
    # Settings loading, the CLI, job entries and the serving process hand-over read it; the
    # library below them takes its parameters as arguments.
    edges = (
        "settings.py",
        "cli.py",
        "contract.py",
        "serving/server.py",
    )
    assert _library_lines(r"os\.environ\[", allowed=edges) == []


def test_the_exit_handler_stop_is_a_no_op_locally(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local job is its step's child process and ends with it: nothing is left to stop."""
    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    assert LocalBackend(LocalSettings(root=tmp_path)).stop_jobs("run-1") == []
    assert steps.stop_run_jobs(backend="local", run_id="runs/run-1", state="CANCELED") == []
    with pytest.raises(ValueError, match="no run id"):
        steps.stop_run_jobs(backend="local", run_id="", state="FAILED")


def test_the_runs_cost_adds_up_along_the_steps_and_reaches_the_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = FakeArtifact("d", metadata={"cost_usd": 0.05})
    model = FakeArtifact("m", metadata={"cost_usd": 1.25})
    evaluation = FakeArtifact("e", metadata={"cost_usd": 0.10})
    assert steps.run_cost_so_far(model, dataset) == 1.3
    assert steps.run_cost_so_far(evaluation, model) == 1.4
    assert steps.run_cost_so_far(FakeArtifact("x"), FakeArtifact("y")) is None  # local: no price
    monkeypatch.setenv(ROOT_ENV, str(tmp_path / "root"))
    folder = tmp_path / "evaluation"
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps({"balanced_accuracy": 0.9}))
    (tmp_path / "model.tar.gz").write_bytes(b"x")
    steps.register(
        backend="local",
        model=FakeArtifact(str(tmp_path), metadata={"model_data": str(tmp_path / "model.tar.gz")}),
        evaluation=FakeArtifact(
            str(folder), metadata={"evaluation": str(folder), "run_cost_usd": 1.4}
        ),
        model_group="cost-test",
        data_uri="data",
        architecture="tiny",
        approval_margin=0.0,
    )
    [version] = LocalBackend.from_environment().list_versions("cost-test")
    assert version.metadata["run_cost_usd"] == "1.4000"
    assert version.metadata["model_card_uri"] == f"{folder}/model_card.md"
