"""The champion/challenger comparison on synthetic capture files in SageMaker's layout
(``<root>/<endpoint>/<variant>/yyyy/mm/dd/hh/*.jsonl``) and ground truth in Model Monitor's
JSON-lines format; the decision rule on each of its branches."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from skinlesion.capture import make_capture_line
from skinlesion.labels import CLASSES
from skinlesion.monitoring.variants import (
    Decision,
    PromotionRule,
    VariantSummary,
    compare_variants,
    decide,
    js_distance,
)

ENDPOINT = "skinlesion"
MOMENT = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _answer(top: str, malignancy: float) -> bytes:
    probabilities = {c: (0.9 if c == top else 0.1 / (len(CLASSES) - 1)) for c in CLASSES}
    prediction = {
        "assessable": True,
        "probabilities": probabilities,
        "top_class": top,
        "top_probability": 0.9,
        "ood_score": 1.0,
        "malignancy_score": malignancy,
    }
    return json.dumps({"predictions": [prediction], "model_version": "x"}).encode()


def write_variant(
    root: Path, variant: str, tops: list[str], truths: list[str], labels: Path
) -> None:
    """One capture file of ``len(tops)`` requests, and ground truth for those with a truth."""
    folder = root / ENDPOINT / variant / MOMENT.strftime("%Y/%m/%d/%H")
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "00-00-000-x.jsonl").open("w") as capture, labels.open("a") as truth_file:
        for index, top in enumerate(tops):
            event_id = f"{variant}-{index}"
            line = make_capture_line(
                b"\xff\xd8jpeg",
                "image/jpeg",
                _answer(top, 0.8 if top == "MEL" else 0.1),
                "application/json",
                event_id=event_id,
                inference_time=MOMENT + timedelta(seconds=index),
            )
            capture.write(json.dumps(line) + "\n")
            if index < len(truths):
                truth = {
                    "groundTruthData": {"data": truths[index], "encoding": "CSV"},
                    "eventMetadata": {"eventId": event_id},
                    "eventVersion": "0",
                }
                truth_file.write(json.dumps(truth) + "\n")


def test_the_comparison_counts_each_variant_and_measures_quality(tmp_path: Path) -> None:
    labels = tmp_path / "labels" / "truth.jsonl"
    labels.parent.mkdir()
    # Champion: 60 requests, 30 MEL / 30 NV answers; truth says every answer is MEL, so it is
    # right on the 30 MEL (MEL recall 0.5) and balanced accuracy 0.5 (MEL only class present).
    write_variant(tmp_path, "AllTraffic", ["MEL"] * 30 + ["NV"] * 30, ["MEL"] * 60, labels)
    # Challenger: 60 requests, 45 MEL / 15 NV, truth all MEL: recall 0.75.
    write_variant(tmp_path, "Challenger", ["MEL"] * 45 + ["NV"] * 15, ["MEL"] * 60, labels)
    rule = PromotionRule(min_requests=50, min_labelled=50, margin=0.1)
    comparison = compare_variants(str(tmp_path), ENDPOINT, labels_uri=str(labels), rule=rule)
    champion, challenger = comparison.champion, comparison.challenger
    assert (champion.requests, champion.images, champion.assessable) == (60, 60, 60)
    assert champion.class_counts["MEL"] == 30 and champion.class_counts["NV"] == 30
    assert challenger.class_distribution["MEL"] == pytest.approx(0.75)
    assert champion.mean_malignancy == pytest.approx((30 * 0.8 + 30 * 0.1) / 60)
    assert (champion.labelled, challenger.labelled) == (60, 60)
    assert champion.balanced_accuracy == pytest.approx(0.5)
    assert challenger.balanced_accuracy == pytest.approx(0.75)
    assert challenger.mel_sensitivity == pytest.approx(0.75)
    # JS distance of (0.5, 0.5) and (0.75, 0.25), computed by hand.
    m = np.array([0.625, 0.375])
    expected = np.sqrt(
        0.5 * np.sum([0.5, 0.5] * np.log2(np.array([0.5, 0.5]) / m))
        + 0.5 * np.sum([0.75, 0.25] * np.log2(np.array([0.75, 0.25]) / m))
    )
    assert comparison.distance == pytest.approx(float(expected))
    assert comparison.decision is Decision.PROMOTE
    assert json.loads(json.dumps(comparison.to_dict()))["decision"] == "promote"

    # The same capture judged in a window that holds none of it: hold, nothing to go on.
    later = compare_variants(
        str(tmp_path),
        ENDPOINT,
        labels_uri=str(labels),
        rule=rule,
        start=MOMENT + timedelta(hours=1),
    )
    assert later.decision is Decision.HOLD and "0 captured requests" in later.reason


def test_without_ground_truth_different_distributions_do_not_promote(tmp_path: Path) -> None:
    labels = tmp_path / "none.jsonl"
    write_variant(tmp_path, "AllTraffic", ["NV"] * 80, [], labels)
    write_variant(tmp_path, "Challenger", ["MEL"] * 80, [], labels)
    comparison = compare_variants(str(tmp_path), ENDPOINT, rule=PromotionRule(min_requests=10))
    assert comparison.distance == pytest.approx(1.0)  # disjoint answers
    assert comparison.decision is Decision.HOLD
    assert "never on the prediction distribution alone" in comparison.reason


def _summary(name: str, requests: int, labelled: int, accuracy: float | None) -> VariantSummary:
    return VariantSummary(
        name, requests, requests, requests, {"MEL": requests}, None, labelled, accuracy
    )


@pytest.mark.parametrize(
    ("champion", "challenger", "decision", "reason"),
    [
        (0.80, 0.82, Decision.PROMOTE, "0.8200 vs champion 0.8000"),
        (0.80, 0.81, Decision.HOLD, "within the margin"),
        (0.80, 0.77, Decision.RETIRE, "0.7700"),
        (0.80, 0.79, Decision.HOLD, "within the margin"),
    ],
)
def test_the_decision_rule(
    champion: float, challenger: float, decision: Decision, reason: str
) -> None:
    rule = PromotionRule(min_requests=10, min_labelled=5, margin=0.02)
    got, why = decide(
        _summary("AllTraffic", 20, 10, champion), _summary("Challenger", 20, 10, challenger), rule
    )
    assert got is decision and reason in why


def test_too_few_requests_or_labels_hold() -> None:
    rule = PromotionRule(min_requests=10, min_labelled=5)
    got, why = decide(_summary("AllTraffic", 20, 10, 0.9), _summary("Challenger", 9, 9, 0.99), rule)
    assert got is Decision.HOLD and "Challenger has 9 captured requests" in why
    got, why = decide(_summary("AllTraffic", 20, 4, 0.5), _summary("Challenger", 20, 9, 0.99), rule)
    assert got is Decision.HOLD and "AllTraffic has 4 labelled images" in why


def test_bad_rules_and_bad_records_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="min_requests"):
        PromotionRule(min_requests=0)
    with pytest.raises(ValueError, match="margin"):
        PromotionRule(margin=1.5)
    folder = tmp_path / ENDPOINT / "AllTraffic" / "2026/03/01/12"
    folder.mkdir(parents=True)
    line = make_capture_line(b"x", "image/jpeg", b'{"oops": 1}', "application/json")
    (folder / "a.jsonl").write_text(json.dumps(line) + "\n")
    with pytest.raises(ValueError, match="no 'predictions' list"):
        compare_variants(str(tmp_path), ENDPOINT)
    assert js_distance({"MEL": 1.0, "NV": 0.0}, {"MEL": 1.0, "NV": 0.0}) == 0.0
