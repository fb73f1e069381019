"""The ``skinlesion`` command line: one sub-command per task, each with its own ``--help``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from skinlesion import __version__
from skinlesion.backends.errors import BackendError
from skinlesion.logs import configure_logging

# Each module exposes ``register(subparsers)`` and sets ``func`` on its parsers. Importing them
# must stay cheap (no torch at import) so that ``--help`` is instant.
COMMAND_MODULES: tuple[str, ...] = (
    "skinlesion.data.commands",
    "skinlesion.backends.commands",
    "skinlesion.jobs.evaluate",
    "skinlesion.kubeflow.commands",
    "skinlesion.serving.commands",
    "skinlesion.monitoring.commands",
)

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skinlesion",
        description="Skin lesion classification pipeline (ISIC 2019) for Kubeflow and SageMaker.",
    )
    parser.add_argument("--version", action="version", version=f"skinlesion {__version__}")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING, ERROR")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        result = args.func(args)
    except (ValueError, LookupError, FileNotFoundError, BackendError) as error:
        log.error("%s", error)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
