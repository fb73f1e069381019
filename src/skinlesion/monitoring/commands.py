"""``skinlesion monitor ...``: run the monitor on this machine, build a baseline.

``skinlesion monitor run`` checks the local endpoint's captured requests (the demo endpoint's
capture folder by default) against the baseline of the model it serves, building that baseline
on first use from the dataset the model was evaluated on; ``--notify`` and ``--retrain`` do
what the monitoring pipeline does after an alarm.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CHECKS = ("drift", "quality", "all")
DEFAULT_ENDPOINT = "skinlesion-demo"  # the endpoint `make demo` deploys


def register(subparsers: Any) -> None:
    """Add ``skinlesion monitor`` with its ``run`` and ``baseline`` commands."""
    monitor = subparsers.add_parser(
        "monitor", help="drift and model-quality monitoring of an endpoint's captured requests"
    )
    commands = monitor.add_subparsers(dest="monitor_command", required=True)

    run = commands.add_parser(
        "run",
        help="check the local endpoint's captured requests against the model's baseline",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    run.add_argument(
        "--endpoint",
        default=DEFAULT_ENDPOINT,
        help=f"local endpoint name (default {DEFAULT_ENDPOINT})",
    )
    run.add_argument(
        "--local-root",
        type=Path,
        default=None,
        help="the local backend's folder (default $SKINLESION_LOCAL_ROOT or "
        ".skinlesion; the demo's is build/demo/local)",
    )
    run.add_argument(
        "--capture",
        default="",
        help="capture folder, .jsonl file or s3:// prefix (default: the endpoint's)",
    )
    run.add_argument(
        "--baseline",
        default="",
        help="baseline folder (default: the served model's, built on first use)",
    )
    run.add_argument(
        "--dataset",
        default="",
        help="preprocessed dataset to build the baseline from (default: the one the "
        "served model was evaluated on)",
    )
    run.add_argument("--model", default="", help="model bundle (default: the baseline's)")
    run.add_argument("--labels", default="", help="ground truth folder or file (eventId-keyed)")
    run.add_argument(
        "--output",
        type=Path,
        default=Path("build/monitoring"),
        help="where the outputs go (default build/monitoring)",
    )
    run.add_argument(
        "--window-hours",
        type=int,
        default=0,
        help="the last N hours only (default 0: every captured request)",
    )
    run.add_argument("--checks", choices=CHECKS, default="all", help="default all")
    run.add_argument("--notify", action="store_true", help="on an alarm, log and record it")
    run.add_argument(
        "--retrain",
        action="store_true",
        help="on an alarm, request retraining on --data-uri (recorded; submitted "
        "when --kfp-host is given)",
    )
    run.add_argument("--data-uri", default="", help="the current training data, for --retrain")
    run.add_argument("--kfp-host", default="", help="KFP API to start the training pipeline on")
    run.add_argument("--fail-on-alarm", action="store_true", help="exit 1 when there is an alarm")
    run.set_defaults(func=_run)

    baseline = commands.add_parser(
        "baseline", help="build the monitoring baseline of a model on a dataset split"
    )
    from skinlesion.jobs.baseline import add_arguments

    add_arguments(baseline)
    baseline.set_defaults(func=_baseline)


def _local_backend(local_root: Path | None) -> Any:
    from skinlesion.backends import get_backend

    return get_backend("local", local_root=local_root)


def _run(args: argparse.Namespace) -> int:
    from skinlesion.capture import DEFAULT_VARIANT
    from skinlesion.monitoring import steps
    from skinlesion.monitoring.files import REPORT_FILE
    from skinlesion.monitoring.monitor import run_monitor

    backend = _local_backend(args.local_root)
    capture = args.capture
    if not capture:
        served = backend.served_model(args.endpoint)
        capture = str(Path(served.capture_uri) / args.endpoint / DEFAULT_VARIANT)
    baseline = args.baseline or backend.endpoint_baseline(args.endpoint, args.dataset)
    start, end = steps.window_bounds(args.window_hours)
    result = run_monitor(
        Path(baseline),
        capture,
        args.output,
        model_path=args.model,
        labels=args.labels,
        start=start,
        end=end,
        checks=args.checks,
    )
    summary = result.to_dict()
    print(f"{'ALARM: ' if result.alarm else ''}{result.headline()}")
    print(f"report:     {args.output / REPORT_FILE}")
    print(
        f"violations: {len(summary['violations'])} in {args.output / 'constraint_violations.json'}"
    )
    if result.alarm and args.notify:
        from skinlesion.monitoring.alarm_text import notification_text

        subject, message = notification_text(summary, endpoint_name=args.endpoint)
        backend.notify(subject, message)
    if result.alarm and args.retrain:
        from skinlesion.monitoring.retrain import kubeflow_settings, request_retraining

        made = request_retraining(
            reason=result.headline(),
            data_uri=args.data_uri,
            kubeflow=kubeflow_settings(args.kfp_host),
            record_dir=backend.retraining_record_dir(),
        )
        print(f"retraining: {json.dumps(made.to_dict())}")
    return 1 if result.alarm and args.fail_on_alarm else 0


def _baseline(args: argparse.Namespace) -> int:
    from skinlesion.jobs.baseline import run_from_args

    folder = run_from_args(args)
    print(f"baseline: {folder}")
    return 0
