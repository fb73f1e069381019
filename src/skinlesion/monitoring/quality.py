"""Model quality on labelled traffic: ground truth joined to captured predictions on eventId.

Ground truth is uploaded after the fact (a biopsy result arrives days later), in either form:

- SageMaker Model Monitor's ground-truth JSON lines, one per request::

      {"groundTruthData": {"data": "MEL", "encoding": "CSV"},
       "eventMetadata": {"eventId": "<the capture record's eventId>"}, "eventVersion": "0"}

  ``data`` holds one class code per image of the request, comma-separated (``"MEL,NV"``);
- a CSV with the columns ``eventId,label`` and, for requests of several images, ``index``
  (the image's position in the request, 0 first).

Files are read from a folder (recursively: ``*.jsonl``, ``*.json``, ``*.csv``), one file, or an
s3:// prefix. The quality checks compare the window's balanced accuracy and MEL sensitivity with
the baseline's (the validation split's) and flag a drop only when it is both larger than the
tolerance and significant (one-sided tests), so a small labelled window cannot raise an alarm
from noise alone.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from skinlesion.metrics import finite_or_none, mean_recall, recall_counts, recall_from_counts

log = logging.getLogger(__name__)

MEL = "MEL"
GROUND_TRUTH_SUFFIXES = (".jsonl", ".json", ".csv")


class GroundTruthError(ValueError):
    """A ground-truth file is not in an accepted format; the message says where and why."""


# --- reading -----------------------------------------------------------------------------------


def _files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    if root.is_dir():
        return sorted(p for p in root.rglob("*") if p.suffix in GROUND_TRUTH_SUFFIXES)
    raise FileNotFoundError(
        f"No ground truth at {root}: expected a folder of .jsonl/.csv files, one such file, "
        "or an s3:// prefix."
    )


def _check_codes(codes: list[str], classes: Sequence[str], where: str) -> list[str]:
    for code in codes:
        if code not in classes:
            raise GroundTruthError(
                f"{where}: unknown class {code!r}. Accepted: {', '.join(classes)}."
            )
    return codes


def _jsonl_rows(path: Path, classes: Sequence[str]) -> Iterator[tuple[str, list[str]]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                raw = json.loads(line)
                data = raw["groundTruthData"]["data"]
                event_id = str(raw["eventMetadata"]["eventId"])
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise GroundTruthError(
                    f"{where}: not a ground-truth record ({type(error).__name__}: {error}); "
                    'expected {"groundTruthData": {"data": "MEL", ...}, '
                    '"eventMetadata": {"eventId": "..."}}.'
                ) from None
            codes = [c.strip() for c in str(data).split(",") if c.strip()]
            yield event_id, _check_codes(codes, classes, where)


def _csv_rows(path: Path, classes: Sequence[str]) -> Iterator[tuple[str, list[str]]]:
    grouped: dict[str, dict[int, str]] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = set(reader.fieldnames or ())
        if not {"eventId", "label"} <= fields:
            raise GroundTruthError(
                f"{path}: columns {sorted(fields)}; expected eventId,label (and index for "
                "requests of several images)."
            )
        for number, row in enumerate(reader, start=2):
            where = f"{path}:{number}"
            index = int(row.get("index") or 0)
            label = _check_codes([str(row["label"]).strip()], classes, where)[0]
            grouped.setdefault(str(row["eventId"]), {})[index] = label
    for event_id, by_index in grouped.items():
        yield event_id, [by_index.get(i, "") for i in range(max(by_index) + 1)]


def read_ground_truth(source: str | Path, classes: Sequence[str]) -> dict[str, list[str]]:
    """``eventId -> [class code per image]`` from ground-truth files (folder, file or s3://).

    An image with no label in a CSV is an empty string. A later file's record for an eventId
    replaces an earlier one (a corrected label).
    """
    text = str(source)
    if text.startswith("s3://"):
        from skinlesion import storage

        with tempfile.TemporaryDirectory(prefix="skinlesion-labels-") as scratch:
            local = storage.download(text, Path(scratch) / "labels")
            return read_ground_truth(local, classes)
    labels: dict[str, list[str]] = {}
    for path in _files(Path(text)):
        rows = _csv_rows(path, classes) if path.suffix == ".csv" else _jsonl_rows(path, classes)
        for event_id, codes in rows:
            labels[event_id] = codes
    log.info("Read ground truth for %d requests from %s", len(labels), source)
    return labels


def join_labels(
    event_ids: Sequence[str],
    image_index: Sequence[int],
    ground_truth: dict[str, list[str]],
    classes: Sequence[str],
) -> np.ndarray:
    """The true class index of each window image (-1 where no label was uploaded)."""
    lookup = {c: i for i, c in enumerate(classes)}
    out = np.full(len(event_ids), -1, dtype=np.int64)
    for row, (event_id, index) in enumerate(zip(event_ids, image_index, strict=True)):
        codes = ground_truth.get(event_id)
        if codes and index < len(codes) and codes[index]:
            out[row] = lookup[codes[index]]
    return out


# --- metrics -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QualityMetrics:
    """Recall per class (NaN where a class has no labelled image) and their mean."""

    classes: tuple[str, ...]
    support: tuple[int, ...]
    hits: tuple[int, ...]
    labelled: int

    @property
    def recall(self) -> np.ndarray:
        """Recall of each class; NaN where the window has no labelled image of it."""
        return recall_from_counts(np.asarray(self.hits), np.asarray(self.support))

    @property
    def balanced_accuracy(self) -> float:
        """Mean recall over the classes present (ISIC 2019's metric); NaN with no labels."""
        return mean_recall(self.recall)

    def to_dict(self) -> dict[str, Any]:
        recall = self.recall
        return {
            "labelled": self.labelled,
            "balanced_accuracy": finite_or_none(self.balanced_accuracy),
            "recall": {c: finite_or_none(r) for c, r in zip(self.classes, recall, strict=True)},
            "support": dict(zip(self.classes, self.support, strict=True)),
        }


def quality_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]
) -> QualityMetrics:
    """Per-class hits and support of the labelled rows (``y_true >= 0``)."""
    truth = np.asarray(y_true, dtype=np.int64)
    predicted = np.asarray(y_pred, dtype=np.int64)
    mask = truth >= 0
    truth, predicted = truth[mask], predicted[mask]
    hits, support = recall_counts(truth, truth == predicted, len(classes))
    return QualityMetrics(
        classes=tuple(classes),
        support=tuple(int(v) for v in support),
        hits=tuple(int(v) for v in hits),
        labelled=int(mask.sum()),
    )


