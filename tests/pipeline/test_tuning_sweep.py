"""The training pipeline's ``sweep`` tuning branch under kfp.local on the local backend.

Two trials (two learning rates) run as a dsl.ParallelFor of real train steps; pick-best must hand
evaluate the trial whose job record shows the highest validation balanced accuracy, and the
registered version must be that trial's model. Nothing is mocked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:Task .* have no effect:UserWarning"),
    pytest.mark.filterwarnings("ignore:You may be attemping to run a task:RuntimeWarning"),
]


def test_the_sweep_hands_evaluate_the_best_trial(
    sample_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kfp import local

    from pipelines.training import training_pipeline
    from skinlesion.backends.local import LocalBackend

    monkeypatch.setenv("SKINLESION_LOCAL_ROOT", str(tmp_path / "local"))
    pipeline_root = tmp_path / "pipeline-root"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root))
    training_pipeline(
        data_uri=str(sample_data_dir),
        backend="local",
        architecture="mobilenet_v2",
        pretrained="none",
        epochs=1,
        batch_size=16,
        image_size=32,
        threshold=1.01,  # the gate fails: registered as Rejected, nothing deployed
        model_group="sweep",
        tuning="sweep",
        tuning_learning_rates=[1e-5, 3e-2],
    )
    trial_records = [
        json.loads(p.read_text())
        for p in pipeline_root.rglob("job.json")
        if "train" in str(p.relative_to(pipeline_root)).split("/")[1]
    ]
    assert len(trial_records) == 2, [r["job_name"] for r in trial_records]
    [picked] = [json.loads(p.read_text()) for p in pipeline_root.rglob("trials.json")]
    objectives = {t["job_name"]: t["objective"] for t in picked["trials"]}
    assert objectives == {
        r["job_name"]: r["metrics"]["val_balanced_accuracy"] for r in trial_records
    }
    best_job = max(objectives, key=lambda name: objectives[name])
    [best_record] = [r for r in trial_records if r["job_name"] == best_job]
    # The registered version is the best trial's model: the archive its train step wrote.
    [version] = LocalBackend.from_environment().list_versions("sweep", details=True)
    assert version.approval_status.value == "Rejected"
    registered = Path(version.model_data_uri)
    assert registered.read_bytes() == Path(best_record["output_uri"]).read_bytes()
