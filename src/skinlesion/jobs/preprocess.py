"""The preprocessing job (a SageMaker processing job): validate, split, resize, describe.

Reads an ISIC-format data folder from ``--input`` and writes the dataset folder that
``skinlesion.data.store`` describes to ``--output``: one folder of uint8 arrays per split,
``manifest.json``, ``stats.json`` (the drift baseline) and ``validation_report.json``.
Run as ``python -m skinlesion.jobs.preprocess``; a failure is logged and exits non-zero.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from skinlesion.config import PreprocessConfig
from skinlesion.contract import PROCESSING_INPUT, PROCESSING_OUTPUT, JobKind, run_job
from skinlesion.data.images import load_images
from skinlesion.data.isic import DataValidationError, exclude_unreadable, read_isic, resolve_source
from skinlesion.data.split import class_weights, split_records
from skinlesion.data.stats import image_statistics, original_size_summary
from skinlesion.data.store import (
    MANIFEST,
    SPLITS,
    STATS,
    VALIDATION_REPORT,
    SplitArrays,
    write_json,
    write_split,
    write_split_metadata,
)
from skinlesion.labels import CLASSES
from skinlesion.logs import configure_logging

log = logging.getLogger(__name__)

DEFAULT_INPUT = f"{PROCESSING_INPUT}/data"
DEFAULT_OUTPUT = f"{PROCESSING_OUTPUT}/dataset"
FORMAT_VERSION = 1
RESIZE = "centre_crop"  # see skinlesion.data.images


def run(
    input_dir: Path,
    output_dir: Path,
    config: PreprocessConfig,
    labels: str | None = None,
    *,
    source_uri: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Validate, split and resize the data in ``input_dir``; write the dataset to ``output_dir``.

    ``labels`` is an optional labels CSV relative to ``input_dir`` (e.g. ``subsets/mini.csv``);
    ``source_uri`` is recorded in the manifest as the data's origin (default: ``input_dir``).
    Returns the manifest. Raises DataValidationError when more than
    ``config.max_invalid_fraction`` of the rows are unusable (the report is written first).
    """
    started = time.perf_counter()
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    source = resolve_source(input_dir, labels)
    log.info("Preprocessing %s (labels %s) into %s", input_dir, source.labels_csv, output_dir)
    records, report = read_isic(source)
    split = split_records(
        records,
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
        seed=config.seed,
    )
    # Decode in split order, so that each split is one contiguous slice of the array.
    ordered = [record for name in SPLITS for record in split.splits[name]]
    loaded = load_images(
        [r.path for r in ordered], config.image_size, workers=config.workers, progress=progress
    )
    kept = exclude_unreadable(ordered, report, loaded.errors)
    report.finish(kept, config.max_invalid_fraction)
    output_dir.mkdir(parents=True, exist_ok=True)
    report.write(output_dir / VALIDATION_REPORT)
    log.info("Validation: %s", report.summary())
    report.raise_if_failed()

    ok = loaded.ok
    metadata = read_image_metadata(source.metadata_csv) if source.metadata_csv else None
    warnings: list[str] = []
    split_info: dict[str, dict[str, Any]] = {}
    train_images: np.ndarray | None = None
    train_labels: np.ndarray | None = None
    start = 0
    for name in SPLITS:
        stop = start + len(split.splits[name])
        keep = ok[start:stop]
        members = [r for r, k in zip(split.splits[name], keep, strict=True) if k]
        images = loaded.images[start:stop]
        images = images if keep.all() else images[keep]
        labels_array = np.array([r.label for r in members], dtype=np.int64)
        write_split(
            output_dir,
            name,
            SplitArrays(
                images=images,
                labels=labels_array,
                image_ids=[r.image for r in members],
                lesion_ids=[r.lesion_id for r in members],
            ),
        )
        if metadata is not None:
            write_split_metadata(output_dir, name, [r.image for r in members], metadata)
        counts = np.bincount(labels_array, minlength=len(CLASSES))
        split_info[name] = {
            "count": len(members),
            "lesions": len({r.lesion_id for r in members}),
            "class_counts": {c: int(n) for c, n in zip(CLASSES, counts, strict=True)},
        }
        absent = [c for c, n in zip(CLASSES, counts, strict=True) if n == 0]
        if absent:
            warnings.append(f"split {name} has no images of {', '.join(absent)}")
        if name == "train":
            train_images, train_labels = images, labels_array
        start = stop
    for warning in warnings:
        log.warning("%s", warning)
    if train_images is None or train_labels is None or len(train_labels) == 0:
        raise DataValidationError(
            f"The training split is empty ({report.valid_rows} usable rows); need at least one "
            "image per class to train."
        )

    baseline = image_statistics(train_images)
    stats = {
        "image_size": config.image_size,
        "classes": list(CLASSES),
        "splits": {
            name: info["class_counts"] | {"total": info["count"]}
            for name, info in split_info.items()
        },
        "train": baseline,
        "original_size": original_size_summary(loaded.original_sizes[ok]),
    }
    write_json(output_dir / STATS, stats)

    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "classes": list(CLASSES),
        "image_size": config.image_size,
        "resize": RESIZE,
        "splits": split_info,
        "class_weights": class_weights(train_labels),
        "normalization": {
            "mean": [round(v / 255.0, 6) for v in baseline["channel_mean"]],
            "std": [round(v / 255.0, 6) for v in baseline["channel_std"]],
        },
        "source": {
            "uri": source_uri or str(input_dir),
            "labels_csv": _relative(source.labels_csv, source.root),
            "metadata_csv": _relative(source.metadata_csv, source.root)
            if source.metadata_csv
            else None,
            "lesion_ids": "metadata" if source.metadata_csv else "image",
            "generated": source.generated,
        },
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "preprocess_config": dataclasses.asdict(config),
        "validation": {
            "total_rows": report.total_rows,
            "valid_rows": report.valid_rows,
            "excluded_rows": report.excluded_rows,
            "problems": {k: p.count for k, p in report.problems.items()},
        },
        "warnings": warnings,
    }
    write_json(output_dir / MANIFEST, manifest)
    log.info(
        "Wrote %s: %s in %.1f s",
        output_dir,
        ", ".join(f"{name} {info['count']}" for name, info in split_info.items()),
        time.perf_counter() - started,
    )
    return manifest


