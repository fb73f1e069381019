"""The training job: SageMaker's training-container contract around skinlesion.training.

``python -m skinlesion.jobs.train`` (or ``torchrun ... -m skinlesion.jobs.train``) reads the
hyperparameters and the ``train`` channel (a preprocessed dataset folder holding every split),
resumes from the checkpoint directory when it holds a checkpoint, and writes ``model.json`` +
``model.pt`` to the model directory and ``history.json`` + ``metrics.json`` to the output data
directory. On an error it writes the reason to ``/opt/ml/output/failure`` and exits 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

from skinlesion.config import TrainConfig
from skinlesion.contract import JobKind, TrainingEnvironment, run_job
from skinlesion.logs import configure_logging

log = logging.getLogger(__name__)

TRAIN_CHANNEL = "train"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def run(env: TrainingEnvironment, *, stop_after_epoch: int | None = None) -> dict[str, Any]:
    """Train as the contract in ``env`` says; returns a summary (metrics, paths, epochs)."""
    from skinlesion.models import save_model
    from skinlesion.training.loop import fit

    config = TrainConfig.from_hyperparameters(env.hyperparameters)
    if config.extra:
        log.info(
            "Ignoring hyperparameters this job does not use: %s", ", ".join(sorted(config.extra))
        )
    dataset_dir = env.channel(TRAIN_CHANNEL)
    if len(env.hosts) > 1 and "WORLD_SIZE" not in os.environ:
        log.warning(
            "%d hosts (%s) but no torchrun launch: each host trains on its own. Start the job "
            "with torchrun --nnodes %d to train one model across them.",
            len(env.hosts),
            ", ".join(env.hosts),
            len(env.hosts),
        )
    result = fit(
        config,
        dataset_dir,
        checkpoint_dir=env.checkpoint_dir,
        stop_after_epoch=stop_after_epoch,
    )
    summary: dict[str, Any] = {
        "interrupted": result.interrupted,
        "epochs_completed": result.epochs_completed,
        "resumed_from_epoch": result.resumed_from_epoch,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "metrics": dict(result.spec.metrics),
        "model_dir": str(env.model_dir),
        "checkpoint_dir": str(env.checkpoint_dir),
    }
    if result.interrupted or not result.is_main:
        return summary
    save_model(result.model, result.spec, env.model_dir)
    output = env.output_data_dir
    output.mkdir(parents=True, exist_ok=True)
    (output / HISTORY_FILE).write_text(json.dumps(_json_safe(result.history), indent=2))
    (output / METRICS_FILE).write_text(
        json.dumps(
            _json_safe(
                {
                    **result.spec.metrics,
                    "architecture": config.architecture,
                    "image_size": config.image_size,
                    "classes": list(result.spec.classes),
                    "hyperparameters": config.to_hyperparameters(),
                    "stopped_early": result.stopped_early,
                    "resumed_from_epoch": result.resumed_from_epoch,
                }
            ),
            indent=2,
        )
    )
    log.info(
        "Wrote the model to %s: best val_balanced_accuracy %.4f at epoch %d of %d",
        env.model_dir,
        result.spec.metrics["val_balanced_accuracy"],
        result.best_epoch,
        result.epochs_completed,
    )
    return summary


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m skinlesion.jobs.train",
        description=(
            "Train a skin lesion classifier under SageMaker's training contract: "
            "hyperparameters and channels from /opt/ml (or SKINLESION_ML_ROOT and SM_* "
            "variables), the model to SM_MODEL_DIR, checkpoints to SM_CHECKPOINT_DIR."
        ),
    )
    parser.add_argument(
        "--stop-after-epoch",
        type=int,
        default=None,
        metavar="N",
        help="exit after checkpointing epoch N without writing the model, as a reclaimed spot "
        "instance would; a rerun resumes from the checkpoint (a resume drill)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status (0 success, 1 failure)."""
    args = get_args_parser().parse_args(argv)
    configure_logging()

    def body() -> None:
        summary = run(
            TrainingEnvironment.from_environment(), stop_after_epoch=args.stop_after_epoch
        )
        log.info("Training summary: %s", json.dumps(summary))

    return run_job(JobKind.TRAINING, "Training", body)


if __name__ == "__main__":
    sys.exit(main())
