"""Metric lines in the log that SageMaker's MetricDefinitions regexes parse, and their regexes.

The numbers themselves (balanced accuracy, per-class recall) come from ``skinlesion.metrics``.
"""

from __future__ import annotations

from collections.abc import Mapping

_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"

# The order and names of the fields of an epoch line; each becomes a SageMaker metric.
EPOCH_FIELDS: tuple[tuple[str, str, str], ...] = (
    # (key in the line, SageMaker metric name, format)
    ("epoch", "epoch", "d"),
    ("train_loss", "train:loss", ".4f"),
    ("val_loss", "validation:loss", ".4f"),
    ("val_accuracy", "validation:accuracy", ".4f"),
    ("val_balanced_accuracy", "validation:balanced_accuracy", ".4f"),
    # With weight averaging (ema_decay), the line's val_* figures are the average's; this one
    # is the raw weights' of the same epoch.
    ("val_balanced_accuracy_raw", "validation:balanced_accuracy_raw", ".4f"),
    ("lr", "learning_rate", ".6g"),
    ("images_per_sec", "train:images_per_sec", ".1f"),
)

# The trainer's last line names the kept epoch's figure: "Wrote the model to /opt/ml/model: best
# val_balanced_accuracy 0.6500 at epoch 3 of 8" (skinlesion.jobs.train). A job's final value of
# a metric (DescribeTrainingJob FinalMetricDataList) is the last one its regex found in the log,
# so the balanced accuracy's regex matches that line too: the final value is the epoch whose
# weights the model keeps, not the last epoch's (early stopping runs past the best).
BEST_LINE_FIELDS = ("val_balanced_accuracy",)


def metric_regex(key: str) -> str:
    """The MetricDefinitions regex of an epoch line's ``key`` (its number in group 1)."""
    # \b keeps "val_loss" from matching inside "train_loss=" and vice versa.
    if key in BEST_LINE_FIELDS:
        return rf"(?:\b{key}=|\bbest {key} ){_NUMBER}"
    return rf"\b{key}={_NUMBER}"


METRIC_DEFINITIONS: list[dict[str, str]] = [
    {"Name": name, "Regex": metric_regex(key)} for key, name, _ in EPOCH_FIELDS
]


def format_epoch_line(values: Mapping[str, float]) -> str:
    """``epoch=3 train_loss=0.5120 val_loss=0.6010 ... images_per_sec=153.2`` (fields present)."""
    parts = []
    for key, _, fmt in EPOCH_FIELDS:
        if key in values:
            value = int(values[key]) if fmt == "d" else float(values[key])
            parts.append(f"{key}={value:{fmt}}")
    return " ".join(parts)
