"""Champion against challenger: their captured answers compared, and the promotion decision.

Each variant's capture lies under ``<capture root>/<endpoint>/<variant>/`` (SageMaker's layout,
and the local endpoint's). Per variant: the requests and images captured, the predicted-class
distribution of the assessable images, their mean malignancy score (where the bundle has an
operating point), and, where ground truth has arrived (joined on eventId, as
:mod:`skinlesion.monitoring.quality` joins it), balanced accuracy and MEL sensitivity. Between the
two: the Jensen-Shannon distance of the predicted-class distributions (base 2: 0 for the same
distribution, 1 for disjoint ones).

The decision rule (:func:`decide`): a challenger is promoted or retired on labelled quality only,
never on its prediction distribution alone (a different distribution says the models disagree,
not which one is right):

1. fewer than ``min_requests`` captured requests on either variant: **hold** (keep the weights);
2. fewer than ``min_labelled`` labelled images on either variant: **hold**;
3. challenger balanced accuracy >= champion's + ``margin``: **promote** (the challenger takes
   all traffic and then becomes the endpoint's only variant);
4. challenger balanced accuracy < champion's - ``margin``: **retire** (the champion takes all
   traffic and serves alone again);
5. otherwise **hold**.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from skinlesion.capture import (
    CHALLENGER_VARIANT,
    CHAMPION_VARIANT,
    CaptureRecord,
    iter_capture_records,
)
from skinlesion.monitoring.drift import jensen_shannon_distance
from skinlesion.monitoring.quality import join_labels, quality_metrics, read_ground_truth

log = logging.getLogger(__name__)

MEL = "MEL"


class Decision(enum.StrEnum):
    """What promotion does with the challenger."""

    PROMOTE = "promote"  # the challenger takes all traffic, then serves alone
    RETIRE = "retire"  # the champion takes all traffic back, then serves alone
    HOLD = "hold"  # the weights stay as they are; not enough evidence either way


@dataclass(frozen=True)
class PromotionRule:
    """The thresholds of :func:`decide` (module docstring)."""

    min_requests: int = 100
    min_labelled: int = 50
    margin: float = 0.02

    def __post_init__(self) -> None:
        if self.min_requests < 1 or self.min_labelled < 1:
            raise ValueError(
                f"min_requests ({self.min_requests}) and min_labelled ({self.min_labelled}) "
                "must be >= 1."
            )
        if not 0 <= self.margin < 1:
            raise ValueError(f"Invalid margin {self.margin}: 0 <= margin < 1.")


@dataclass(frozen=True)
class VariantSummary:
    """What one variant answered in the window."""

    name: str
    requests: int
    images: int
    assessable: int
    class_counts: dict[str, int]
    mean_malignancy: float | None
    labelled: int = 0
    balanced_accuracy: float | None = None
    mel_sensitivity: float | None = None

    @property
    def class_distribution(self) -> dict[str, float]:
        """Each class's share of the assessable images' top classes (all 0 with none)."""
        total = sum(self.class_counts.values())
        return {c: (n / total if total else 0.0) for c, n in self.class_counts.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "requests": self.requests,
            "images": self.images,
            "assessable": self.assessable,
            "class_counts": self.class_counts,
            "class_distribution": self.class_distribution,
            "mean_malignancy": self.mean_malignancy,
            "labelled": self.labelled,
            "balanced_accuracy": self.balanced_accuracy,
            "mel_sensitivity": self.mel_sensitivity,
        }


@dataclass(frozen=True)
class VariantComparison:
    """Champion and challenger side by side, the distance between them, and the decision."""

    champion: VariantSummary
    challenger: VariantSummary
    distance: float
    decision: Decision
    reason: str
    rule: PromotionRule = field(default_factory=PromotionRule)

    def to_dict(self) -> dict[str, Any]:
        return {
            "champion": self.champion.to_dict(),
            "challenger": self.challenger.to_dict(),
            "js_distance": self.distance,
            "decision": self.decision.value,
            "reason": self.reason,
            "rule": {
                "min_requests": self.rule.min_requests,
                "min_labelled": self.rule.min_labelled,
                "margin": self.rule.margin,
            },
        }


def summarize_variant(
    name: str,
    records: Iterable[CaptureRecord],
    classes: Sequence[str],
    ground_truth: dict[str, list[str]] | None = None,
) -> VariantSummary:
    """Count one variant's captured answers; quality where ``ground_truth`` labels them."""
    lookup = {c: i for i, c in enumerate(classes)}
    counts = dict.fromkeys(classes, 0)
    requests = images = 0
    malignancy: list[float] = []
    event_ids: list[str] = []
    indexes: list[int] = []
    predicted: list[int] = []
    for record in records:
        body = record.output_json()
        predictions = body.get("predictions") if isinstance(body, dict) else None
        if not isinstance(predictions, list):
            raise ValueError(
                f"{record.source or record.event_id}: the captured answer has no 'predictions' "
                "list; expected the serving app's JSON answer."
            )
        requests += 1
        for index, prediction in enumerate(predictions):
            images += 1
            if not prediction.get("assessable", True):
                continue
            top = str(prediction["top_class"])
            if top not in lookup:
                raise ValueError(
                    f"{record.source or record.event_id}: top_class {top!r} is not one of "
                    f"the classes {list(classes)}."
                )
            counts[top] += 1
            if "malignancy_score" in prediction:
                malignancy.append(float(prediction["malignancy_score"]))
            event_ids.append(record.event_id)
            indexes.append(index)
            predicted.append(lookup[top])
    labelled, balanced, mel = 0, None, None
    if ground_truth:
        truth = join_labels(event_ids, indexes, ground_truth, classes)
        metrics = quality_metrics(truth, np.asarray(predicted, dtype=np.int64), classes)
        labelled = metrics.labelled
        if labelled:
            balanced = _finite(metrics.balanced_accuracy)
            if MEL in lookup:
                mel = _finite(float(metrics.recall[lookup[MEL]]))
    return VariantSummary(
        name=name,
        requests=requests,
        images=images,
        assessable=sum(counts.values()),
        class_counts=counts,
        mean_malignancy=float(np.mean(malignancy)) if malignancy else None,
        labelled=labelled,
        balanced_accuracy=balanced,
        mel_sensitivity=mel,
    )


