"""After training: fit the temperature, the referral threshold and the OOD statistics.

Called by ``loop.finish`` on the selected weights (with the test-time views the bundle will
use), on the validation split and a subsample of the training split; the results go into
``model.json`` (``temperature``, ``operating_point``, ``ood``) and ``ood.npz``.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import torch

from skinlesion.artifacts import ModelSpec
from skinlesion.clinical import (
    DEFAULT_OOD_PERCENTILE,
    DEFAULT_QUALITY_PERCENTILE,
    DEFAULT_TARGET_SENSITIVITY,
    OOD_FILE,
    OOD_METHOD,
    QUALITY_STATISTICS,
    CalibrationError,
    fit_ood,
    fit_operating_point,
    fit_quality,
    fit_temperature,
)
from skinlesion.models import LesionClassifier, Predictor

log = logging.getLogger(__name__)

# The OOD means and covariance settle long before this; more only costs a forward pass each.
MAX_TRAIN_EMBEDDINGS = 4000


def subsample(count: int, limit: int) -> np.ndarray:
    """Evenly spaced row indices, at most ``limit`` of ``count`` (all when count <= limit)."""
    if count <= limit:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, limit).round().astype(np.int64))


def fit_clinical_settings(
    model: LesionClassifier,
    spec: ModelSpec,
    *,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    val_metadata: np.ndarray | None = None,
    device: torch.device | str = "cpu",
    target_sensitivity: float | None = DEFAULT_TARGET_SENSITIVITY,
    target_specificity: float | None = None,
    include_ak: bool = False,
    ood_percentile: float = DEFAULT_OOD_PERCENTILE,
    quality_percentile: float = DEFAULT_QUALITY_PERCENTILE,
    batch_size: int = 64,
) -> ModelSpec:
    """The spec with the fitted temperature, operating point and OOD threshold.

    Sets ``model.ood_stats`` (``save_model`` writes them). A part that the validation split
    cannot support (no malignant image, say) is left out with a warning; the rest is kept.
    """
    was_training = model.training
    predictor = Predictor(model, replace(spec, temperature=1.0), device=device, precision="fp32")
    val_labels = np.asarray(val_labels, dtype=np.int64)
    # The temperature and referral threshold are fitted on the answers the model gives with
    # its validation images' metadata (when it reads metadata).
    val_logits, val_features = predictor.logits_with_embeddings(
        val_images, batch_size, metadata=val_metadata
    )
    fitted = spec
    if len(val_labels) == 0:
        log.warning("Empty validation split: no temperature, operating point or OOD threshold.")
        model.train(was_training)
        return fitted
    temperature = fit_temperature(val_logits, val_labels)
    fitted = replace(fitted, temperature=temperature)
    probabilities = torch.softmax(torch.from_numpy(val_logits) / temperature, dim=1).numpy()
    log.info("Temperature %.3f (fitted on %d validation images)", temperature, len(val_labels))
    try:
        point = fit_operating_point(
            probabilities,
            val_labels,
            spec.classes,
            target_sensitivity=target_sensitivity,
            target_specificity=target_specificity,
            include_ak=include_ak,
        )
        fitted = replace(fitted, operating_point=point.to_dict())
        log.info(
            "Referral threshold %.4f on the malignancy score (%s): validation sensitivity "
            "%.3f, specificity %.3f, %.1f%% referred",
            point.threshold,
            "+".join(point.malignant_classes),
            point.val_sensitivity,
            point.val_specificity,
            100 * point.val_referred,
        )
    except CalibrationError as error:
        log.warning("No operating point: %s", error)
    rows = subsample(len(train_labels), MAX_TRAIN_EMBEDDINGS)
    try:
        _, train_features = predictor.logits_with_embeddings(
            np.asarray(train_images[rows]), batch_size
        )
        stats = fit_ood(
            train_features,
            np.asarray(train_labels)[rows],
            val_features,
            percentile=ood_percentile,
        )
        quality = fit_quality(
            np.asarray(train_images[rows]), np.asarray(val_images), percentile=quality_percentile
        )
        stats = replace(stats, quality=quality)
        model.ood_stats = stats
        fitted = replace(
            fitted,
            ood={
                "method": OOD_METHOD,
                "threshold": stats.threshold,
                "percentile": ood_percentile,
                "file": OOD_FILE,
                "train_embeddings": len(rows),
                "quality_threshold": quality.threshold,
                "quality_percentile": quality_percentile,
                "quality_statistics": list(QUALITY_STATISTICS),
            },
        )
        log.info(
            "OOD threshold %.2f (Mahalanobis, %g-th percentile of validation); image-quality "
            "threshold %.2f (%g-th percentile)",
            stats.threshold,
            ood_percentile,
            quality.threshold,
            quality_percentile,
        )
    except CalibrationError as error:
        log.warning("No OOD threshold: %s", error)
    model.train(was_training)
    return fitted
