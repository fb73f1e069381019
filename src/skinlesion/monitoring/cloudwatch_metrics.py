"""The CloudWatch metric data of a monitoring run, for dashboards and alarms (the backend sends
them: PutMetricData on SageMaker, a record file locally).

Names follow Model Monitor's where one exists (``feature_baseline_drift_<feature>`` holds the
feature's drift distance, PSI here); the namespace is the settings' ``metrics_namespace``
(Terraform's, ``SkinLesion`` by default), the one the IAM policies allow PutMetricData in.
Dimensions: ``Endpoint`` and ``MonitoringSchedule`` (the checks: drift, quality or all), so
an alarm can watch one endpoint's hourly drift separately from its 6-hourly quality.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)


def metric_data(
    summary: Mapping[str, Any],
    *,
    endpoint_name: str,
    schedule: str,
    timestamp: datetime | None = None,
) -> list[dict[str, Any]]:
    """The MetricData list of a monitoring summary (``monitoring_summary.json``)."""
    moment = timestamp or datetime.now(UTC)
    dimensions = [
        {"Name": "Endpoint", "Value": endpoint_name},
        {"Name": "MonitoringSchedule", "Value": schedule},
    ]
    values: list[tuple[str, Any, str]] = [
        ("data_drift", float(bool(summary.get("data_drift"))), "None"),
        ("quality_drop", float(bool(summary.get("quality_drop"))), "None"),
        ("window_images", summary.get("window", {}).get("images", 0), "Count"),
        ("drifted_features", len(summary.get("drifted_features") or []), "Count"),
        ("violations", len(summary.get("violations") or []), "Count"),
        ("unreadable_fraction", summary.get("unreadable_fraction"), "None"),
    ]
    for feature in summary.get("features") or []:
        values.append((f"feature_baseline_drift_{feature['name']}", feature.get("psi"), "None"))
    embedding = summary.get("embedding") or {}
    values.append(("embedding_mmd2", embedding.get("mmd2"), "None"))
    values.append(("embedding_drift_p_value", embedding.get("p_value"), "None"))
    predictions = summary.get("predictions") or {}
    values.append(("prediction_js_distance", predictions.get("js_distance"), "None"))
    for check in summary.get("quality_checks") or []:
        values.append((str(check["metric"]), check.get("value"), "None"))
    data = []
    for name, value, unit in values:
        if value is None or not math.isfinite(float(value)):
            continue
        data.append(
            {
                "MetricName": name,
                "Dimensions": dimensions,
                "Timestamp": moment,
                "Value": float(value),
                "Unit": unit,
            }
        )
    return data
