"""Metrics: agreement with the ISIC reference scorer, hand-computed cases, edge cases."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from skinlesion.labels import CLASSES
from skinlesion.metrics import (
    ScorerMismatchError,
    balanced_accuracy,
    balanced_accuracy_from_confusion,
    check_against_reference,
    confusion_matrix,
    evaluate_predictions,
    expected_calibration_error,
    isic_balanced_accuracy,
    recall_from_confusion,
    reliability_bins,
    tied_top_predictions,
)
from skinlesion.monitoring.quality import quality_metrics

ABC = ("A", "B", "C")


def softmax_predictions(
    rng: np.random.Generator, labels: np.ndarray, n_classes: int, signal: float
) -> np.ndarray:
    """Softmax outputs of a noisy classifier whose logit for the true class is raised by ``signal``."""
    logits = rng.normal(size=(len(labels), n_classes))
    logits[np.arange(len(labels)), labels] += signal
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("seed", range(8))
def test_balanced_accuracy_matches_isic_scorer_on_random_inputs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 600))
    class_share = rng.dirichlet(np.full(len(CLASSES), 0.7))
    labels = rng.choice(len(CLASSES), size=n, p=class_share)
    probabilities = softmax_predictions(rng, labels, len(CLASSES), signal=rng.uniform(0, 3))

    ours = evaluate_predictions(labels, probabilities, CLASSES).balanced_accuracy
    reference = isic_balanced_accuracy(labels, probabilities, CLASSES)

    assert ours == pytest.approx(reference, abs=1e-12)
    assert balanced_accuracy(labels, probabilities) == pytest.approx(reference, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_training_and_monitoring_compute_the_reference_balanced_accuracy(seed: int) -> None:
    # The training loop scores a confusion matrix, the monitor labelled traffic with unlabelled
    # rows (-1) mixed in: both must give the reference scorer's number on untied predictions.
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(30, 400))
    labels = rng.choice(len(CLASSES), size=n, p=rng.dirichlet(np.full(len(CLASSES), 0.5)))
    probabilities = softmax_predictions(rng, labels, len(CLASSES), signal=rng.uniform(0, 3))
    assert not tied_top_predictions(probabilities).any()
    predicted = probabilities.argmax(axis=1)
    reference = isic_balanced_accuracy(labels, probabilities, CLASSES)
    result = evaluate_predictions(labels, probabilities, CLASSES)

    matrix = confusion_matrix(labels, predicted, len(CLASSES))
    assert balanced_accuracy_from_confusion(matrix) == pytest.approx(reference, abs=1e-12)
    np.testing.assert_allclose(
        recall_from_confusion(matrix), [c.sensitivity for c in result.per_class], equal_nan=True
    )

    unlabelled = rng.random(n) < 0.2
    window = quality_metrics(np.where(unlabelled, -1, labels), predicted, CLASSES)
    kept = ~unlabelled
    expected = isic_balanced_accuracy(labels[kept], probabilities[kept], CLASSES)
    assert window.labelled == int(kept.sum())
    assert window.balanced_accuracy == pytest.approx(expected, abs=1e-12)
    assert math.isnan(quality_metrics(np.full(n, -1), predicted, CLASSES).balanced_accuracy)


def adversarial_cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(123)
    cases: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    # The model never predicts five of the eight classes.
    labels = rng.integers(0, 8, 200)
    probs = softmax_predictions(rng, labels, 8, 1.0)
    probs[:, 3:] *= 0.01
    cases["classes missing from predictions"] = (labels, probs / probs.sum(1, keepdims=True))

    # Three classes never occur in the truth (ISIC skips them, they must not count as zero).
    labels = rng.choice([0, 1, 4, 5, 7], size=150)
    cases["classes missing from truth"] = (labels, softmax_predictions(rng, labels, 8, 1.5))

    # NV at 95 %, one melanoma.
    labels = np.where(rng.random(400) < 0.95, 1, rng.integers(2, 8, 400))
    labels[0] = 0
    cases["heavily imbalanced"] = (labels, softmax_predictions(rng, labels, 8, 0.5))

    # A constant classifier: always NV.
    labels = rng.integers(0, 8, 80)
    probs = np.full((80, 8), 0.02)
    probs[:, 1] = 0.86
    cases["constant classifier"] = (labels, probs)

    # Ties for the top probability: uniform rows and two-way ties, including on the true class.
    labels = rng.integers(0, 8, 60)
    probs = softmax_predictions(rng, labels, 8, 1.0).astype(np.float64)
    probs[:10] = 1 / 8
    for i in range(10, 30):
        row = np.full(8, 0.1 / 6)
        row[labels[i]] = 0.45
        row[(labels[i] + 1) % 8] = 0.45
        probs[i] = row
    cases["tied top probabilities"] = (labels, probs)

    # Every row of one class, perfectly predicted.
    labels = np.full(30, 6)
    cases["one class only"] = (labels, np.eye(8)[labels])

    # Perfect and perfectly wrong classifiers.
    labels = rng.integers(0, 8, 64)
    cases["perfect"] = (labels, np.eye(8)[labels])
    cases["always wrong"] = (labels, np.eye(8)[(labels + 1) % 8])
    return cases


@pytest.mark.parametrize("case", sorted(adversarial_cases()))
def test_balanced_accuracy_matches_isic_scorer_on_adversarial_inputs(case: str) -> None:
    labels, probabilities = adversarial_cases()[case]

    result = evaluate_predictions(labels, probabilities, CLASSES)
    reference = isic_balanced_accuracy(labels, probabilities, CLASSES)

    assert result.balanced_accuracy == pytest.approx(reference, abs=1e-12)
    check_against_reference(result, reference)


def test_known_balanced_accuracies() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    perfect = np.eye(3)[labels]
    assert evaluate_predictions(labels, perfect, ABC).balanced_accuracy == 1.0
    always_a = np.tile([0.8, 0.1, 0.1], (8, 1))
    # Recall 1 for A, 0 for B and C: 1/3 although plain accuracy is 1/2.
    result = evaluate_predictions(labels, always_a, ABC)
    assert result.balanced_accuracy == pytest.approx(1 / 3)
    assert result.accuracy == pytest.approx(0.5)


def test_hand_computed_confusion_sensitivity_specificity_precision() -> None:
    # true:      A  A  A  B  B  C  C  C  C  C
    # predicted: A  A  B  B  C  C  C  C  A  B
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    predicted = np.array([0, 0, 1, 1, 2, 2, 2, 2, 0, 1])
    probabilities = np.full((10, 3), 0.2)
    probabilities[np.arange(10), predicted] = 0.6

    result = evaluate_predictions(labels, probabilities, ABC)

    assert result.confusion_matrix == [[2, 1, 0], [0, 1, 1], [1, 1, 3]]
    a, b, c = result.per_class
    assert (a.support, a.predicted) == (3, 3)
    assert a.sensitivity == pytest.approx(2 / 3)
    assert a.specificity == pytest.approx(6 / 7)  # 7 non-A rows, one predicted A
    assert a.precision == pytest.approx(2 / 3)
    assert b.sensitivity == pytest.approx(1 / 2)
    assert b.specificity == pytest.approx(6 / 8)  # 8 non-B rows, two predicted B
    assert b.precision == pytest.approx(1 / 3)
    assert c.sensitivity == pytest.approx(3 / 5)
    assert c.specificity == pytest.approx(4 / 5)
    assert c.precision == pytest.approx(3 / 4)
    assert result.balanced_accuracy == pytest.approx((2 / 3 + 1 / 2 + 3 / 5) / 3)
    assert result.accuracy == pytest.approx(6 / 10)
    assert result.for_class("B") is b


def test_confusion_matrix_sums() -> None:
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 8, 333)
    probabilities = softmax_predictions(rng, labels, 8, 1.0)

    result = evaluate_predictions(labels, probabilities, CLASSES)
    matrix = np.array(result.confusion_matrix)

    assert matrix.shape == (8, 8)
    assert matrix.sum() == 333 == result.n_samples
    np.testing.assert_array_equal(matrix.sum(axis=1), np.bincount(labels, minlength=8))
    np.testing.assert_array_equal(
        matrix.sum(axis=0), np.bincount(probabilities.argmax(1), minlength=8)
    )
    assert [c.support for c in result.per_class] == matrix.sum(axis=1).tolist()
    assert [c.predicted for c in result.per_class] == matrix.sum(axis=0).tolist()
    assert confusion_matrix(labels, labels, 8).trace() == 333


def test_ece_hand_computed() -> None:
    probabilities = np.array(
        [
            [0.9, 0.05, 0.05],  # confidence 0.9, correct
            [0.9, 0.05, 0.05],  # confidence 0.9, wrong
            [0.2, 0.7, 0.1],  # confidence 0.7, correct
            [0.7, 0.2, 0.1],  # confidence 0.7, wrong
        ]
    )
    labels = np.array([0, 1, 1, 2])
    # Two bins, each with accuracy 0.5: 0.5 * |0.5 - 0.9| + 0.5 * |0.5 - 0.7| = 0.3
    assert expected_calibration_error(labels, probabilities) == pytest.approx(0.3)
    bins = reliability_bins(labels, probabilities)
    assert len(bins.counts) == 15 and sum(bins.counts) == 4
    assert bins.counts[13] == 2 and bins.counts[10] == 2  # (0.867, 0.933] and (0.667, 0.733]
    assert bins.confidence[13] == pytest.approx(0.9) and bins.accuracy[13] == 0.5
    assert math.isnan(bins.confidence[0]) and math.isnan(bins.accuracy[0])


def test_ece_is_zero_when_confident_and_right() -> None:
    labels = np.array([0, 1, 2, 2])
    assert expected_calibration_error(labels, np.eye(3)[labels]) == 0.0
    # Fully confident and always wrong: the worst possible calibration.
    assert expected_calibration_error(labels, np.eye(3)[(labels + 1) % 3]) == 1.0


def test_ece_bins_are_closed_on_the_right() -> None:
    edges = reliability_bins(np.array([0]), np.array([[0.5, 0.5]])).edges
    # A confidence equal to an edge belongs to the bin that the edge closes.
    for k in (8, 10, 14, 15):
        conf = edges[k]
        probabilities = np.array([[conf, 1 - conf]])
        bins = reliability_bins(np.array([0]), probabilities)
        assert bins.counts[k - 1] == 1, (k, conf, bins.counts)


def test_ece_matches_a_direct_implementation() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 8, 500)
    probabilities = softmax_predictions(rng, labels, 8, 2.0).astype(np.float64)
    confidence = probabilities.max(1)
    correct = probabilities.argmax(1) == labels
    expected = 0.0
    edges = np.linspace(0, 1, 16)
    for lo, hi in itertools.pairwise(edges):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            gap = abs(correct[in_bin].mean() - confidence[in_bin].mean())
            expected += in_bin.mean() * gap
    assert expected_calibration_error(labels, probabilities) == pytest.approx(expected, abs=1e-12)


def test_auc_and_roc_curves() -> None:
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 8, 300)
    probabilities = softmax_predictions(rng, labels, 8, 1.0)

    result = evaluate_predictions(labels, probabilities, CLASSES)

    for k, item in enumerate(result.per_class):
        assert item.auc == pytest.approx(roc_auc_score(labels == k, probabilities[:, k]))
        curve = result.roc_curves[item.name]
        assert curve.fpr[0] == 0.0 and curve.tpr[0] == 0.0
        assert curve.fpr[-1] == 1.0 and curve.tpr[-1] == 1.0
        assert np.all(np.diff(curve.fpr) >= 0) and np.all(np.diff(curve.tpr) >= 0)
        assert len(curve.fpr) == len(curve.tpr) == len(curve.thresholds)
        assert all(math.isfinite(t) and 0 <= t <= 1 for t in curve.thresholds)
        # The area under the stored curve is the AUC.
        assert np.trapezoid(curve.tpr, curve.fpr) == pytest.approx(item.auc)
    assert result.macro_auc == pytest.approx(np.mean([c.auc for c in result.per_class]))


def test_undefined_metrics_are_nan_and_none_in_json() -> None:
    labels = np.array([0, 0, 1, 1])  # C never occurs and is never predicted
    probabilities = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1]])

    result = evaluate_predictions(labels, probabilities, ABC)

    c = result.for_class("C")
    assert c.support == 0 and math.isnan(c.sensitivity) and math.isnan(c.auc)
    assert math.isnan(c.precision)
    assert c.specificity == 1.0
    assert result.balanced_accuracy == pytest.approx((1 / 2 + 1) / 2)  # over A and B only
    assert result.macro_auc == pytest.approx(np.mean([result.per_class[0].auc, 1.0]))
    assert result.roc_curves["C"].fpr == []
    flat = result.flat_metrics()
    assert flat["auc_C"] is None and flat["sensitivity_C"] is None
    json.dumps(result.to_dict(), allow_nan=False)
    json.dumps(flat, allow_nan=False)
    with pytest.raises(KeyError, match="Accepted: A, B, C"):
        result.for_class("MEL")


def test_tied_rows_count_as_misses_as_the_reference_does() -> None:
    labels = np.array([0, 0, 1, 1])
    probabilities = np.array([[0.5, 0.5, 0.0], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    assert tied_top_predictions(probabilities).tolist() == [True, False, False, False]

    result = evaluate_predictions(labels, probabilities, ABC)

    assert result.n_tied_predictions == 1
    assert result.balanced_accuracy == pytest.approx(0.5)
    assert isic_balanced_accuracy(labels, probabilities, ABC) == pytest.approx(0.5)
    assert result.accuracy == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("labels", "probabilities", "message"),
    [
        ([0, 1], np.array([[0.5, 0.5, 0.0]]), "Labels must have shape"),
        ([0], np.array([[0.5, 0.5]]), r"shape \(N, 3\)"),
        ([3], np.array([[0.2, 0.3, 0.5]]), r"class indices in \[0, 2\]"),
        ([0], np.array([[2.0, -1.0, 0.5]]), "logits"),
        ([0], np.array([[0.2, 0.2, 0.2]]), "sum to 1"),
        ([0], np.array([[np.nan, 0.5, 0.5]]), "NaN"),
        ([0.0], np.array([[0.2, 0.3, 0.5]]), "integer class indices"),
        (np.zeros(0, dtype=int), np.zeros((0, 3)), "empty"),
    ],
)
def test_invalid_inputs_are_rejected(labels, probabilities, message) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate_predictions(np.asarray(labels), probabilities, ABC)


def test_check_against_reference_fails_loudly() -> None:
    labels = np.array([0, 1, 2])
    result = evaluate_predictions(labels, np.eye(3)[labels], ABC)
    check_against_reference(result, 1.0 - 5e-7)
    with pytest.raises(ScorerMismatchError, match="ISIC reference"):
        check_against_reference(result, 1.0 - 2e-6)
    with pytest.raises(ScorerMismatchError):
        check_against_reference(result, math.nan)
