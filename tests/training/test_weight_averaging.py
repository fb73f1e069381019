"""Weight averaging (TrainConfig.ema_decay): what is averaged, what is kept, exact resume."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from skinlesion.config import ConfigError, TrainConfig
from skinlesion.training import format_epoch_line
from skinlesion.training.checkpointing import CHECKPOINT_FILE
from skinlesion.training.loop import fit, make_ema
from skinlesion.training.reporting import metric_regex

# Deterministic, tiny: a few steps per epoch on the synthetic dataset.
TINY = TrainConfig(
    architecture="mobilenet_v2",
    pretrained="none",
    epochs=2,
    batch_size=16,
    image_size=32,
    deterministic=True,
    max_steps_per_epoch=3,
    ema_decay=0.9,
)


def test_the_average_covers_weights_and_batchnorm_statistics() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = make_ema(model, 0.75)
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[1].running_mean.fill_(4.0)
    ema.update_parameters(model)  # the first update copies
    with torch.no_grad():
        model[0].weight.fill_(3.0)
        model[1].running_mean.fill_(8.0)
    ema.update_parameters(model)
    averaged = ema.module
    torch.testing.assert_close(averaged[0].weight, torch.full((2, 2), 0.75 * 1 + 0.25 * 3))
    torch.testing.assert_close(averaged[1].running_mean, torch.full((2,), 0.75 * 4 + 0.25 * 8))
    assert model[0].weight[0, 0].item() == 3.0  # the model itself is untouched


@pytest.mark.parametrize("decay", [0.3, 1.0, -0.1])
def test_a_decay_outside_its_range_is_refused_with_what_is_accepted(decay: float) -> None:
    with pytest.raises(ConfigError, match=r"Invalid ema_decay .*0 \(off\) or in \[0\.5, 1\)"):
        TrainConfig(ema_decay=decay)


def test_the_decay_survives_the_hyperparameter_strings() -> None:
    config = TrainConfig(ema_decay=0.995)
    assert TrainConfig.from_hyperparameters(config.to_hyperparameters()).ema_decay == 0.995


def test_a_run_keeps_the_averaged_weights_and_logs_the_raw_figure_beside_them(
    tmp_path: Path, synthetic_dataset: Path
) -> None:
    result = fit(
        TrainConfig(**{**vars(TINY), "epochs": 1}), synthetic_dataset, checkpoint_dir=tmp_path
    )
    record = result.history[0]
    assert 0 <= record["val_balanced_accuracy_raw"] <= 1
    line = format_epoch_line(record)
    assert re.search(metric_regex("val_balanced_accuracy_raw"), line)
    checkpoint = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    averaged = {
        k.removeprefix("module."): v for k, v in checkpoint["ema"].items() if k != "n_averaged"
    }
    kept = result.model.state_dict()
    assert kept.keys() == checkpoint["model"].keys() == averaged.keys()
    assert all(torch.equal(kept[k].cpu(), averaged[k]) for k in kept)  # the average is kept
    assert checkpoint["ema"]["n_averaged"].item() == 3  # one update per step
    moved = [
        k
        for k in kept
        if kept[k].is_floating_point() and not torch.equal(kept[k].cpu(), checkpoint["model"][k])
    ]
    assert moved, "the kept weights are the raw model's, not the average"


def test_a_resumed_run_with_an_average_ends_bit_identical(
    tmp_path: Path, synthetic_dataset: Path
) -> None:
    straight = fit(TINY, synthetic_dataset, checkpoint_dir=tmp_path / "straight")
    fit(TINY, synthetic_dataset, checkpoint_dir=tmp_path / "spot", stop_after_epoch=1)
    resumed = fit(TINY, synthetic_dataset, checkpoint_dir=tmp_path / "spot")
    assert resumed.resumed_from_epoch == 1
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ema_a = torch.load(tmp_path / "straight" / CHECKPOINT_FILE, weights_only=True)["ema"]
    ema_b = torch.load(tmp_path / "spot" / CHECKPOINT_FILE, weights_only=True)["ema"]
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
    assert [h["val_balanced_accuracy_raw"] for h in straight.history] == [
        h["val_balanced_accuracy_raw"] for h in resumed.history
    ]


def test_averaging_leaves_the_training_run_itself_untouched(synthetic_dataset: Path) -> None:
    """The raw weights train exactly as without averaging: same losses, same raw figures."""
    plain = fit(TrainConfig(**{**vars(TINY), "ema_decay": 0.0}), synthetic_dataset)
    averaged = fit(TINY, synthetic_dataset)
    assert [h["train_loss"] for h in plain.history] == [h["train_loss"] for h in averaged.history]
    assert [h["val_balanced_accuracy"] for h in plain.history] == [
        h["val_balanced_accuracy_raw"] for h in averaged.history
    ]
    assert "val_balanced_accuracy_raw" not in plain.history[0]
