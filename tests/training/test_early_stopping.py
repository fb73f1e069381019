"""Early stopping on small fake histories: the smoothed criterion and the warm-up rule."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from skinlesion.config import ConfigError, TrainConfig
from skinlesion.training.loop import make_scheduler, schedule_peak_step, warmup_epochs
from skinlesion.training.stopping import early_stopping, smooth


def first_stop(metrics: list[float], **kwargs: object) -> int | None:
    """The epoch (1-based) after which the rule stops a run with this history, or None."""
    for epoch in range(1, len(metrics) + 1):
        if early_stopping(metrics[:epoch], **kwargs).stop:  # type: ignore[arg-type]
            return epoch
    return None


def test_smoothing_zero_is_the_raw_rule() -> None:
    # Best raw figure at epoch 3, then three epochs without a better one.
    history = [0.50, 0.60, 0.70, 0.65, 0.60, 0.55, 0.50]
    assert first_stop(history, patience=3, smoothing=0.0) == 6
    assert smooth(history, 0.0) == history


def test_one_lucky_epoch_does_not_stop_a_rising_run() -> None:
    # A noisy but rising run: epoch 2 is a lucky spike that the raw rule takes as the bar.
    history = [0.50, 0.70, 0.55, 0.60, 0.62, 0.64, 0.66, 0.68]
    assert first_stop(history, patience=3, smoothing=0.0) == 5
    assert first_stop(history, patience=3, smoothing=0.5) is None
    verdict = early_stopping(history, patience=3, smoothing=0.5)
    assert verdict.best_smoothed_epoch == 8 and verdict.epochs_without_improvement == 0


def test_the_smoothed_rule_still_stops_a_run_that_has_peaked() -> None:
    history = [0.50, 0.60, 0.70, 0.65, 0.60, 0.55, 0.50, 0.45]
    # The moving average peaks one epoch later than the raw figure, so it stops one later.
    assert smooth(history, 0.5)[:4] == pytest.approx([0.5, 0.55, 0.625, 0.6375])
    assert first_stop(history, patience=3, smoothing=0.5) == 7


def test_no_stop_while_the_learning_rate_warms_up() -> None:
    # Falling from the first epoch: the raw rule would stop after epoch 3.
    history = [0.50, 0.40, 0.30, 0.20, 0.10, 0.05, 0.01]
    assert first_stop(history, patience=2, smoothing=0.0) == 3
    # Epochs 1-4 end before the peak: they never count, so the earliest stop is epoch 4 + 2.
    assert first_stop(history, patience=2, smoothing=0.0, warmup_epochs=4) == 6
    for epoch in range(1, 5):
        verdict = early_stopping(history[:epoch], patience=1, smoothing=0.0, warmup_epochs=4)
        assert not verdict.stop and verdict.epochs_without_improvement == 0


def test_patience_zero_never_stops_and_nan_does_not_poison_the_average() -> None:
    assert first_stop([0.9, 0.1, 0.1, 0.1], patience=0, smoothing=0.5) is None
    assert smooth([math.nan, 0.5, math.nan, 0.7], 0.5) == pytest.approx(
        [math.nan, 0.5, 0.5, 0.6], nan_ok=True
    )


def test_the_documented_real_data_run_is_not_stopped() -> None:
    # docs/benchmarks.md: the real-data recipe's validation balanced accuracy by epoch (20
    # epochs, one-cycle: epochs 1-5 end before the peak at 30% of the steps), best at epoch 16.
    history = [0.456, 0.564, 0.546, 0.576, 0.531, 0.476, 0.554, 0.619, 0.578, 0.615,
               0.544, 0.626, 0.615, 0.604, 0.648, 0.685, 0.640, 0.619, 0.609, 0.612]  # fmt: skip
    default = TrainConfig()
    assert first_stop(history, patience=default.patience, smoothing=0.5, warmup_epochs=5) is None


@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
@pytest.mark.parametrize("total_steps", [7, 30, 100, 241])
def test_schedule_peak_step_is_where_the_scheduler_peaks(schedule: str, total_steps: int) -> None:
    config = TrainConfig(schedule=schedule, learning_rate=1.0)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = make_scheduler(optimizer, config, total_steps)
    rates = [scheduler.get_last_lr()[0]]
    for _ in range(total_steps - 1):
        optimizer.step()
        scheduler.step()
        rates.append(scheduler.get_last_lr()[0])
    # rates[k]: the rate after k scheduler steps. It rises up to the highest one and never
    # rises again from the peak step on; the peak step is the highest one's, or (when the
    # rising phase ends between two steps) the step after it.
    highest = rates.index(max(rates))
    peak = schedule_peak_step(config, total_steps)
    assert highest <= peak <= highest + 1
    assert all(a < b for a, b in itertools.pairwise(rates[: highest + 1]))
    assert all(a >= b for a, b in itertools.pairwise(rates[peak:]))


def test_warmup_epochs_count_the_epochs_that_end_before_the_peak() -> None:
    assert warmup_epochs(24, 10) == 2  # epochs end at steps 10, 20 (< 24), 30
    assert warmup_epochs(20, 10) == 1  # epoch 2 ends at the peak: it counts
    assert warmup_epochs(0, 10) == 0


def test_smoothing_is_a_validated_setting() -> None:
    assert TrainConfig().early_stopping_smoothing == 0.5
    parsed = TrainConfig.from_hyperparameters({"early_stopping_smoothing": "0"})
    assert parsed.early_stopping_smoothing == 0.0
    with pytest.raises(ConfigError, match=r"early_stopping_smoothing 1.0: must be in \[0, 1\)"):
        TrainConfig.from_hyperparameters({"early_stopping_smoothing": "1.0"})
