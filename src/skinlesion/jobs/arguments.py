"""The options every processing job that reads a dataset and a model shares, with the paths
SageMaker's ProcessingInputs mount (``/opt/ml/processing/input/<name>``) as defaults."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from skinlesion.contract import PROCESSING_INPUT, PROCESSING_OUTPUT

DEFAULT_DATASET = f"{PROCESSING_INPUT}/dataset"
DEFAULT_MODEL = f"{PROCESSING_INPUT}/model"


def add_dataset_model_output(parser: argparse.ArgumentParser, output: str, what: str) -> None:
    """``--dataset``, ``--model`` and ``--output`` (default ``/opt/ml/processing/output/<output>``)."""
    default_output = f"{PROCESSING_OUTPUT}/{output}"
    parser.add_argument(
        "--dataset",
        type=Path,
        default=Path(DEFAULT_DATASET),
        help=f"preprocessed dataset folder (default {DEFAULT_DATASET})",
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=Path(DEFAULT_MODEL),
        help="folder with model.json + model.pt, or with model.tar.gz, or the archive itself "
        f"(default {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path(default_output),
        help=f"where {what} go (default {default_output})",
    )


def job_parser(
    module: str, description: str, add_arguments: Callable[[argparse.ArgumentParser], None]
) -> argparse.ArgumentParser:
    """The parser of ``python -m <module>`` (a SageMaker job's ContainerArguments)."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=description)
    add_arguments(parser)
    return parser
