"""The SageMaker training contract is read from SM_* variables or the /opt/ml layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skinlesion.contract import TrainingEnvironment


def test_layout_under_the_ml_root(tmp_path: Path) -> None:
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps({"epochs": "3", "seed": 7}))
    (config / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-2", "hosts": ["algo-1", "algo-2"]})
    )
    (tmp_path / "input" / "data" / "train").mkdir(parents=True)
    env = TrainingEnvironment.from_environment({"SKINLESION_ML_ROOT": str(tmp_path)})
    assert env.hyperparameters == {"epochs": "3", "seed": "7"}
    assert env.channel("train") == tmp_path / "input" / "data" / "train"
    assert env.model_dir == tmp_path / "model"
    assert env.checkpoint_dir == tmp_path / "checkpoints"
    assert (env.current_host, env.hosts) == ("algo-2", ("algo-1", "algo-2"))


def test_sm_variables_win_and_missing_channels_are_named(tmp_path: Path) -> None:
    env = TrainingEnvironment.from_environment(
        {
            "SKINLESION_ML_ROOT": str(tmp_path),
            "SM_CHANNEL_TRAIN": "/data/train",
            "SM_MODEL_DIR": "/out/model",
            "SM_HPS": json.dumps({"epochs": 2}),
        }
    )
    assert env.channel("train") == Path("/data/train")
    assert env.model_dir == Path("/out/model")
    assert env.hyperparameters == {"epochs": "2"}
    with pytest.raises(FileNotFoundError, match="channels given: train"):
        env.channel("validation")
