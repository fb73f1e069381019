"""Operating point, calibration, subgroups, OOD and the model card: functions and the job."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from skinlesion.clinical import (
    choose_threshold,
    fit_temperature,
    image_check,
    ita_degrees,
    malignancy_score,
    skin_tone_band,
)
from skinlesion.metrics import bootstrap, sensitivity_at_specificity


def test_threshold_meets_the_sensitivity_target_with_the_fewest_referrals() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    malignant = np.array([1, 0, 1, 1, 0, 1, 0, 0, 0, 0], dtype=bool)
    # 4 malignant; 75% needs 3 of them: the third highest malignant score, 0.6.
    assert choose_threshold(scores, malignant, target_sensitivity=0.75) == 0.6
    assert choose_threshold(scores, malignant, target_sensitivity=1.0) == 0.4
    # 6 benign; 50% specificity needs 3 below the threshold: just above 0.2.
    t = choose_threshold(scores, malignant, target_specificity=0.5)
    assert 0.2 < t < 0.2001 and ((scores < t) & ~malignant).sum() == 3
    with pytest.raises(ValueError, match="exactly one"):
        choose_threshold(scores, malignant)


def test_temperature_recovers_the_scale_of_overconfident_logits() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(4000, 4)) * 1.5
    p = np.exp(true_logits) / np.exp(true_logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(4, p=row) for row in p])
    assert fit_temperature(true_logits * 3.0, labels) == pytest.approx(3.0, rel=0.1)


def test_malignancy_is_the_sum_of_malignant_probabilities() -> None:
    classes = ("MEL", "NV", "BCC", "SCC")
    probs = np.array([[0.1, 0.6, 0.2, 0.1]])
    assert malignancy_score(probs, classes, ("MEL", "BCC", "SCC"))[0] == pytest.approx(0.4)


def test_bootstrap_interval_contains_the_value_and_narrows_with_n() -> None:
    rng = np.random.default_rng(1)
    small, large = rng.random(50) < 0.8, rng.random(2000) < 0.8
    a = bootstrap(lambda i: small[i].mean(), len(small), resamples=400)
    b = bootstrap(lambda i: large[i].mean(), len(large), resamples=400)
    assert a.low <= a.value <= a.high and b.low <= b.value <= b.high
    assert b.high - b.low < a.high - a.low
    assert math.isnan(bootstrap(lambda i: math.nan, 5).low)


def test_sensitivity_at_specificity_reads_the_roc() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.3, 0.6, 0.5, 0.4, 0.2, 0.1, 0.0])
    positive = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], dtype=bool)
    # 6 negatives; 5/6 >= 80%: threshold above 0.5 -> positives >= it: 0.9, 0.8, 0.7.
    assert sensitivity_at_specificity(scores, positive, 0.8) == 0.75


def test_ita_bands_of_uniform_skin_colours() -> None:
    def frame(rgb: tuple[int, int, int]) -> np.ndarray:
        return np.broadcast_to(np.array(rgb, np.uint8), (64, 64, 3)).copy()

    assert skin_tone_band(ita_degrees(frame((240, 210, 190)))) in ("very light", "light")
    assert skin_tone_band(ita_degrees(frame((90, 55, 35)))) in ("brown", "dark")
    assert ita_degrees(frame((240, 210, 190))) > ita_degrees(frame((170, 120, 90)))
    assert skin_tone_band(math.nan) == "unknown"
    assert image_check(frame((128, 128, 128))) is not None
    assert image_check(np.random.default_rng(0).integers(30, 220, (64, 64, 3), np.uint8)) is None


def test_evaluate_job_reports_the_clinical_figures_and_writes_a_model_card(
    fitted_model_dir: Path, preprocessed_dataset: Path, tmp_path: Path
) -> None:
    from skinlesion.data.store import read_split
    from skinlesion.jobs.evaluate import run
    from skinlesion.models import load_model, save_model
    from skinlesion.training.calibration import fit_clinical_settings

    model, spec = load_model(fitted_model_dir)
    train = read_split(preprocessed_dataset, "train", mmap=False)
    val = read_split(preprocessed_dataset, "val", mmap=False)
    fitted = fit_clinical_settings(
        model,
        spec,
        train_images=train.images,
        train_labels=train.labels,
        val_images=val.images,
        val_labels=val.labels,
    )
    bundle = save_model(model, fitted, tmp_path / "model")
    metrics = run(preprocessed_dataset, bundle, tmp_path / "out", device="cpu", gradcam_examples=0)
    for name in (
        "malignant_sensitivity_at_threshold",
        "malignant_specificity_at_threshold",
        "referred_share",
        "ece_uncalibrated",
        "ood_false_refusal_rate",
    ):
        assert name in metrics, name
    assert 0.0 <= metrics["malignant_sensitivity_at_threshold"] <= 1.0
    evaluation = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    clinical = evaluation["clinical"]
    test = clinical["operating_point"]["test"]["malignant_sensitivity"]
    assert test["low"] <= test["value"] <= test["high"]
    sites = {row["group"] for row in clinical["subgroups"]["anatom_site"]}
    assert clinical["metadata_available"] and sites - {"unknown"}
    assert all(not row["judged"] for row in clinical["subgroups"]["sex"] if row["n"] < 30)
    assert sum(clinical["skin_tone"]["test"].values()) == metrics["n_test"]
    report = (tmp_path / "out" / "report.html").read_text()
    for section in ("operating-point", "reliability-before", "reliability-after", "subgroups",
                    "skin-tone", "ood"):  # fmt: skip
        assert f'id="{section}"' in report, section
    card = (tmp_path / "out" / "model_card.md").read_text()
    assert "## Intended use" in card and "## Known limitations" in card
    assert "Malignant sensitivity" in card and (tmp_path / "out" / "model_card.html").exists()


def test_the_image_quality_check_refuses_blur_casts_and_noise_on_real_dermoscopy(
    real_data_dir: Path,
) -> None:
    """Fitted on real HAM10000 frames, the pixel-statistics check passes held-out frames and
    refuses the same frames blurred, colour-cast or replaced by noise, naming the statistic."""
    from skinlesion.clinical import fit_quality
    from skinlesion.data.images import load_images

    paths = sorted((real_data_dir / "images").glob("*.jpg"))[:700]
    images = load_images(paths, 96, progress=False).images
    quality = fit_quality(images[:500], images[500:600])
    held_out = images[600:]
    passed = [quality.check(image) is None for image in held_out]
    assert np.mean(passed) >= 0.95
    # A 9 x 9 box blur, edges replicated.
    padded = np.pad(held_out.astype(float), ((0, 0), (4, 4), (4, 4), (0, 0)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (9, 9), axis=(1, 2))
    blurred = windows.mean(axis=(-2, -1)).round().astype(np.uint8)
    cast = (held_out * np.array([0.3, 1.0, 1.6])).clip(0, 255).astype(np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, held_out.shape, dtype=np.uint8)
    for name, frames, statistic in [
        ("blur", blurred, "sharpness"),
        ("cast", cast, ""),
        ("noise", noise, ""),
    ]:
        reasons = [quality.check(frame) for frame in frames]
        refused = [r for r in reasons if r is not None]
        assert len(refused) >= 0.9 * len(frames), name
        assert all("unlike the training images" in r for r in refused)
        if statistic:
            assert sum(statistic in r for r in refused) >= 0.5 * len(refused), refused[:3]


def test_image_check_without_quality_stats_keeps_only_the_pixel_rules() -> None:
    noise = np.random.default_rng(1).integers(0, 256, (64, 64, 3), np.uint8)
    assert image_check(noise) is None  # no fitted statistics: nothing to compare with


def test_per_class_sensitivity_has_intervals_that_widen_for_small_classes() -> None:
    from skinlesion.jobs.evaluate import per_class_sensitivity

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], [400, 12])  # no VASC image at all
    predicted = np.where(rng.random(len(labels)) < 0.75, labels, 1 - labels)
    out = per_class_sensitivity(labels, predicted, ("NV", "DF", "VASC"), resamples=300)
    for name, index in (("NV", 0), ("DF", 1)):
        value = float(np.mean(predicted[labels == index] == index))
        assert out[name]["value"] == pytest.approx(value)
        assert out[name]["low"] <= value <= out[name]["high"]
    width = {n: out[n]["high"] - out[n]["low"] for n in ("NV", "DF")}
    assert width["DF"] > 3 * width["NV"]  # 12 images against 400
    assert out["VASC"] == {"value": None, "low": None, "high": None}  # no test image: undefined
