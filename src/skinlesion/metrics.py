"""Classification metrics of the evaluate job: ISIC balanced accuracy, per-class, ROC, calibration.

Conventions (the ISIC 2019 challenge's, so that our number is the leaderboard's number):

- The predicted class of a row is the class of highest probability. A row whose highest
  probability is shared by several classes counts as a miss for balanced accuracy, sensitivity
  and accuracy (the reference scorer calls it "undecided"); the confusion matrix files it under
  the first of the tied classes, so that every row appears in it once.
- Balanced accuracy is the mean per-class recall over the classes present in ``y_true``.
  This module is the one implementation: the training loop (from a confusion matrix) and the
  monitor (from labelled traffic) call the same ``recall_from_counts`` and ``mean_recall``.
- Sensitivity and specificity are one-vs-rest on the predicted class (not on a 0.5 threshold):
  the mean sensitivity over present classes is the balanced accuracy.
- AUC is one-vs-rest on each class's probability; it is undefined (NaN, ``null`` in JSON) for a
  class with no positive or no negative rows, and the macro AUC averages the defined ones.
- Expected calibration error uses 15 equal-width bins of the top-label confidence, each bin
  ``(lo, hi]``, weighted by its share of the rows.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

ECE_BINS = 15
# Probabilities are rows of a softmax: each row must sum to one within this tolerance.
ROW_SUM_TOLERANCE = 1e-3
# The evaluate job refuses to publish a balanced accuracy that the reference scorer disagrees with.
REFERENCE_TOLERANCE = 1e-6


class ScorerMismatchError(RuntimeError):
    """Our balanced accuracy and the ISIC reference scorer's differ by more than the tolerance."""


@dataclass(frozen=True)
class ClassMetrics:
    """One-vs-rest metrics of one class; NaN where a metric is undefined for this test set."""

    name: str
    support: int  # rows whose true class is this one
    predicted: int  # rows predicted as this class (confusion-matrix column sum)
    sensitivity: float  # recall; NaN when support == 0
    specificity: float  # NaN when every row belongs to this class
    precision: float  # NaN when nothing is predicted as this class
    auc: float  # NaN when the class has no positive or no negative rows


@dataclass(frozen=True)
class RocCurve:
    """One class's one-vs-rest ROC curve; the first threshold (sklearn's +inf) is stored as 1.0."""

    fpr: list[float]
    tpr: list[float]
    thresholds: list[float]


@dataclass(frozen=True)
class ReliabilityBins:
    """The reliability diagram: per confidence bin, the row count, mean confidence and accuracy."""

    edges: list[float]  # n_bins + 1 values from 0 to 1
    counts: list[int]
    confidence: list[float]  # NaN for an empty bin
    accuracy: list[float]  # NaN for an empty bin


