"""The ``skinlesion serve`` sub-command, and ``serve`` as SageMaker starts an inference container."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from skinlesion.capture import DEFAULT_VARIANT
from skinlesion.serving.settings import (
    DEFAULT_PORT,
    PORT_ENV,
    RUNTIMES,
    VERSION_ENV,
    WORKERS_ENV,
    ServingSettings,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The serving options (shared by ``skinlesion serve`` and the container's ``serve``)."""
    defaults = ServingSettings()
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="model.json + model.pt, or a folder holding model.tar.gz, or the archive "
        "(default /opt/ml/model, as SageMaker mounts it)",
    )
    parser.add_argument("--host", default=defaults.host, help=f"default {defaults.host}")
    parser.add_argument(
        "--port", type=int, default=None, help=f"default ${PORT_ENV} or {DEFAULT_PORT}"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help=f"worker processes (default ${WORKERS_ENV}, else one per 4 CPUs)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="inference threads per worker (0: up to 4 per CPU share)",
    )
    parser.add_argument(
        "--runtime",
        default=defaults.runtime,
        choices=RUNTIMES,
        help="auto (onnx if installed, else torchscript), onnx, torchscript, torch",
    )
    parser.add_argument("--max-batch-size", type=int, default=defaults.max_batch_size)
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=defaults.max_wait_ms,
        help="longest wait for a batch to fill (default %(default)s ms)",
    )
    parser.add_argument("--max-images", type=int, default=defaults.max_images)
    parser.add_argument(
        "--capture-dir", type=Path, default=None, help="write SageMaker-format data capture here"
    )
    parser.add_argument(
        "--capture-percentage",
        type=float,
        default=defaults.capture_percentage,
        help="share of requests captured (default 100)",
    )
    parser.add_argument("--endpoint-name", default=defaults.endpoint_name)
    parser.add_argument("--variant-name", default=DEFAULT_VARIANT)
    parser.add_argument(
        "--model-version", default=None, help=f"reported version (default ${VERSION_ENV})"
    )
    parser.add_argument(
        "--no-explain", action="store_true", help="turn ?explain=gradcam off (no model copy)"
    )


def settings_from_args(args: argparse.Namespace) -> ServingSettings:
    """Command-line options over SageMaker's environment variables over the defaults."""
    base = ServingSettings.from_sagemaker_environment()
    return ServingSettings(
        model_dir=args.model_dir or base.model_dir,
        host=args.host,
        port=args.port if args.port is not None else base.port,
        workers=args.workers if args.workers is not None else base.workers,
        threads=args.threads,
        runtime=args.runtime,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_images=args.max_images,
        capture_dir=args.capture_dir,
        capture_percentage=args.capture_percentage,
        endpoint_name=args.endpoint_name,
        variant_name=args.variant_name,
        model_version=args.model_version if args.model_version is not None else base.model_version,
        explain=not args.no_explain,
    )


def serve_from_args(args: argparse.Namespace) -> int:
    """Check the model directory, then serve until stopped (the ``serve`` command's body)."""
    from skinlesion.serving.server import serve

    settings = settings_from_args(args)
    if not settings.model_dir.exists():
        raise FileNotFoundError(
            f"Model directory {settings.model_dir} does not exist: pass --model-dir with a "
            "model bundle (model.json + model.pt) or a folder holding model.tar.gz."
        )
    return serve(
        settings, log_level=args.log_level or os.environ.get("SKINLESION_LOG_LEVEL", "INFO")
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``serve`` to the ``skinlesion`` CLI."""
    parser = subparsers.add_parser(
        "serve",
        help="serve a model bundle over HTTP with SageMaker's contract (/ping, /invocations)",
    )
    add_arguments(parser)
    parser.set_defaults(func=serve_from_args)


def sagemaker_serve(argv: Sequence[str] | None = None) -> int:
    """Entry point ``serve``: SageMaker runs ``docker run <image> serve`` with no arguments."""
    from skinlesion.serving.__main__ import main

    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["serve"]:
        arguments = arguments[1:]  # an ENTRYPOINT ["serve"] image is started as `serve serve`
    return main(arguments)
