"""Metric lines, the SageMaker metric regexes that read them, and balanced accuracy."""

from __future__ import annotations

import re

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from skinlesion.config import TrainConfig
from skinlesion.metrics import (
    balanced_accuracy_from_confusion,
    confusion_matrix,
    recall_from_confusion,
)
from skinlesion.training import METRIC_DEFINITIONS, format_epoch_line


def test_every_metric_definition_reads_its_own_field() -> None:
    values = {
        "epoch": 3,
        "train_loss": 0.5123,
        "val_loss": 0.6011,
        "val_accuracy": 0.8,
        "val_balanced_accuracy": 0.7421,
        "val_balanced_accuracy_raw": 0.6904,  # with weight averaging (ema_decay)
        "lr": 1.5e-05,
        "images_per_sec": 153.24,
    }
    line = "2024-01-01 12:00:00,000 INFO skinlesion.training.loop: " + format_epoch_line(values)
    assert "epoch=3 train_loss=0.5123 val_loss=0.6011" in line
    assert "val_balanced_accuracy=0.7421 val_balanced_accuracy_raw=0.6904" in line
    found = {}
    for definition in METRIC_DEFINITIONS:
        assert len(definition["Regex"]) <= 500  # SageMaker's limit
        match = re.search(definition["Regex"], line)
        assert match, definition
        found[definition["Name"]] = float(match.group(1))
    assert found == {
        "epoch": 3.0,
        "train:loss": 0.5123,
        "validation:loss": 0.6011,
        "validation:accuracy": 0.8,
        "validation:balanced_accuracy": 0.7421,
        "validation:balanced_accuracy_raw": 0.6904,
        "learning_rate": 1.5e-05,
        "train:images_per_sec": 153.2,
    }


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_balanced_accuracy_matches_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, size=300)  # class 7 never occurs: it is left out, as sklearn does
    predictions = np.where(rng.random(300) < 0.6, labels, rng.integers(0, 8, size=300))
    matrix = confusion_matrix(labels, predictions, 8)
    assert matrix.sum() == 300
    assert np.isclose(
        balanced_accuracy_from_confusion(matrix), balanced_accuracy_score(labels, predictions)
    )


def test_an_empty_validation_pass_scores_zero_not_nan() -> None:
    # The epoch line's regex and the checkpoint's JSON need a number, as for the loss (0 too).
    matrix = np.zeros((8, 8), dtype=np.int64)
    assert balanced_accuracy_from_confusion(matrix) == 0.0
    assert np.isnan(recall_from_confusion(matrix)).all()


def test_hyperparameters_survive_the_string_round_trip() -> None:
    config = TrainConfig(
        architecture="mobilenet_v2",
        pretrained="none",
        epochs=3,
        learning_rate=3e-4,
        deterministic=True,
        balancing="sampler",
        schedule="cosine",
        max_steps_per_epoch=7,
    )
    strings = config.to_hyperparameters()
    assert all(isinstance(v, str) for v in strings.values())
    assert TrainConfig.from_hyperparameters(strings) == config
