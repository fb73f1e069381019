"""The recipe search's parts: lesion-grouped folds, the metadata encoding, bias tuning, a trial."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench import recipe_search as rs
from skinlesion import crossval, patient


def test_folds_keep_each_lesion_in_one_fold_and_every_class_in_every_fold(
    sample_data_dir: Path,
) -> None:
    table = rs.read_table(sample_data_dir)
    fold = crossval.lesion_folds(table.labels, table.lesions, 5, seed=0)
    by_lesion: dict[str, set[int]] = {}
    for lesion, k in zip(table.lesions, fold, strict=True):
        by_lesion.setdefault(lesion, set()).add(int(k))
    assert all(len(folds) == 1 for folds in by_lesion.values())
    for k in range(5):
        assert set(table.labels[fold == k]) == set(range(len(rs.CLASSES)))


def test_metadata_matrix_flags_missing_age_and_unknown_sex_and_site() -> None:
    table = rs.Table(
        image_ids=["a", "b"],
        labels=np.array([0, 1]),
        lesions=["l1", "l2"],
        age=np.array([70.0, np.nan]),
        sex=["female", "unknown"],
        site=["face", "unknown"],
    )
    meta = rs.metadata_matrix(table)
    assert meta.shape == (2, patient.FEATURES)
    assert meta[0, 0] == (70.0 - 50.0) / 20.0 and meta[0, 1] == 0.0
    assert meta[1, 0] == 0.0 and meta[1, 1] == 1.0  # missing age: 0 and its flag
    assert meta[0, 3] == 1.0 and meta[1, 2:].sum() == 0.0  # unknown: every one-hot column 0


def test_bias_tuning_recovers_balanced_accuracy_lost_to_a_prior_shift() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), [400, 40, 40, 40])
    logits = np.eye(4)[labels] * 1.5 + rng.normal(size=(len(labels), 4))
    logits[:, 0] += 1.5  # a model biased towards the majority class
    before = rs.balanced_accuracy(labels, logits.argmax(1))
    bias = rs.tune_bias(logits, labels)
    after = rs.balanced_accuracy(labels, (logits + bias).argmax(1))
    assert after > before + 0.1 and bias[0] < 0


def test_a_trial_scores_every_image_out_of_fold(sample_data_dir: Path) -> None:
    table = rs.read_table(sample_data_dir)
    fold = crossval.lesion_folds(table.labels, table.lesions, 3, seed=0)
    # Features that carry the label plus noise: the head must find it on held-out folds.
    rng = np.random.default_rng(0)
    features = np.eye(8)[table.labels][:, None, :] * 2 + rng.normal(size=(len(fold), 2, 8))
    head = rs.Head()
    logits = rs.run_trial(features.astype(np.float16), None, table, fold, head, seed=0)
    assert logits.shape == (len(fold), 8) and np.isfinite(logits).all()
    assert rs.balanced_accuracy(table.labels, logits.argmax(1)) > 0.6
    low, high = crossval.lesion_bootstrap(
        table.labels, logits.argmax(1), table.lesions, 8, resamples=50
    )
    assert low <= rs.balanced_accuracy(table.labels, logits.argmax(1)) <= high
