"""A SageMaker training job's final validation balanced accuracy is the kept epoch's.

SageMaker applies each MetricDefinitions regex to every log line and keeps the values it finds;
the job's final value (DescribeTrainingJob ``FinalMetricDataList``, which the tuning job and
``steps.trial_objective`` read) is the last one found ("Define metrics and environment
variables", docs.aws.amazon.com/sagemaker/latest/dg/automatic-model-tuning-define-metrics-
variables.html; API_DescribeTrainingJob ``FinalMetricDataList``). ``final_metrics`` below plays
that rule on the trainer's real log.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tests.training.conftest import ml_root_layout, write_synthetic_dataset

from skinlesion.training import METRIC_DEFINITIONS, format_epoch_line


def final_metrics(log: str) -> dict[str, float]:
    """Each metric's last value in ``log``, as SageMaker takes it (first group, last match)."""
    found: dict[str, float] = {}
    for line in log.splitlines():
        for definition in METRIC_DEFINITIONS:
            matches = re.findall(definition["Regex"], line)
            if matches:
                found[definition["Name"]] = float(matches[-1])
    return found


def test_the_best_line_after_worse_epochs_gives_the_final_value() -> None:
    epochs = [0.61, 0.74, 0.70]  # the second epoch is kept; training ran one epoch past it
    lines = [
        format_epoch_line({"epoch": i + 1, "val_loss": 0.5, "val_balanced_accuracy": v})
        for i, v in enumerate(epochs)
    ]
    # The line skinlesion.jobs.train logs last, as the logging format writes it.
    lines.append(
        "2025-01-01 00:00:00,000 INFO skinlesion.jobs.train: Wrote the model to /opt/ml/model: "
        "best val_balanced_accuracy 0.7400 at epoch 2 of 3"
    )
    final = final_metrics("\n".join(lines))
    assert final["validation:balanced_accuracy"] == pytest.approx(0.74)
    assert final["validation:loss"] == pytest.approx(0.5)
    # The epoch lines alone still give each epoch (the job's metric chart).
    assert final_metrics(lines[2])["validation:balanced_accuracy"] == pytest.approx(0.70)


@pytest.mark.slow
def test_the_trainers_real_log_gives_the_kept_epochs_balanced_accuracy(tmp_path: Path) -> None:
    dataset = write_synthetic_dataset(tmp_path / "dataset")
    hyperparameters = {
        "architecture": "mobilenet_v2",
        "pretrained": "none",
        "epochs": "3",
        "batch_size": "16",
        "image_size": "32",
        "deterministic": "true",
        "max_steps_per_epoch": "3",
    }
    env = ml_root_layout(tmp_path / "ml", dataset, hyperparameters)
    result = subprocess.run(
        [sys.executable, "-m", "skinlesion.jobs.train"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert re.search(r"best val_balanced_accuracy \d", log), log[-2000:]
    kept = json.loads((tmp_path / "ml" / "output" / "data" / "metrics.json").read_text())
    final = final_metrics(log)
    assert final["validation:balanced_accuracy"] == pytest.approx(
        kept["val_balanced_accuracy"], abs=5e-5
    )