@dataclass(frozen=True)
class EvaluationResult:
    """Everything the evaluate job computes from labels and probabilities."""

    classes: tuple[str, ...]
    n_samples: int
    accuracy: float
    balanced_accuracy: float
    macro_auc: float
    ece: float
    per_class: tuple[ClassMetrics, ...]
    confusion_matrix: list[list[int]]  # rows: true class, columns: predicted class
    roc_curves: dict[str, RocCurve]
    reliability: ReliabilityBins
    n_tied_predictions: int

    def for_class(self, name: str) -> ClassMetrics:
        """The metrics of class ``name``."""
        for item in self.per_class:
            if item.name == name:
                return item
        raise KeyError(f"Unknown class {name!r}. Accepted: {', '.join(self.classes)}.")

    def flat_metrics(self) -> dict[str, float | int | None]:
        """Scalar metrics by name (``sensitivity_MEL``...); undefined values are None."""
        flat: dict[str, float | int | None] = {
            "balanced_accuracy": finite_or_none(self.balanced_accuracy),
            "macro_auc": finite_or_none(self.macro_auc),
            "ece": finite_or_none(self.ece),
            "accuracy": finite_or_none(self.accuracy),
            "n_samples": self.n_samples,
            "n_tied_predictions": self.n_tied_predictions,
        }
        for item in self.per_class:
            flat[f"sensitivity_{item.name}"] = finite_or_none(item.sensitivity)
            flat[f"specificity_{item.name}"] = finite_or_none(item.specificity)
            flat[f"precision_{item.name}"] = finite_or_none(item.precision)
            flat[f"auc_{item.name}"] = finite_or_none(item.auc)
            flat[f"support_{item.name}"] = item.support
        return flat

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dictionary (NaN becomes None)."""
        return _json_safe(asdict(self))


def finite_or_none(value: float) -> float | None:
    """``value`` as a float, or None where it is NaN or infinite (JSON has no NaN)."""
    return float(value) if math.isfinite(value) else None


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return finite_or_none(float(value))
    if isinstance(value, np.integer):
        return int(value)
    return value


def validate_predictions(
    y_true: Sequence[int] | np.ndarray,
    probabilities: np.ndarray,
    classes: Sequence[str],
) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes and values; return ``(labels int64 (N,), probabilities float64 (N, C))``."""
    labels = np.asarray(y_true)
    probs = np.asarray(probabilities, dtype=np.float64)
    n_classes = len(classes)
    if n_classes < 2:
        raise ValueError(f"Need at least 2 classes to evaluate; got {list(classes)}.")
    if probs.ndim != 2 or probs.shape[1] != n_classes:
        raise ValueError(
            f"Probabilities must have shape (N, {n_classes}) for classes {list(classes)}; "
            f"got {probs.shape}."
        )
    if labels.ndim != 1 or len(labels) != len(probs):
        raise ValueError(
            f"Labels must have shape ({len(probs)},) to match the probabilities; got {labels.shape}."
        )
    if len(labels) == 0:
        raise ValueError("Cannot evaluate an empty test set: got 0 rows.")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"Labels must be integer class indices; got dtype {labels.dtype}.")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(
            f"Labels must be class indices in [0, {n_classes - 1}]; "
            f"got values from {labels.min()} to {labels.max()}."
        )
    if not np.isfinite(probs).all():
        raise ValueError("Probabilities contain NaN or infinite values; expected softmax outputs.")
    if probs.min() < 0 or probs.max() > 1 + ROW_SUM_TOLERANCE:
        raise ValueError(
            f"Probabilities must lie in [0, 1]; got values from {probs.min():.4g} to "
            f"{probs.max():.4g} (were logits passed instead of softmax outputs?)."
        )
    row_sums = probs.sum(axis=1)
    worst = float(np.abs(row_sums - 1).max())
    if worst > ROW_SUM_TOLERANCE:
        raise ValueError(
            f"Each row of probabilities must sum to 1 (within {ROW_SUM_TOLERANCE}); "
            f"the worst row is off by {worst:.4g}."
        )
    return labels.astype(np.int64), probs


def tied_top_predictions(probabilities: np.ndarray) -> np.ndarray:
    """A boolean mask of the rows whose highest probability is shared by several classes."""
    probs = np.asarray(probabilities)
    top = probs.max(axis=1, keepdims=True)
    result: np.ndarray = (probs == top).sum(axis=1) > 1
    return result


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts (n_classes, n_classes), rows the true class, columns the predicted class."""
    flat = np.asarray(y_true, dtype=np.int64) * n_classes + np.asarray(y_pred, dtype=np.int64)
    counts: np.ndarray = np.bincount(flat, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes)


def recall_counts(
    y_true: np.ndarray, correct: np.ndarray, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(hits, support)`` per class, int64: rows of each true class, and how many are correct."""
    labels = np.asarray(y_true, dtype=np.int64)
    support = np.bincount(labels, minlength=n_classes)
    hits = np.bincount(labels[np.asarray(correct, dtype=bool)], minlength=n_classes)
    return hits.astype(np.int64), support.astype(np.int64)


def recall_from_counts(hits: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Recall ``hits / support`` of each class, float64; NaN for a class with no true rows."""
    hit_counts = np.asarray(hits, dtype=np.float64)
    support_counts = np.asarray(support, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall: np.ndarray = np.where(support_counts > 0, hit_counts / support_counts, np.nan)
    return recall


def mean_recall(recall: np.ndarray) -> float:
    """Balanced accuracy from per-class recall: the mean over the present (non-NaN) classes.

    NaN when no class is present.
    """
    values = np.asarray(recall, dtype=np.float64)
    present = ~np.isnan(values)
    return float(values[present].mean()) if present.any() else math.nan


def per_class_recall(y_true: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Recall of each class (NaN for a class absent from ``y_true``); tied rows count as misses."""
    labels = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probabilities)
    correct = (probs.argmax(axis=1) == labels) & ~tied_top_predictions(probs)
    return recall_from_counts(*recall_counts(labels, correct, probs.shape[1]))


