"""File names of the baseline and of the monitor's outputs, and the helpers that read or write
them without numpy, scipy or torch (the pipeline image has none of these)."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

# The baseline folder.
STATISTICS_FILE = "statistics.json"
REFERENCE_FILE = "reference.npz"
BASELINE_FILES = (STATISTICS_FILE, REFERENCE_FILE)

# The monitor's output folder.
SUMMARY_FILE = "monitoring_summary.json"
VIOLATIONS_FILE = "constraint_violations.json"
WINDOW_STATISTICS_FILE = "statistics.json"
REPORT_FILE = "report.html"
KFP_METRICS_FILE = "kfp_metrics.json"
OUTPUT_FILES = (
    SUMMARY_FILE,
    VIOLATIONS_FILE,
    WINDOW_STATISTICS_FILE,
    REPORT_FILE,
    KFP_METRICS_FILE,
)


def write_json(path: Path, payload: Any) -> None:
    """Indented JSON; NaN is refused (an undefined value must already be null)."""
    Path(path).write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")


def kfp_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """Scalars of a monitoring summary for KFP's Metrics artifact (finite numbers only)."""
    values: dict[str, Any] = {
        "window_images": summary.get("window", {}).get("images", 0),
        "alarm": float(bool(summary.get("alarm"))),
        "data_drift": float(bool(summary.get("data_drift"))),
        "quality_drop": float(bool(summary.get("quality_drop"))),
        "drifted_features": len(summary.get("drifted_features") or []),
        "violations": len(summary.get("violations") or []),
        "unreadable_fraction": summary.get("unreadable_fraction"),
    }
    embedding = summary.get("embedding") or {}
    values["embedding_mmd2"] = embedding.get("mmd2")
    values["embedding_p_value"] = embedding.get("p_value")
    predictions = summary.get("predictions") or {}
    values["prediction_js_distance"] = predictions.get("js_distance")
    values["prediction_p_value"] = predictions.get("p_value")
    for feature in summary.get("features") or []:
        values[f"psi_{feature['name']}"] = feature.get("psi")
    for check in summary.get("quality_checks") or []:
        values[str(check["metric"])] = check.get("value")
    return {
        name: float(value)
        for name, value in values.items()
        if value is not None and math.isfinite(float(value))
    }


def empty_summary(checks: str, window: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """monitoring_summary.json of a window without a single captured request: no alarm."""
    note = "No captured requests in the window: nothing to decide."
    return {
        "checks": checks,
        "alarm": False,
        "data_drift": False,
        "quality_drop": False,
        "insufficient_data": True,
        "headline": "insufficient data (0 images)",
        "window": {"images": 0} | window,
        "unreadable_fraction": 0.0,
        "features": [],
        "drifted_features": [],
        "embedding": None,
        "predictions": None,
        "size_range": None,
        "quality": None,
        "quality_checks": [],
        "violations": [],
        "config": config,
        "false_alarm_bound": sum(
            config.get(name, 0.0)
            for name in ("alpha_features", "alpha_embedding", "alpha_predictions")
        ),
        "notes": [note],
    }


def write_empty_window(output_dir: Path, checks: str, window: dict[str, Any]) -> dict[str, Any]:
    """Write the outputs of an empty window (summary, violations, statistics, metrics, report)."""
    from skinlesion.monitoring.config import MonitorConfig, check_checks

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    summary = empty_summary(check_checks(checks), window, MonitorConfig().to_dict())
    write_json(output_dir / SUMMARY_FILE, summary)
    write_json(output_dir / VIOLATIONS_FILE, {"violations": []})
    write_json(output_dir / WINDOW_STATISTICS_FILE, {"images": 0})
    write_json(output_dir / KFP_METRICS_FILE, kfp_metrics(summary))
    (output_dir / REPORT_FILE).write_text(
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Monitoring report'
        "</title></head><body><h1>Monitoring report</h1><p>No captured requests in the window "
        f"({html.escape(json.dumps(window))}): nothing to decide.</p></body></html>\n",
        encoding="utf-8",
    )
    return summary
