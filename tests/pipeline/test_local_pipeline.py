"""The training pipeline end to end under kfp.local (SubprocessRunner) on the local backend.

Nothing is mocked: KFP's local runner executes each component in a subprocess, the components
run the real jobs as subprocesses with SageMaker's layout, the registry is a folder and the
endpoint is the serving app answering over HTTP.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture
def local_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "local"
    monkeypatch.setenv("SKINLESION_LOCAL_ROOT", str(root))
    return root


def test_demo_runs_the_graph_and_classifies_over_http(
    tmp_path: Path, local_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines import demo

    status = demo.main(
        [
            "--workdir", str(tmp_path / "demo"),
            "--epochs", "1",
            "--image-size", "48",
            "--threshold", "0.0",
            "--classify", "4",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0, out
    assert "balanced accuracy (test split):" in out
    assert "held-out images over HTTP: " in out
    assert "(Approved)" in out
    # The demo stops its endpoint: the record is gone and nothing answers.
    assert not list((tmp_path / "demo" / "local" / "endpoints").rglob("endpoint.json"))
    run_dir = next((tmp_path / "demo" / "pipeline-root").iterdir())
    records = {p.parent.parent.name: json.loads(p.read_text()) for p in run_dir.rglob("job.json")}
    assert {"preprocess", "train", "evaluate"} <= set(records)
    assert all(r["status"] == "Completed" and r["wall_seconds"] > 0 for r in records.values())


def test_gate_failure_records_the_rejection_and_registers_the_candidate_as_rejected(
    tmp_path: Path, local_root: Path, sample_data_dir: Path
) -> None:
    from kfp import local

    from pipelines.training import training_pipeline
    from skinlesion.backends.local import LocalBackend

    pipeline_root = tmp_path / "pipeline-root"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root))
    training_pipeline(
        data_uri=str(sample_data_dir),
        architecture="mobilenet_v2",
        pretrained="none",
        epochs=1,
        image_size=32,
        threshold=1.01,  # unreachable: balanced accuracy is at most 1
        model_group="gate-test",
        endpoint_name="gate-test",
    )
    decisions = list(pipeline_root.rglob("decision"))
    assert len(decisions) == 1
    text = decisions[0].read_text()
    assert "gate" in text and "threshold: 1.0100" in text
    # The registry keeps the candidate and why it was not promoted.
    [version] = LocalBackend.from_environment().list_versions("gate-test")
    assert version.approval_status.value == "Rejected"
    assert not (local_root / "endpoints" / "gate-test").exists()
    assert os.environ["SKINLESION_LOCAL_ROOT"] == str(local_root)
