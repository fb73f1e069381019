"""``constraint_violations.json`` in the layout of SageMaker Model Monitor.

Model Monitor writes ``{"violations": [{"feature_name", "constraint_check_type",
"description"}]}`` for data quality and ``{"metric_name", "constraint_check_type",
"description"}`` for model quality; tools that read its output (dashboards, the Studio
violations view, alerting scripts) read ours. Check types used here:

- ``baseline_drift_check``: a feature, the embeddings or the predicted classes drifted from the
  baseline (``feature_name`` is the feature, ``embedding`` or ``predicted_class``);
- ``completeness_check``: too many captured images could not be decoded (``feature_name``
  ``image``);
- ``LessThanThreshold``: a quality metric (``balanced_accuracy``, ``recall_MEL``) fell below
  the baseline minus its tolerance, significantly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from skinlesion.monitoring.monitor import MonitorResult

DRIFT_CHECK = "baseline_drift_check"
COMPLETENESS_CHECK = "completeness_check"
THRESHOLD_CHECK = "LessThanThreshold"
CHECK_TYPES = (DRIFT_CHECK, COMPLETENESS_CHECK, THRESHOLD_CHECK)


def constraint_violations(result: MonitorResult) -> dict[str, list[dict[str, str]]]:
    """The violations of one window, most telling first: features, embedding, predictions,
    sizes, completeness, quality."""
    config = result.config
    violations: list[dict[str, str]] = []
    for feature in sorted(result.features, key=lambda f: f.p_adjusted):
        if feature.drifted:
            violations.append(
                {
                    "feature_name": feature.name,
                    "constraint_check_type": DRIFT_CHECK,
                    "description": (
                        f"PSI {feature.psi:.3f} >= {config.psi_threshold:g} and KS "
                        f"{feature.ks_statistic:.3f} with Holm-adjusted p "
                        f"{feature.p_adjusted:.3g} < {config.alpha_features:g}; mean "
                        f"{feature.window_mean:.4g} against the baseline's "
                        f"{feature.reference_mean:.4g}"
                    ),
                }
            )
    if result.embedding is not None and result.embedding.drifted:
        e = result.embedding
        violations.append(
            {
                "feature_name": "embedding",
                "constraint_check_type": DRIFT_CHECK,
                "description": (
                    f"MMD^2 {e.mmd2:.4g} of the {e.components}-component penultimate-layer "
                    f"embeddings has permutation p {e.p_value:.3g} < {config.alpha_embedding:g} "
                    f"({e.window_size} window vs {e.reference_size} reference images)"
                ),
            }
        )
    if result.predictions is not None and result.predictions.drifted:
        p = result.predictions
        violations.append(
            {
                "feature_name": "predicted_class",
                "constraint_check_type": DRIFT_CHECK,
                "description": (
                    f"chi-square {p.chi_square:.2f} ({p.dof} dof) p {p.p_value:.3g} < "
                    f"{config.alpha_predictions:g}; Jensen-Shannon distance {p.js_distance:.3f}"
                ),
            }
        )
    if result.size_range is not None and result.size_range.drifted:
        s = result.size_range
        violations.append(
            {
                "feature_name": "original_size",
                "constraint_check_type": DRIFT_CHECK,
                "description": (
                    f"{s.outside} of {s.images} images are outside the training sizes "
                    f"(width {s.width_range[0]:g}-{s.width_range[1]:g}, height "
                    f"{s.height_range[0]:g}-{s.height_range[1]:g})"
                ),
            }
        )
    if result.unreadable_fraction > config.max_unreadable_fraction and result.checks != "quality":
        violations.append(
            {
                "feature_name": "image",
                "constraint_check_type": COMPLETENESS_CHECK,
                "description": (
                    f"{result.unreadable_fraction:.1%} of the captured images could not be "
                    f"decoded (at most {config.max_unreadable_fraction:.0%} expected)"
                ),
            }
        )
    for check in result.quality_checks:
        if check.violated:
            violations.append(
                {
                    "metric_name": check.metric,
                    "constraint_check_type": THRESHOLD_CHECK,
                    "description": (
                        f"Metric {check.metric} with {check.value:.4g} was {THRESHOLD_CHECK} "
                        f"'{check.threshold:.4g}' ({check.detail})"
                    ),
                }
            )
    return {"violations": violations}


def write_violations(path: Path, result: MonitorResult) -> Path:
    """Write constraint_violations.json."""
    payload: Any = constraint_violations(result)
    Path(path).write_text(json.dumps(payload, indent=2) + "\n")
    return Path(path)