# --- checks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QualityCheck:
    """One metric of the window against the baseline."""

    metric: str
    value: float
    baseline: float
    threshold: float  # the value below which a drop is large enough to matter
    p_value: float  # one-sided: the chance of a value this low if the model were as good
    violated: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "value": finite_or_none(self.value),
            "baseline": finite_or_none(self.baseline),
            "threshold": finite_or_none(self.threshold),
            "p_value": finite_or_none(self.p_value),
            "violated": self.violated,
            "detail": self.detail,
        }


def balanced_accuracy_check(
    window: QualityMetrics,
    baseline_recall: dict[str, float | None],
    *,
    max_drop: float,
    alpha: float,
) -> QualityCheck:
    """Balanced accuracy over the classes present in the window, against the baseline's recall
    of the same classes. Violated when the drop exceeds ``max_drop`` and a one-sided z-test
    (binomial variance of each class's recall at its baseline value) rejects "no drop"."""
    recall = window.recall
    present = [i for i, n in enumerate(window.support) if n > 0]
    reference = [baseline_recall.get(window.classes[i]) for i in present]
    usable = [(i, float(r)) for i, r in zip(present, reference, strict=True) if r is not None]
    if not usable:
        return QualityCheck(
            "balanced_accuracy", math.nan, math.nan, math.nan, 1.0, False, "no labelled images"
        )
    value = float(np.mean([recall[i] for i, _ in usable]))
    expected = float(np.mean([r for _, r in usable]))
    variance = sum(r * (1 - r) / window.support[i] for i, r in usable) / len(usable) ** 2
    z = (value - expected) / math.sqrt(max(variance, 1e-12))
    p_value = float(stats.norm.cdf(z))
    threshold = expected - max_drop
    violated = value < threshold and p_value < alpha
    detail = (
        f"{value:.3f} on {sum(window.support[i] for i, _ in usable)} labelled images of "
        f"{len(usable)} classes; baseline {expected:.3f}, tolerance {max_drop:.2f}, "
        f"one-sided p {p_value:.3g}"
    )
    return QualityCheck("balanced_accuracy", value, expected, threshold, p_value, violated, detail)


def sensitivity_check(
    window: QualityMetrics,
    baseline_recall: dict[str, float | None],
    *,
    class_name: str = MEL,
    max_drop: float,
    alpha: float,
) -> QualityCheck:
    """Recall (sensitivity) of one class, MEL by default: the miss that costs a life. Violated
    when it is below baseline - ``max_drop`` and an exact one-sided binomial test at the
    baseline's recall rejects "no drop"."""
    metric = f"recall_{class_name}"
    index = window.classes.index(class_name)
    n = window.support[index]
    reference = baseline_recall.get(class_name)
    if n == 0 or reference is None:
        return QualityCheck(metric, math.nan, math.nan, math.nan, 1.0, False, "no labelled images")
    hits = window.hits[index]
    value = hits / n
    p_value = float(stats.binomtest(hits, n, float(reference), alternative="less").pvalue)
    threshold = float(reference) - max_drop
    violated = value < threshold and p_value < alpha
    detail = (
        f"{hits} of {n} {class_name} images found ({value:.3f}); baseline {reference:.3f}, "
        f"tolerance {max_drop:.2f}, one-sided binomial p {p_value:.3g}"
    )
    return QualityCheck(metric, value, float(reference), threshold, p_value, violated, detail)
