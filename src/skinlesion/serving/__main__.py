"""``python -m skinlesion.serving``: the serving options alone, without the rest of the CLI."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from skinlesion.logs import configure_logging
from skinlesion.serving.commands import add_arguments, serve_from_args


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m skinlesion.serving",
        description="Serve a model bundle with SageMaker's contract (/ping, /invocations).",
    )
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO (default), WARNING, ERROR")
    add_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        return serve_from_args(args)
    except (ValueError, FileNotFoundError) as error:
        logging.getLogger("skinlesion.serving").error("%s", error)
        return 2


if __name__ == "__main__":
    sys.exit(main())
