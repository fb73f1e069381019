"""Early stopping: a smoothed validation criterion, never judged while the learning rate warms up.

Two habits of the raw rule ("stop after ``patience`` epochs without a better figure") cost runs
on small, noisy validation splits: one lucky epoch sets a bar that noise alone keeps the next
epochs under, and the epochs before a one-cycle schedule's peak (high, rising learning rate)
count against the run before it has settled. Here the criterion is an exponential moving
average of the per-epoch figure, and epochs that end before the peak never count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class EarlyStoppingVerdict:
    """The decision after the last epoch of a history, and how it was reached."""

    stop: bool
    smoothed: float  # the criterion after the last epoch
    best_smoothed: float
    best_smoothed_epoch: int  # 1-based; 0 before any epoch
    epochs_without_improvement: int  # counted only after the warm-up


def smooth(metrics: Sequence[float], smoothing: float) -> list[float]:
    """The exponential moving average of ``metrics``: s_1 = m_1, s_t = a s_(t-1) + (1 - a) m_t.

    A NaN figure (an empty validation split) leaves the average where it was, so that one bad
    epoch cannot poison every later one.
    """
    if not 0 <= smoothing < 1:
        raise ValueError(f"Invalid smoothing {smoothing!r}: must be in [0, 1).")
    smoothed: list[float] = []
    for value in metrics:
        previous = smoothed[-1] if smoothed and not math.isnan(smoothed[-1]) else value
        if math.isnan(value):
            smoothed.append(previous)
        else:
            smoothed.append(smoothing * previous + (1 - smoothing) * value)
    return smoothed


def early_stopping(
    metrics: Sequence[float], *, patience: int, smoothing: float, warmup_epochs: int = 0
) -> EarlyStoppingVerdict:
    """Whether to stop after the last of ``metrics`` (one per epoch, higher is better).

    Stop when the smoothed criterion has not beaten its best for ``patience`` epochs, counting
    only epochs after the first ``warmup_epochs`` (those that end before the learning rate's
    peak). ``patience`` 0 never stops; ``smoothing`` 0 reads the raw figures.
    """
    best, best_epoch, since = -math.inf, 0, 0
    values = smooth(metrics, smoothing)
    for epoch, value in enumerate(values, start=1):
        if value > best:
            best, best_epoch, since = value, epoch, 0
        elif epoch > warmup_epochs:
            since += 1
    return EarlyStoppingVerdict(
        stop=patience > 0 and len(values) > warmup_epochs and since >= patience,
        smoothed=values[-1] if values else -math.inf,
        best_smoothed=best,
        best_smoothed_epoch=best_epoch,
        epochs_without_improvement=since,
    )
