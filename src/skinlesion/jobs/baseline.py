"""The baseline processing job: the monitoring baseline of a model on a dataset split.

Runs as a SageMaker processing job (``python -m skinlesion.jobs.baseline``) and as a local
subprocess, unchanged. Reads the preprocessed dataset and the model bundle, writes the baseline
folder (``statistics.json``, ``constraints.json``, ``reference.npz``; see
:mod:`skinlesion.monitoring.baseline`) to ``--output``. Run it after evaluation, on the
validation split, for the model that will be deployed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from skinlesion.contract import PROCESSING_INPUT, JobKind, run_job
from skinlesion.data.store import SPLITS
from skinlesion.jobs.arguments import add_dataset_model_output, job_parser
from skinlesion.logs import configure_logging

log = logging.getLogger(__name__)

DEFAULT_RAW = f"{PROCESSING_INPUT}/data"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The job's options (shared with ``skinlesion monitor baseline``)."""
    from skinlesion.monitoring.config import (
        DEFAULT_COMPONENTS,
        DEFAULT_MAX_IMAGES,
        DEFAULT_SPLIT,
    )

    add_dataset_model_output(parser, "baseline", "the baseline files")
    parser.add_argument(
        "--raw",
        type=Path,
        default=None,
        help="the ISIC folder of the original files, for encoding features "
        f"(default: {DEFAULT_RAW} when it exists, else the dataset's source)",
    )
    parser.add_argument(
        "--split",
        default=DEFAULT_SPLIT,
        choices=SPLITS,
        help=f"the split to describe (default {DEFAULT_SPLIT})",
    )
    parser.add_argument(
        "--model-uri", default="", help="where the monitor will find the model (default: --model)"
    )
    parser.add_argument(
        "--max-images",
        type=int,
        default=DEFAULT_MAX_IMAGES,
        help=f"a seeded random subset of at most this many (default {DEFAULT_MAX_IMAGES})",
    )
    parser.add_argument(
        "--components",
        type=int,
        default=DEFAULT_COMPONENTS,
        help=f"PCA components of the embeddings (default {DEFAULT_COMPONENTS})",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")


def get_args_parser() -> argparse.ArgumentParser:
    """The job's arguments (the ProcessingJob's ContainerArguments)."""
    return job_parser(
        "skinlesion.jobs.baseline",
        "Build the monitoring baseline of a model on a dataset split.",
        add_arguments,
    )


def run_from_args(args: argparse.Namespace) -> Path:
    """Build the baseline as ``args`` say; return the output folder."""
    from skinlesion.monitoring.baseline import build_baseline

    raw = args.raw
    if raw is None and Path(DEFAULT_RAW).is_dir():
        raw = Path(DEFAULT_RAW)
    build_baseline(
        args.dataset,
        args.model,
        args.output,
        split=args.split,
        raw_dir=raw,
        max_images=args.max_images,
        components=args.components,
        batch_size=args.batch_size,
        device=args.device,
        model_uri=args.model_uri,
    )
    return Path(args.output)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the processing container; a failure exits 1 and leaves its reason."""
    args = get_args_parser().parse_args(argv)
    configure_logging()
    return run_job(JobKind.PROCESSING, "Building the baseline", lambda: run_from_args(args))


if __name__ == "__main__":
    sys.exit(main())
