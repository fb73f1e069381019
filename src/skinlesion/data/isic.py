"""Read and validate an ISIC 2019 style data folder: ground truth CSV, metadata CSV, JPEGs.

A data folder holds ``labels.csv`` (the ground truth: ``image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC``
with or without ``UNK``, one-hot floats), optionally ``metadata.csv`` (``image,lesion_id,...``),
and the images as ``images/<image>.jpg`` (or next to the CSV). The file names that the ISIC
challenge uses (``ISIC_2019_Training_GroundTruth.csv``, ``ISIC_2019_Training_Metadata.csv``)
are accepted too. ``labels`` may name another CSV relative to the folder (``subsets/mini.csv``):
images and metadata are still found from the folder itself.

Validation excludes bad rows, never silently: every excluded row is listed in the report with
its reason, and too many of them raise :class:`DataValidationError`.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from skinlesion.labels import CLASSES, UNKNOWN

log = logging.getLogger(__name__)

LABEL_FILES = ("labels.csv", "ISIC_2019_Training_GroundTruth.csv")
METADATA_FILES = ("metadata.csv", "ISIC_2019_Training_Metadata.csv")
IMAGES_DIR = "images"
# Written by the sample generator next to labels.csv: this folder's images are generated.
GENERATED_MARKER = "generated.json"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".JPG", ".JPEG", ".png")
# Columns of the labels CSV that are understood besides the classes; anything else is reported.
OPTIONAL_LABEL_COLUMNS = (UNKNOWN, "lesion_id")
EXAMPLES = 10

# Problem names, in the order the report lists them. Each one excludes the row except
# ``unknown_column`` (the column is ignored) and ``missing_lesion_id`` (the image is its own lesion).
PROBLEMS = (
    "missing_image",
    "unreadable_image",
    "corrupt_image",
    "duplicate_id",
    "no_label",
    "several_labels",
    "unknown_label",
    "invalid_label_value",
    "empty_id",
    "unknown_column",
    "missing_lesion_id",
)
NON_EXCLUDING = ("unknown_column", "missing_lesion_id")


class DataValidationError(ValueError):
    """The input data cannot be used as given; the message says what and what is accepted."""


@dataclass(frozen=True)
class IsicSource:
    """Where the parts of one ISIC-format dataset are."""

    root: Path
    labels_csv: Path
    metadata_csv: Path | None
    images_dir: Path
    generated: bool = False  # the folder holds GENERATED_MARKER (skinlesion sample-data)

    def image_path(self, image_id: str) -> Path | None:
        """The file of ``image_id`` (``<id>.jpg`` first), or None when there is none."""
        for folder in dict.fromkeys((self.images_dir, self.labels_csv.parent, self.root)):
            for suffix in IMAGE_SUFFIXES:
                candidate = folder / f"{image_id}{suffix}"
                if candidate.is_file():
                    return candidate
        return None


@dataclass(frozen=True)
class IsicRecord:
    """One usable row: the image, its class index into ``CLASSES``, and its lesion."""

    image: str
    label: int
    lesion_id: str
    path: Path

    @property
    def class_name(self) -> str:
        return CLASSES[self.label]


@dataclass
class Problem:
    """How many rows showed one problem, and the first few ids."""

    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, item: str) -> None:
        self.count += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(item)


@dataclass
class ValidationReport:
    """What validation found; written as ``validation_report.json``."""

    labels_csv: str
    metadata_csv: str | None
    images_dir: str
    total_rows: int = 0
    valid_rows: int = 0
    excluded_rows: int = 0
    excluded_fraction: float = 0.0
    max_invalid_fraction: float = 1.0
    columns: list[str] = field(default_factory=list)
    unknown_columns: list[str] = field(default_factory=list)
    class_counts: dict[str, int] = field(default_factory=dict)
    problems: dict[str, Problem] = field(default_factory=dict)
    excluded: list[dict[str, str]] = field(default_factory=list)  # {"image": id, "problem": p}

    def note(self, problem: str, item: str) -> None:
        """Record ``problem`` for ``item``; excluding problems also list it in ``excluded``."""
        if problem not in PROBLEMS:
            raise ValueError(f"Unknown problem {problem!r}. Accepted: {', '.join(PROBLEMS)}.")
        self.problems.setdefault(problem, Problem()).add(item)
        if problem not in NON_EXCLUDING:
            self.excluded.append({"image": item, "problem": problem})

    def finish(self, records: list[IsicRecord], max_invalid_fraction: float) -> None:
        """Fill in the totals from the records that survived."""
        self.valid_rows = len(records)
        self.excluded_rows = len(self.excluded)
        self.excluded_fraction = self.excluded_rows / self.total_rows if self.total_rows else 0.0
        self.max_invalid_fraction = max_invalid_fraction
        counts = Counter(r.class_name for r in records)
        self.class_counts = {c: counts.get(c, 0) for c in CLASSES}

    @property
    def passed(self) -> bool:
        return self.valid_rows > 0 and self.excluded_fraction <= self.max_invalid_fraction

    def summary(self) -> str:
        """One line: the counts per problem."""
        found = ", ".join(f"{name}: {p.count}" for name, p in self.problems.items()) or "none"
        return (
            f"{self.valid_rows} of {self.total_rows} rows usable, {self.excluded_rows} excluded "
            f"({self.excluded_fraction:.1%}); problems: {found}"
        )

    def raise_if_failed(self) -> None:
        """Raise DataValidationError when nothing is usable or too large a share was excluded."""
        if self.passed:
            return
        details = "; ".join(
            f"{name} x{p.count} (first: {', '.join(p.examples)})"
            for name, p in self.problems.items()
            if name not in NON_EXCLUDING
        )
        if self.valid_rows == 0:
            raise DataValidationError(
                f"No usable rows in {self.labels_csv}: all {self.total_rows} rows were excluded. "
                f"{details or 'The CSV has no data rows.'}"
            )
        raise DataValidationError(
            f"{self.excluded_rows} of {self.total_rows} rows ({self.excluded_fraction:.1%}) in "
            f"{self.labels_csv} were excluded, more than max_invalid_fraction="
            f"{self.max_invalid_fraction:g}. {details}. Fix the data or raise the threshold."
        )

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["passed"] = self.passed
        payload["problems"] = {
            name: {**asdict(p), "excludes_row": name not in NON_EXCLUDING}
            for name, p in self.problems.items()
        }
        return payload

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))


@dataclass(frozen=True)
class ValidatedDataset:
    """The usable records of a source and the report of what was excluded."""

    source: IsicSource
    records: list[IsicRecord]
    report: ValidationReport


def _first_existing(folder: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def resolve_source(data: Path, labels: str | Path | None = None) -> IsicSource:
    """Find the labels CSV, metadata CSV and images folder of a dataset.

    ``data`` is a data folder or a ground truth CSV. ``labels`` is an optional CSV path relative
    to ``data`` (or absolute): a subset such as ``subsets/mini.csv``, whose images and metadata
    are looked up in ``data``.
    """
    data = Path(data)
    if data.is_file():
        if labels is not None:
            raise DataValidationError(
                f"Got both a CSV file ({data}) and labels={labels!s}. Pass a data folder with "
                "labels, or a CSV file alone."
            )
        root, labels_csv = data.parent, data
    elif data.is_dir():
        root = data
        if labels is not None:
            labels_csv = Path(labels) if Path(labels).is_absolute() else root / labels
            if not labels_csv.is_file():
                raise FileNotFoundError(
                    f"Labels CSV {labels_csv} does not exist. labels must be a CSV path relative "
                    f"to the data folder {root} (e.g. subsets/mini.csv) or absolute."
                )
        else:
            found = _first_existing(root, LABEL_FILES)
            if found is None:
                raise FileNotFoundError(
                    f"No ground truth CSV in {root}: expected one of {', '.join(LABEL_FILES)}, "
                    "or pass labels=<relative CSV path>."
                )
            labels_csv = found
    else:
        raise FileNotFoundError(f"Data path {data} does not exist (expected an ISIC data folder).")
    metadata = _first_existing(root, METADATA_FILES)
    images_dir = root / IMAGES_DIR if (root / IMAGES_DIR).is_dir() else root
    return IsicSource(
        root=root,
        labels_csv=labels_csv,
        metadata_csv=metadata,
        images_dir=images_dir,
        generated=(root / GENERATED_MARKER).is_file(),
    )


def read_lesion_ids(metadata_csv: Path) -> dict[str, str]:
    """``image -> lesion_id`` from a metadata CSV; images with an empty lesion_id are left out."""
    with metadata_csv.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if "image" not in columns:
            raise DataValidationError(
                f"Metadata CSV {metadata_csv} has no 'image' column (columns: {columns}). "
                "Expected image,lesion_id,... as in ISIC_2019_Training_Metadata.csv."
            )
        if "lesion_id" not in columns:
            log.warning(
                "Metadata CSV %s has no lesion_id column: each image is its own lesion",
                metadata_csv,
            )
            return {}
        return {
            row["image"].strip(): row["lesion_id"].strip()
            for row in reader
            if row.get("image") and (row.get("lesion_id") or "").strip()
        }


def _parse_label(values: list[str]) -> tuple[str, int | None]:
    """Return (problem or "", class index) for the one-hot values of CLASSES + maybe UNK."""
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        return "invalid_label_value", None
    if any(not (n == 0.0 or n == 1.0) or math.isnan(n) for n in numbers):
        return "invalid_label_value", None
    ones = [i for i, n in enumerate(numbers) if n == 1.0]
    if len(ones) > 1:
        return "several_labels", None
    if not ones:
        return "no_label", None
    if ones[0] >= len(CLASSES):
        return "unknown_label", None
    return "", ones[0]


def read_isic(
    source: IsicSource, *, check_files: bool = True
) -> tuple[list[IsicRecord], ValidationReport]:
    """Read the labels (and lesion ids) of ``source``; checks everything except image decoding.

    Raises DataValidationError when the CSV lacks the ``image`` column or a class column.
    The returned report is not yet finished (see :func:`validate_dataset`).
    """
    report = ValidationReport(
        labels_csv=str(source.labels_csv),
        metadata_csv=str(source.metadata_csv) if source.metadata_csv else None,
        images_dir=str(source.images_dir),
    )
    lesions = read_lesion_ids(source.metadata_csv) if source.metadata_csv else {}
    with source.labels_csv.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [h.strip() for h in next(reader, [])]
        missing = [c for c in ("image", *CLASSES) if c not in header]
        if missing:
            raise DataValidationError(
                f"{source.labels_csv} lacks the column(s) {', '.join(missing)} (found: "
                f"{', '.join(header) or 'no header'}). Expected the ISIC 2019 ground truth "
                f"header: image,{','.join(CLASSES)}[,{UNKNOWN}]."
            )
        report.columns = header
        report.unknown_columns = [
            c for c in header if c not in ("image", *CLASSES, *OPTIONAL_LABEL_COLUMNS)
        ]
        for column in report.unknown_columns:
            report.note("unknown_column", column)
        label_columns = [header.index(c) for c in CLASSES]
        if UNKNOWN in header:
            label_columns.append(header.index(UNKNOWN))
        image_column = header.index("image")
        lesion_column = header.index("lesion_id") if "lesion_id" in header else None

        rows: list[tuple[str, int, str | None]] = []
        labels_by_id: dict[str, set[int]] = {}
        for line, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue  # blank lines are not rows
            report.total_rows += 1
            image_id = row[image_column].strip() if len(row) > image_column else ""
            if not image_id:
                report.note("empty_id", f"line {line}")
                continue
            if len(row) < len(header):
                report.note("invalid_label_value", image_id)
                continue
            problem, label = _parse_label([row[i].strip() for i in label_columns])
            if problem or label is None:
                report.note(problem or "invalid_label_value", image_id)
                continue
            lesion = row[lesion_column].strip() if lesion_column is not None else None
            rows.append((image_id, label, lesion or None))
            labels_by_id.setdefault(image_id, set()).add(label)

    # Duplicates: later copies of an id are excluded; when the copies disagree about the class,
    # none can be trusted and all are excluded.
    seen: set[str] = set()
    records: list[IsicRecord] = []
    for image_id, label, lesion in rows:
        conflicting = len(labels_by_id[image_id]) > 1
        if image_id in seen or conflicting:
            report.note("duplicate_id", image_id)
            seen.add(image_id)
            continue
        seen.add(image_id)
        path = source.image_path(image_id) if check_files else source.images_dir / f"{image_id}.jpg"
        if path is None:
            report.note("missing_image", image_id)
            continue
        lesion_id = lesion or lesions.get(image_id)
        if lesion_id is None:
            if source.metadata_csv is not None:
                report.note("missing_lesion_id", image_id)
            lesion_id = image_id
        records.append(IsicRecord(image=image_id, label=label, lesion_id=lesion_id, path=path))
    return records, report


def exclude_unreadable(
    records: list[IsicRecord], report: ValidationReport, errors: dict[int, str]
) -> list[IsicRecord]:
    """Drop the records whose index is in ``errors`` (decode failures), noting each one as
    ``unreadable_image``, or ``corrupt_image`` when it decodes but libjpeg reported corrupt data
    (part of the picture would be grey)."""
    from skinlesion.data.images import is_corrupt_error

    for index in sorted(errors):
        if is_corrupt_error(errors[index]):
            report.note("corrupt_image", records[index].image)
            log.warning("Corrupt image %s: %s", records[index].path, errors[index])
        else:
            report.note("unreadable_image", records[index].image)
            log.warning("Unreadable image %s: %s", records[index].path, errors[index])
    return [r for i, r in enumerate(records) if i not in errors]


def validate_dataset(
    data: Path,
    labels: str | Path | None = None,
    *,
    max_invalid_fraction: float = 0.05,
    decode: bool = True,
    workers: int = 0,
    raise_on_failure: bool = True,
) -> ValidatedDataset:
    """Validate a data folder: schema, labels, duplicates, missing and (if ``decode``) unreadable
    or corrupt images. Bad rows are excluded and listed in the report; DataValidationError when the
    excluded share exceeds ``max_invalid_fraction`` (unless ``raise_on_failure`` is False).
    """
    source = resolve_source(data, labels)
    records, report = read_isic(source)
    if decode and records:
        from skinlesion.data.images import check_images

        errors = check_images([r.path for r in records], workers=workers)
        records = exclude_unreadable(records, report, errors)
    report.finish(records, max_invalid_fraction)
    log.info("Validated %s: %s", source.labels_csv, report.summary())
    if raise_on_failure:
        report.raise_if_failed()
    return ValidatedDataset(source=source, records=records, report=report)
