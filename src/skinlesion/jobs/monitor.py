"""The monitor processing job: a window of captured requests against the baseline.

Runs as a SageMaker processing job (``python -m skinlesion.jobs.monitor``, paths under
``/opt/ml/processing``) and as a local subprocess, unchanged. Inputs: the baseline folder
(``python -m skinlesion.jobs.baseline``), the capture folder (SageMaker's data capture layout,
any depth), optional ground truth, and the model bundle (default: the one the baseline
records). Outputs, in ``--output``:

    constraint_violations.json   the violations, in Model Monitor's layout
    monitoring_summary.json      every test, p-value and decision (``alarm``, ``data_drift``,
                                 ``quality_drop``), for the pipeline and for people
    statistics.json              the window's feature and prediction statistics
    report.html                  the self-contained HTML report with plots
    kfp_metrics.json             finite scalars for KFP's Metrics artifact

The job exits 0 whether or not it finds drift (finding drift is a result, not a failure); it
exits 1 when it cannot decide (no baseline, a model that is not the baseline's, ...).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from skinlesion.contract import PROCESSING_INPUT, PROCESSING_OUTPUT, JobKind, run_job
from skinlesion.jobs.arguments import job_parser
from skinlesion.logs import configure_logging

log = logging.getLogger(__name__)

DEFAULT_BASELINE = f"{PROCESSING_INPUT}/baseline"
DEFAULT_CAPTURE = f"{PROCESSING_INPUT}/capture"
DEFAULT_LABELS = f"{PROCESSING_INPUT}/labels"
DEFAULT_OUTPUT = f"{PROCESSING_OUTPUT}/monitor"
CHECKS = ("drift", "quality", "all")


def parse_time(text: str) -> datetime:
    """An ISO 8601 time; one without a zone is UTC."""
    from skinlesion.capture import parse_inference_time

    try:
        return parse_inference_time(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"Invalid time {text!r}: expected ISO 8601, e.g. 2024-05-01T12:00:00Z."
        ) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The job's options (shared with ``skinlesion monitor run``)."""
    parser.add_argument(
        "--baseline",
        type=Path,
        default=Path(DEFAULT_BASELINE),
        help=f"baseline folder (default {DEFAULT_BASELINE})",
    )
    parser.add_argument(
        "--capture",
        default=DEFAULT_CAPTURE,
        help=f"capture folder, .jsonl file or s3:// prefix (default {DEFAULT_CAPTURE})",
    )
    parser.add_argument(
        "--labels",
        default=DEFAULT_LABELS,
        help="ground truth: folder, file or s3:// prefix; a local path that does "
        f"not exist means none (default {DEFAULT_LABELS})",
    )
    parser.add_argument(
        "--model",
        default="",
        help="model bundle (folder, model.tar.gz or s3://); default: the one the baseline records",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path(DEFAULT_OUTPUT),
        help=f"where the outputs go (default {DEFAULT_OUTPUT})",
    )
    parser.add_argument(
        "--start",
        type=parse_time,
        default=None,
        help="window start, ISO 8601 (inclusive; default: the first record)",
    )
    parser.add_argument(
        "--end",
        type=parse_time,
        default=None,
        help="window end, ISO 8601 (exclusive; default: after the last record)",
    )
    parser.add_argument(
        "--checks", default="all", choices=CHECKS, help="drift, quality or all (default all)"
    )
    parser.add_argument(
        "--constraints",
        type=Path,
        default=None,
        help="a constraints.json whose thresholds replace the baseline's",
    )
    parser.add_argument(
        "--max-images",
        type=int,
        default=0,
        help="stop reading the window after this many images (0: all)",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")


def get_args_parser() -> argparse.ArgumentParser:
    """The job's arguments (the ProcessingJob's ContainerArguments)."""
    return job_parser(
        "skinlesion.jobs.monitor",
        "Compare a window of captured requests with the monitoring baseline.",
        add_arguments,
    )


def fetch_s3_inputs(args: argparse.Namespace, scratch: Path) -> None:
    """Replace s3:// capture, labels and model arguments by local copies under ``scratch``.

    On SageMaker the inputs arrive as local folders; someone running the job by hand may name
    S3 prefixes. The client is built from the settings here, at the job's edge.
    """
    remote = {
        name: str(getattr(args, name))
        for name in ("capture", "labels", "model")
        if str(getattr(args, name) or "").startswith("s3://")
    }
    if not remote:
        return
    from skinlesion import storage
    from skinlesion.aws import client_factory_from_environment

    s3 = client_factory_from_environment().client("s3")
    for name, uri in remote.items():
        log.info("Fetching %s from %s", name, uri)
        setattr(args, name, storage.download(uri, scratch / name, s3=s3))


def run_from_args(args: argparse.Namespace) -> dict[str, object]:
    """Run the monitor as ``args`` say; return monitoring_summary.json's content."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="skinlesion-monitor-inputs-") as scratch:
        fetch_s3_inputs(args, Path(scratch))
        return _run_local(args)


def _run_local(args: argparse.Namespace) -> dict[str, object]:
    from skinlesion.monitoring.config import MonitorConfig
    from skinlesion.monitoring.monitor import run_monitor

    labels = str(args.labels or "")
    if labels and not Path(labels).exists():
        log.info("No ground truth at %s: quality is not checked", labels)
        labels = ""
    config = None
    if args.constraints:
        raw = json.loads(args.constraints.read_text())
        config = MonitorConfig.from_dict(
            dict(raw.get("monitoring_config", raw)), str(args.constraints)
        )
    result = run_monitor(
        args.baseline,
        str(args.capture),
        args.output,
        model_path=str(args.model or ""),
        labels=labels,
        start=args.start,
        end=args.end,
        checks=args.checks,
        config=config,
        device=args.device,
        batch_size=args.batch_size,
        max_images=args.max_images,
    )
    return result.to_dict()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the processing container; a failure exits 1 and leaves its reason."""
    args = get_args_parser().parse_args(argv)
    configure_logging()
    return run_job(JobKind.PROCESSING, "Monitoring", lambda: run_from_args(args))


if __name__ == "__main__":
    sys.exit(main())
