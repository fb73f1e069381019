"""steps.pick_best: the sweep's trial with the highest validation balanced accuracy becomes the
model that evaluate takes; ties go to the earlier trial; a trial without its objective fails."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from skinlesion import steps
from skinlesion.backends.errors import JobOutputMissingError
from skinlesion.handoff import ModelHandoff


@dataclass
class Artifact:
    """What a KFP artifact gives a step: a local path, its URI and its metadata."""

    path: str
    uri: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


def _trial(
    root: Path, index: int, metrics: dict[str, float], cost: float | None = None
) -> Artifact:
    """A train step's output as steps.train leaves it: job.json, the ModelHandoff, job_name."""
    folder = root / f"trial-{index}"
    folder.mkdir(parents=True)
    record = {"job_name": f"train-{index}", "status": "Completed", "metrics": metrics}
    (folder / steps.JOB_RECORD).write_text(json.dumps(record))
    artifact = Artifact(path=str(folder), uri=str(folder))
    ModelHandoff(
        model_data=str(folder / "model.tar.gz"),
        job_model_data=str(folder / "model.tar.gz"),
        architecture="mobilenet_v2",
        image_size=32,
        dataset="/data/dataset",
    ).write(artifact)
    artifact.metadata["job_name"] = f"train-{index}"
    if cost is not None:
        artifact.metadata["cost_usd"] = cost
    return artifact


def _outputs(root: Path) -> tuple[Artifact, Artifact]:
    (root / "model").mkdir()
    return Artifact(path=str(root / "dataset")), Artifact(path=str(root / "model"))


def test_the_highest_objective_wins_and_its_model_is_handed_on(tmp_path: Path) -> None:
    trials = [
        _trial(tmp_path, 0, {"val_balanced_accuracy": 0.61}, cost=1.0),
        # SageMaker's job record names the metric as its MetricDefinitions do.
        _trial(tmp_path, 1, {"validation:balanced_accuracy": 0.74}, cost=2.0),
        _trial(tmp_path, 2, {"val_balanced_accuracy": 0.70}, cost=0.5),
    ]
    dataset, model = _outputs(tmp_path)
    assert steps.pick_best(trials=trials, dataset=dataset, model=model) == "train-1"
    handed = ModelHandoff.read(model)
    assert handed.model_data == str(tmp_path / "trial-1" / "model.tar.gz")
    assert model.metadata["tuning_objective_value"] == pytest.approx(0.74)
    assert model.metadata["cost_usd"] == pytest.approx(3.5)  # every trial's, not the best's
    record = json.loads((Path(model.path) / steps.TRIALS_FILE).read_text())
    assert [t["objective"] for t in record["trials"]] == [0.61, 0.74, 0.70]


def test_a_tie_goes_to_the_earlier_trial(tmp_path: Path) -> None:
    trials = [
        _trial(tmp_path, 0, {"val_balanced_accuracy": 0.5}),
        _trial(tmp_path, 1, {"val_balanced_accuracy": 0.8}),
        _trial(tmp_path, 2, {"val_balanced_accuracy": 0.8}),
    ]
    dataset, model = _outputs(tmp_path)
    assert steps.pick_best(trials=trials, dataset=dataset, model=model) == "train-1"
    assert ModelHandoff.read(model).model_data.endswith("trial-1/model.tar.gz")


def test_a_trial_without_its_objective_fails_naming_it(tmp_path: Path) -> None:
    trials = [
        _trial(tmp_path, 0, {"val_balanced_accuracy": 0.9}),
        _trial(tmp_path, 1, {"val_loss": 0.3}),  # trained, but no balanced accuracy recorded
    ]
    dataset, model = _outputs(tmp_path)
    with pytest.raises(JobOutputMissingError, match=r"trial 1 \(train-1\) of 2.*val_balanced_acc"):
        steps.pick_best(trials=trials, dataset=dataset, model=model)
    assert "tuning_objective_value" not in model.metadata  # nothing handed on


def test_an_empty_sweep_fails(tmp_path: Path) -> None:
    dataset, model = _outputs(tmp_path)
    with pytest.raises(ValueError, match="no trial"):
        steps.pick_best(trials=[], dataset=dataset, model=model)