# Column names of the same field in HAM10000 (as shipped here) and ISIC 2019's metadata CSV.
METADATA_ALIASES = {
    "age_approx": ("age_approx", "age"),
    "sex": ("sex",),
    "anatom_site": ("anatom_site", "anatom_site_general", "localization"),
}


def read_image_metadata(metadata_csv: Path) -> dict[str, dict[str, str]]:
    """``image -> {age_approx, sex, anatom_site}`` from the source's metadata CSV (for subgroups).

    Values are kept as written (stripped, lower-cased for sex and site); a missing column or
    cell is an empty string, and ``unknown`` counts as empty.
    """
    import csv

    out: dict[str, dict[str, str]] = {}
    with Path(metadata_csv).open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        found = {
            name: next((c for c in aliases if c in columns), None)
            for name, aliases in METADATA_ALIASES.items()
        }
        missing = [name for name, column in found.items() if column is None]
        if missing:
            log.warning(
                "Metadata CSV %s has no column for %s (accepted: %s): subgroups by it are unknown",
                metadata_csv,
                ", ".join(missing),
                METADATA_ALIASES,
            )
        for row in reader:
            image = (row.get("image") or "").strip()
            if not image:
                continue
            values: dict[str, str] = {}
            for name, column in found.items():
                value = (row.get(column) or "").strip() if column else ""
                value = value.lower() if name != "age_approx" else value
                values[name] = "" if value in ("unknown", "nan") else value
            out[image] = values
    return out


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def get_args_parser() -> argparse.ArgumentParser:
    """The job's arguments (SageMaker passes them as ContainerArguments)."""
    defaults = PreprocessConfig()
    parser = argparse.ArgumentParser(
        prog="python -m skinlesion.jobs.preprocess",
        description="Validate, split and resize an ISIC 2019 format dataset.",
    )
    parser.add_argument("--input", type=Path, default=Path(DEFAULT_INPUT), help="ISIC data folder")
    parser.add_argument(
        "--output", type=Path, default=Path(DEFAULT_OUTPUT), help="dataset folder to write"
    )
    parser.add_argument(
        "--labels", default=None, help="labels CSV relative to --input (e.g. subsets/mini.csv)"
    )
    parser.add_argument(
        "--source-uri", default=None, help="where the input came from (recorded in the manifest)"
    )
    parser.add_argument("--image-size", type=int, default=defaults.image_size)
    parser.add_argument("--val-fraction", type=float, default=defaults.val_fraction)
    parser.add_argument("--test-fraction", type=float, default=defaults.test_fraction)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--max-invalid-fraction", type=float, default=defaults.max_invalid_fraction)
    parser.add_argument(
        "--workers", type=int, default=defaults.workers, help="decode processes (0: one per core)"
    )
    parser.add_argument("--log-level", default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse arguments, run, and exit non-zero with a logged reason on failure."""
    args = get_args_parser().parse_args(argv)
    configure_logging(args.log_level)

    def body() -> None:
        config = PreprocessConfig(
            image_size=args.image_size,
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
            seed=args.seed,
            max_invalid_fraction=args.max_invalid_fraction,
            workers=args.workers,
        )
        run(args.input, args.output, config, args.labels, source_uri=args.source_uri)

    return run_job(JobKind.PROCESSING, "Preprocessing", body)


if __name__ == "__main__":
    sys.exit(main())