def balanced_accuracy(y_true: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean per-class recall over the classes present in ``y_true`` (ISIC 2019's main metric)."""
    return mean_recall(per_class_recall(y_true, probabilities))


def recall_from_confusion(confusion: np.ndarray) -> np.ndarray:
    """Recall of each class from a (C, C) confusion matrix (rows: true class); NaN if absent."""
    matrix = np.asarray(confusion)
    return recall_from_counts(np.diag(matrix), matrix.sum(axis=1))


def balanced_accuracy_from_confusion(confusion: np.ndarray) -> float:
    """Balanced accuracy from a (C, C) confusion matrix (rows: true class).

    An empty matrix gives 0.0, not NaN: the training loop logs it beside the loss and accuracy
    of an empty validation pass (also 0), and its log line's regex and JSON need a number.
    """
    matrix = np.asarray(confusion)
    if matrix.sum() == 0:
        return 0.0
    return mean_recall(recall_from_confusion(matrix))


def one_vs_rest_auc(y_true: np.ndarray, scores: np.ndarray, positive: int) -> float:
    """ROC AUC of ``scores`` for class ``positive`` against the rest; NaN if undefined."""
    from sklearn.metrics import roc_auc_score

    is_positive = np.asarray(y_true) == positive
    if is_positive.all() or not is_positive.any():
        return math.nan
    return float(roc_auc_score(is_positive, scores))


def roc_curve(y_true: np.ndarray, scores: np.ndarray, positive: int) -> RocCurve:
    """The one-vs-rest ROC curve of class ``positive``; empty when it is undefined."""
    from sklearn.metrics import roc_curve as sklearn_roc_curve

    is_positive = np.asarray(y_true) == positive
    if is_positive.all() or not is_positive.any():
        return RocCurve(fpr=[], tpr=[], thresholds=[])
    fpr, tpr, thresholds = sklearn_roc_curve(is_positive, scores, drop_intermediate=True)
    # sklearn's first threshold is +inf ("predict nothing"); JSON and KFP need a finite number.
    thresholds = np.minimum(thresholds, 1.0)
    return RocCurve(fpr=fpr.tolist(), tpr=tpr.tolist(), thresholds=thresholds.tolist())


def reliability_bins(
    y_true: np.ndarray, probabilities: np.ndarray, n_bins: int = ECE_BINS
) -> ReliabilityBins:
    """Bin rows by top-label confidence into ``n_bins`` equal bins ``(lo, hi]`` over [0, 1]."""
    if n_bins < 1:
        raise ValueError(f"Invalid n_bins {n_bins}: must be >= 1.")
    labels = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probabilities, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = ((probs.argmax(axis=1) == labels) & ~tied_top_predictions(probs)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # searchsorted(side="left") puts a value equal to an edge in the bin that the edge closes.
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=n_bins)
    hit_sum = np.bincount(index, weights=correct, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(counts > 0, conf_sum / counts, np.nan)
        accuracy = np.where(counts > 0, hit_sum / counts, np.nan)
    return ReliabilityBins(
        edges=edges.tolist(),
        counts=counts.astype(int).tolist(),
        confidence=mean_conf.tolist(),
        accuracy=accuracy.tolist(),
    )


def expected_calibration_error(
    y_true: np.ndarray, probabilities: np.ndarray, n_bins: int = ECE_BINS
) -> float:
    """Top-label ECE: sum over bins of |accuracy - confidence| weighted by the bin's share."""
    bins = reliability_bins(y_true, probabilities, n_bins)
    return _ece_from_bins(bins)


def _ece_from_bins(bins: ReliabilityBins) -> float:
    total = sum(bins.counts)
    ece = 0.0
    for count, conf, acc in zip(bins.counts, bins.confidence, bins.accuracy, strict=True):
        if count:
            ece += count / total * abs(acc - conf)
    return ece


def evaluate_predictions(
    y_true: Sequence[int] | np.ndarray,
    probabilities: np.ndarray,
    classes: Sequence[str],
) -> EvaluationResult:
    """Compute every metric of the evaluation from integer labels and (N, C) probabilities."""
    labels, probs = validate_predictions(y_true, probabilities, classes)
    n_classes = len(classes)
    predicted = probs.argmax(axis=1)
    tied = tied_top_predictions(probs)
    if tied.any():
        log.warning(
            "%d of %d rows have a tied top probability; they count as misses (ISIC 'undecided').",
            int(tied.sum()),
            len(labels),
        )
    matrix = confusion_matrix(labels, predicted, n_classes)
    recall = per_class_recall(labels, probs)
    n = len(labels)
    per_class: list[ClassMetrics] = []
    roc_curves: dict[str, RocCurve] = {}
    for k, name in enumerate(classes):
        support = int(matrix[k].sum())
        column = int(matrix[:, k].sum())
        false_positive = column - int(matrix[k, k])
        negatives = n - support
        specificity = (negatives - false_positive) / negatives if negatives else math.nan
        precision = int(matrix[k, k]) / column if column else math.nan
        per_class.append(
            ClassMetrics(
                name=name,
                support=support,
                predicted=column,
                sensitivity=float(recall[k]),
                specificity=float(specificity),
                precision=float(precision),
                auc=one_vs_rest_auc(labels, probs[:, k], k),
            )
        )
        roc_curves[name] = roc_curve(labels, probs[:, k], k)
    aucs = [item.auc for item in per_class if math.isfinite(item.auc)]
    bins = reliability_bins(labels, probs)
    return EvaluationResult(
        classes=tuple(classes),
        n_samples=n,
        accuracy=float(((predicted == labels) & ~tied).mean()),
        balanced_accuracy=mean_recall(recall),
        macro_auc=float(np.mean(aucs)) if aucs else math.nan,
        ece=_ece_from_bins(bins),
        per_class=tuple(per_class),
        confusion_matrix=matrix.astype(int).tolist(),
        roc_curves=roc_curves,
        reliability=bins,
        n_tied_predictions=int(tied.sum()),
    )


def isic_balanced_accuracy(
    y_true: Sequence[int] | np.ndarray,
    probabilities: np.ndarray,
    classes: Sequence[str],
) -> float:
    """Balanced accuracy as computed by the ISIC challenge's reference scorer."""
    import pandas as pd
    from isic_challenge_scoring import metrics as isic_metrics

    labels, probs = validate_predictions(y_true, probabilities, classes)
    columns = pd.Index(list(classes))
    truth = pd.DataFrame(np.eye(len(classes))[labels], columns=columns)
    prediction = pd.DataFrame(probs, columns=columns)
    weights = pd.Series(np.ones(len(labels)))
    return float(isic_metrics.balanced_multiclass_accuracy(truth, prediction, weights))


def check_against_reference(
    result: EvaluationResult,
    reference_balanced_accuracy: float,
    tolerance: float = REFERENCE_TOLERANCE,
) -> None:
    """Raise ScorerMismatchError if our balanced accuracy is not the reference scorer's."""
    difference = abs(result.balanced_accuracy - reference_balanced_accuracy)
    if not difference <= tolerance:
        raise ScorerMismatchError(
            f"Balanced accuracy {result.balanced_accuracy!r} differs from the ISIC reference "
            f"scorer's {reference_balanced_accuracy!r} by {difference:.3g}; at most {tolerance} "
            "is accepted. The metric code and the challenge's definition have diverged."
        )


# --- Intervals and clinical figures: the operating point and subgroups ---------------------------

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_LEVEL = 0.95
# A subgroup with fewer images than this gets its numbers but is marked too small to judge.
MIN_SUBGROUP_SIZE = 30


@dataclass(frozen=True)
class Estimate:
    """A figure with its percentile bootstrap interval (NaN where undefined)."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float | None]:
        """JSON-ready: NaN becomes None."""
        return {k: finite_or_none(v) for k, v in asdict(self).items()}


def bootstrap(
    statistic: Any,
    n: int,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = BOOTSTRAP_LEVEL,
    seed: int = 0,
) -> Estimate:
    """``statistic(indices)`` on all ``n`` rows, and its percentile interval over resamples.

    Resamples where the statistic is undefined (NaN: e.g. no malignant row drawn) are left out
    of the interval; when all are, the interval is NaN.
    """
    value = float(statistic(np.arange(n))) if n else math.nan
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    draws = np.array([statistic(rng.integers(0, n, n)) for _ in range(resamples)], dtype=float)
    draws = draws[np.isfinite(draws)]
    if len(draws) == 0:
        return Estimate(value, math.nan, math.nan)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(draws, [tail, 1.0 - tail])
    return Estimate(value, float(low), float(high))


def binary_rates(refer: np.ndarray, positive: np.ndarray) -> tuple[float, float]:
    """(sensitivity, specificity) of a yes/no decision; NaN where a side has no rows."""
    refer, positive = np.asarray(refer, dtype=bool), np.asarray(positive, dtype=bool)
    sensitivity = float(refer[positive].mean()) if positive.any() else math.nan
    specificity = float((~refer[~positive]).mean()) if (~positive).any() else math.nan
    return sensitivity, specificity


def sensitivity_at_specificity(
    scores: np.ndarray, positive: np.ndarray, specificity: float
) -> float:
    """The highest sensitivity of ``score >= t`` over thresholds whose specificity >= target."""
    scores, positive = np.asarray(scores, dtype=float), np.asarray(positive, dtype=bool)
    if not positive.any() or positive.all():
        return math.nan
    negatives = np.sort(scores[~positive])
    needed = math.ceil(specificity * len(negatives) - 1e-9)
    threshold = negatives[0] if needed == 0 else np.nextafter(negatives[needed - 1], np.inf)
    return float((scores[positive] >= threshold).mean())


def operating_point_metrics(
    malignancy: np.ndarray,
    malignant: np.ndarray,
    melanoma_probability: np.ndarray | None,
    melanoma: np.ndarray | None,
    threshold: float,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> dict[str, Estimate]:
    """Sensitivity, specificity and share referred at ``threshold``, and melanoma sensitivity
    at 80% and 90% specificity, each with a bootstrap interval."""
    refer = np.asarray(malignancy) >= threshold
    malignant = np.asarray(malignant, dtype=bool)
    n = len(refer)
    out = {
        "malignant_sensitivity": bootstrap(
            lambda i: binary_rates(refer[i], malignant[i])[0], n, resamples=resamples
        ),
        "malignant_specificity": bootstrap(
            lambda i: binary_rates(refer[i], malignant[i])[1], n, resamples=resamples
        ),
        "referred_share": bootstrap(lambda i: float(refer[i].mean()), n, resamples=resamples),
    }
    if melanoma_probability is not None and melanoma is not None:
        scores, positive = np.asarray(melanoma_probability), np.asarray(melanoma, dtype=bool)
        for spec in (0.8, 0.9):
            out[f"melanoma_sensitivity_at_{round(spec * 100)}_specificity"] = bootstrap(
                lambda i, s=spec: sensitivity_at_specificity(scores[i], positive[i], s),
                n,
                resamples=resamples,
            )
    return out


def subgroup_metrics(
    groups: Sequence[str],
    y_true: np.ndarray,
    probabilities: np.ndarray,
    refer: np.ndarray | None,
    malignant: np.ndarray,
    *,
    resamples: int = 300,
    min_size: int = MIN_SUBGROUP_SIZE,
) -> list[dict[str, Any]]:
    """Per group value: support, balanced accuracy and (with ``refer``) malignant sensitivity
    and specificity at the threshold, with bootstrap intervals; ``judged`` is False below
    ``min_size`` images. Groups in order of appearance, sorted by name."""
    labels, probs = np.asarray(y_true), np.asarray(probabilities)
    malignant = np.asarray(malignant, dtype=bool)
    names = np.asarray(list(groups), dtype=object)
    rows: list[dict[str, Any]] = []
    for name in sorted(set(names.tolist())):
        rows_of = np.flatnonzero(names == name)
        y, p, m = labels[rows_of], probs[rows_of], malignant[rows_of]
        row: dict[str, Any] = {
            "group": name,
            "n": len(rows_of),
            "n_malignant": int(m.sum()),
            "judged": len(rows_of) >= min_size,
            "balanced_accuracy": bootstrap(
                lambda i, y=y, p=p: balanced_accuracy(y[i], p[i]), len(y), resamples=resamples
            ).to_dict(),
        }
        if refer is not None:
            r = np.asarray(refer, dtype=bool)[rows_of]
            row["malignant_sensitivity"] = bootstrap(
                lambda i, r=r, m=m: binary_rates(r[i], m[i])[0], len(y), resamples=resamples
            ).to_dict()
            row["malignant_specificity"] = bootstrap(
                lambda i, r=r, m=m: binary_rates(r[i], m[i])[1], len(y), resamples=resamples
            ).to_dict()
        rows.append(row)
    return rows