def js_distance(p: dict[str, float], q: dict[str, float]) -> float:
    """Jensen-Shannon distance (base 2) of two distributions over ``p``'s classes, 0 to 1; NaN
    when a variant gave no assessable answer (it has no distribution)."""
    a = np.array([p[c] for c in p], dtype=np.float64)
    b = np.array([q.get(c, 0.0) for c in p], dtype=np.float64)
    if a.sum() == 0 or b.sum() == 0:
        return float("nan")
    return jensen_shannon_distance(a, b)


def decide(
    champion: VariantSummary, challenger: VariantSummary, rule: PromotionRule
) -> tuple[Decision, str]:
    """The promotion decision and its reason (module docstring: the rule)."""
    for summary in (champion, challenger):
        if summary.requests < rule.min_requests:
            return Decision.HOLD, (
                f"{summary.name} has {summary.requests} captured requests; the decision needs "
                f"{rule.min_requests} on each variant"
            )
    for summary in (champion, challenger):
        if summary.labelled < rule.min_labelled or summary.balanced_accuracy is None:
            return Decision.HOLD, (
                f"{summary.name} has {summary.labelled} labelled images; the decision needs "
                f"{rule.min_labelled} on each variant (promotion is decided on ground truth, "
                "never on the prediction distribution alone)"
            )
    assert champion.balanced_accuracy is not None and challenger.balanced_accuracy is not None
    gap = challenger.balanced_accuracy - champion.balanced_accuracy
    spelled = (
        f"challenger balanced accuracy {challenger.balanced_accuracy:.4f} vs champion "
        f"{champion.balanced_accuracy:.4f} (margin {rule.margin:g})"
    )
    # A small tolerance: 0.80 + 0.02 is 0.8200000000000001 in floating point.
    if gap >= rule.margin - 1e-9:
        return Decision.PROMOTE, spelled
    if gap < -rule.margin:
        return Decision.RETIRE, spelled
    return Decision.HOLD, f"{spelled}: within the margin"


def compare_variants(
    capture_uri: str,
    endpoint_name: str,
    *,
    labels_uri: str = "",
    rule: PromotionRule | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    s3_client: Any = None,
    champion: str = CHAMPION_VARIANT,
    challenger: str = CHALLENGER_VARIANT,
) -> VariantComparison:
    """Read both variants' capture under ``capture_uri`` (a folder or s3:// prefix) and compare."""
    rule = rule or PromotionRule()
    root = capture_uri.rstrip("/")
    records = {
        name: _records(f"{root}/{endpoint_name}/{name}", start, end, s3_client)
        for name in (champion, challenger)
    }
    classes = _classes(records[champion] + records[challenger])
    truth = read_ground_truth(labels_uri, classes) if labels_uri else None
    summaries = {
        name: summarize_variant(name, found, classes, truth) for name, found in records.items()
    }
    distance = js_distance(
        summaries[champion].class_distribution, summaries[challenger].class_distribution
    )
    decision, reason = decide(summaries[champion], summaries[challenger], rule)
    log.info(
        "Endpoint %s: %s (%s); JS distance of predicted classes %.4f",
        endpoint_name,
        decision.value,
        reason,
        distance,
    )
    return VariantComparison(
        summaries[champion], summaries[challenger], distance, decision, reason, rule
    )


def _records(
    uri: str, start: datetime | None, end: datetime | None, s3_client: Any
) -> list[CaptureRecord]:
    try:
        return list(iter_capture_records(uri, start=start, end=end, s3_client=s3_client))
    except FileNotFoundError:
        log.warning("No capture at %s: the variant answered nothing captured yet", uri)
        return []


def _classes(records: Sequence[CaptureRecord]) -> list[str]:
    """The class codes, in the model's order, from the first answer that lists probabilities."""
    for record in records:
        for prediction in record.output_json().get("predictions", []):
            if "probabilities" in prediction:
                return list(prediction["probabilities"])
    from skinlesion.labels import CLASSES

    return list(CLASSES)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


__all__ = [
    "Decision",
    "PromotionRule",
    "VariantComparison",
    "VariantSummary",
    "compare_variants",
    "decide",
    "js_distance",
    "summarize_variant",
]
