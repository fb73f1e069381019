"""Data sub-commands of the ``skinlesion`` CLI: sample-data, validate, fetch-isic."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

ISIC_2019_COLLECTION = 65  # "Challenge 2019: Training" in the ISIC Archive
ISIC_2019_BASE_URL = "https://isic-challenge-data.s3.amazonaws.com/2019"
ISIC_2019_GROUND_TRUTH = "ISIC_2019_Training_GroundTruth.csv"
ISIC_2019_METADATA = "ISIC_2019_Training_Metadata.csv"


@dataclass(frozen=True)
class FetchPlan:
    """What ``fetch-isic`` does: isic-cli commands, then plain HTTPS downloads."""

    commands: list[list[str]]
    downloads: list[tuple[str, Path]]  # (url, destination)

    def describe(self) -> list[str]:
        """The steps as shell lines (what ``--dry-run`` prints)."""
        lines = [shlex.join(command) for command in self.commands]
        lines += [shlex.join(["curl", "-fL", "-o", str(dest), url]) for url, dest in self.downloads]
        return lines


def isic_2019_plan(out_dir: Path, *, isic_binary: str = "isic") -> FetchPlan:
    """Download ISIC 2019 training into ``out_dir`` in this project's layout.

    ``images/`` receives the JPEGs (isic-cli also writes its own metadata.csv, attribution.txt
    and licenses/ there); ``labels.csv`` and ``metadata.csv`` are the challenge's CSVs.
    """
    out_dir = Path(out_dir)
    return FetchPlan(
        commands=[
            [
                isic_binary,
                "image",
                "download",
                "--collections",
                str(ISIC_2019_COLLECTION),
                str(out_dir / "images"),
            ]
        ],
        downloads=[
            (f"{ISIC_2019_BASE_URL}/{ISIC_2019_GROUND_TRUTH}", out_dir / "labels.csv"),
            (f"{ISIC_2019_BASE_URL}/{ISIC_2019_METADATA}", out_dir / "metadata.csv"),
        ],
    )


def _sample_data(args: argparse.Namespace) -> int:
    from skinlesion.data.sample import write_sample

    summary = write_sample(
        args.out, n_per_class=args.per_class, image_size=args.image_size, seed=args.seed
    )
    log.info("Sample: %d images, %d lesions in %s", summary.images, summary.lesions, summary.root)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from skinlesion.data.isic import validate_dataset

    result = validate_dataset(
        args.data,
        args.labels,
        max_invalid_fraction=args.max_invalid_fraction,
        decode=not args.no_decode,
        workers=args.workers,
        raise_on_failure=False,
    )
    sys.stdout.write(json.dumps(result.report.to_dict(), indent=2, sort_keys=True) + "\n")
    if not result.report.passed:
        log.error("Validation failed: %s", result.report.summary())
        return 1
    return 0


def _fetch_isic(args: argparse.Namespace) -> int:
    plan = isic_2019_plan(args.out, isic_binary=args.isic_binary)
    if args.dry_run:
        sys.stdout.write("\n".join(plan.describe()) + "\n")
        return 0
    if shutil.which(args.isic_binary) is None:
        raise FileNotFoundError(
            f"The isic-cli command {args.isic_binary!r} was not found on PATH. Install it with "
            "`pip install 'skinlesion[data]'` (`make data` does), or pass --isic-binary, then "
            "run again."
        )
    Path(args.out).mkdir(parents=True, exist_ok=True)
    for command in plan.commands:
        log.info("Running %s", shlex.join(command))
        subprocess.run(command, check=True)
    for url, destination in plan.downloads:
        log.info("Downloading %s -> %s", url, destination)
        partial = destination.with_suffix(destination.suffix + ".partial")
        urllib.request.urlretrieve(url, partial)
        partial.replace(destination)
    log.info("ISIC 2019 training data is in %s (validate it with `skinlesion validate`)", args.out)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add sample-data, validate and fetch-isic to the ``skinlesion`` CLI."""
    sample = subparsers.add_parser(
        "sample-data",
        help="write a generated ISIC-format dataset (labels.csv, metadata.csv, images/)",
    )
    sample.add_argument("out", type=Path, help="folder to write")
    sample.add_argument("--per-class", type=int, default=60, help="images per class (default 60)")
    sample.add_argument("--image-size", type=int, default=128, help="pixels per side (default 128)")
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(func=_sample_data)

    validate = subparsers.add_parser(
        "validate", help="validate an ISIC-format data folder and print the report as JSON"
    )
    validate.add_argument(
        "data", type=Path, help="data folder (labels.csv, metadata.csv, images/) or a CSV"
    )
    validate.add_argument(
        "--labels", default=None, help="labels CSV relative to DATA, e.g. subsets/mini.csv"
    )
    validate.add_argument("--max-invalid-fraction", type=float, default=0.05)
    validate.add_argument(
        "--workers", type=int, default=0, help="decode processes (0: one per core)"
    )
    validate.add_argument("--no-decode", action="store_true", help="skip decoding the images")
    validate.set_defaults(func=_validate)

    fetch = subparsers.add_parser(
        "fetch-isic",
        help="download the ISIC 2019 training images and ground truth (needs isic-cli)",
    )
    fetch.add_argument("out", type=Path, help="folder to fill: images/, labels.csv, metadata.csv")
    fetch.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    fetch.add_argument(
        "--isic-binary", default="isic", help="the isic-cli executable (default isic)"
    )
    fetch.set_defaults(func=_fetch_isic)
