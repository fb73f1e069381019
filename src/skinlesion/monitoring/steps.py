"""What the monitoring components do, written without KFP so it is tested as plain Python.

Each component body (``components/monitor.py``, ``notify.py``, ``trigger_retraining.py``,
``baseline.py``) calls one function here with its artifacts (anything with ``path``, ``uri``
and ``metadata``) and parameters. Each builds its backend once, by name, and asks it for the
job, the notification or the metrics: a subprocess with the processing-job layout and files
locally, a SageMaker processing job, SNS and CloudWatch with ``backend=sagemaker``.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from skinlesion import storage
from skinlesion.backends import get_backend
from skinlesion.backends.base import BaselineRequest, MonitorRequest
from skinlesion.handoff import DatasetHandoff, ModelHandoff
from skinlesion.logs import configure_logging
from skinlesion.steps import ArtifactLike, MetricsLike, job_identity, write_pointer

log = logging.getLogger(__name__)

REQUEST_FILE = "request.json"
NOTIFICATION_FILE = "notification.json"


def window_bounds(
    window_hours: int, offset_hours: int = 0, now: datetime | None = None
) -> tuple[datetime | None, datetime | None]:
    """[now - offset - window, now - offset); (None, None) for ``window_hours`` 0 (everything)."""
    if window_hours < 0 or offset_hours < 0:
        raise ValueError(
            f"Invalid window_hours {window_hours} / offset_hours {offset_hours}: must be >= 0."
        )
    if window_hours == 0:
        return None, None
    end = (now or datetime.now(UTC)) - timedelta(hours=offset_hours)
    return end - timedelta(hours=window_hours), end


# --- monitor -----------------------------------------------------------------------------------


def monitor(
    *,
    backend: str,
    endpoint_name: str,
    output: ArtifactLike,
    report: ArtifactLike,
    metrics: MetricsLike,
    baseline_uri: str = "",
    model_uri: str = "",
    capture_uri: str = "",
    labels_uri: str = "",
    dataset_uri: str = "",
    window_hours: int = 1,
    offset_hours: int = 0,
    checks: str = "drift",
    run_id: str = "",
    now: datetime | None = None,
) -> bool:
    """Run the monitor job over the window; log metrics and the report; return the alarm.

    The metrics also go to the backend (CloudWatch on SageMaker, a record file locally). The
    alarm is data drift (``checks=drift``), a quality drop (``quality``) or either (``all``).
    """
    from skinlesion.monitoring.cloudwatch_metrics import metric_data
    from skinlesion.monitoring.config import check_checks
    from skinlesion.monitoring.files import (
        REPORT_FILE,
        SUMMARY_FILE,
        kfp_metrics,
        write_empty_window,
    )

    configure_logging()
    be = get_backend(backend)
    check_checks(checks)
    start, end = window_bounds(window_hours, offset_hours, now)
    output_dir = Path(output.path)
    output_dir.mkdir(parents=True, exist_ok=True)
    endpoint_name = endpoint_name or be.default_endpoint_name()
    result = be.monitor(
        MonitorRequest(
            endpoint_name=endpoint_name,
            output_uri=be.artifact_location(output.path, output.uri),
            baseline_uri=baseline_uri,
            model_uri=model_uri,
            capture_uri=capture_uri,
            labels_uri=labels_uri,
            dataset_uri=dataset_uri,
            start=start,
            end=end,
            checks=checks,
            # Without a run id, the output artifact's URI names the job: KFP keeps it when the
            # step is retried, so a retry re-attaches to its job.
            run_id=run_id or job_identity(output),
            task_name="monitor",
        )
    )
    location = str(output_dir)
    if result is None:
        write_empty_window(output_dir, checks, {"capture": capture_uri, "records": 0})
    elif Path(result.output_uri) != output_dir:
        location = result.output_uri
        for name in (SUMMARY_FILE, REPORT_FILE):
            be.download(storage.join(location, name), output_dir / name)
    summary = json.loads((output_dir / SUMMARY_FILE).read_text())
    Path(report.path).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(output_dir / REPORT_FILE, report.path)
    for name, value in sorted(kfp_metrics(summary).items()):
        metrics.log_metric(name, value)
    be.publish_metrics(metric_data(summary, endpoint_name=endpoint_name, schedule=checks))
    output.metadata.update(
        {
            "alarm": bool(summary["alarm"]),
            "data_drift": bool(summary["data_drift"]),
            "quality_drop": bool(summary["quality_drop"]),
            "headline": summary["headline"],
            "monitor_output": location,
        }
    )
    # The window's summary and report are in the artifact; the rest of the job's output stays
    # where the job wrote it.
    write_pointer(output, location)
    log.info("Monitoring %s (%s): %s", endpoint_name, checks, summary["headline"])
    return bool(summary["alarm"])


def _summary(monitor_output: ArtifactLike) -> dict[str, Any]:
    from skinlesion.monitoring.files import SUMMARY_FILE

    path = Path(monitor_output.path) / SUMMARY_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"No {SUMMARY_FILE} in {monitor_output.path}: not a monitor output."
        )
    summary: dict[str, Any] = json.loads(path.read_text())
    return summary


# --- after an alarm ----------------------------------------------------------------------------


def notify(
    *,
    backend: str,
    endpoint_name: str,
    monitor_output: ArtifactLike,
    notification: ArtifactLike,
) -> str:
    """Send the alarm through the backend (SNS on SageMaker, a log line and a record locally)."""
    from skinlesion.monitoring.alarm_text import notification_text

    configure_logging()
    be = get_backend(backend)
    endpoint_name = endpoint_name or be.default_endpoint_name()
    summary = _summary(monitor_output)
    report = str(monitor_output.metadata.get("monitor_output") or monitor_output.uri)
    subject, message = notification_text(
        summary, endpoint_name=endpoint_name, report_uri=storage.join(report, "report.html")
    )
    sent = be.notify(subject, message)
    Path(notification.path).parent.mkdir(parents=True, exist_ok=True)
    Path(notification.path).write_text(json.dumps(sent.__dict__, indent=2) + "\n")
    notification.metadata.update({"channel": sent.channel, "target": sent.target})
    return sent.subject


def trigger_retraining(
    *,
    backend: str,
    monitor_output: ArtifactLike,
    request: ArtifactLike,
    data_uri: str,
    training_arguments: Mapping[str, Any] | None = None,
    kfp_host: str = "",
    kfp_namespace: str = "",
    kfp_experiment: str = "skinlesion",
    pipeline_name: str = "skinlesion-training",
    cooldown_hours: float = 24.0,
) -> str:
    """Start the training pipeline through the KFP API (``kfp_host``), or record the request.

    Returns the new run's id ("" when only recorded).
    """
    from skinlesion.monitoring.retrain import kubeflow_settings, request_retraining

    configure_logging()
    be = get_backend(backend)
    summary = _summary(monitor_output)
    settings = kubeflow_settings(kfp_host, kfp_namespace, kfp_experiment)
    arguments = dict(training_arguments or {})
    arguments.setdefault("backend", backend)
    made = request_retraining(
        reason=str(summary["headline"]),
        data_uri=data_uri,
        arguments=arguments,
        kubeflow=settings,
        record_dir=be.retraining_record_dir(),
        pipeline_name=pipeline_name,
        cooldown_hours=cooldown_hours,
    )
    Path(request.path).parent.mkdir(parents=True, exist_ok=True)
    Path(request.path).write_text(json.dumps(made.to_dict(), indent=2) + "\n")
    request.metadata.update({"status": made.status, "run_id": made.run_id, "run_url": made.run_url})
    return made.run_id


# --- baseline ----------------------------------------------------------------------------------


def baseline(
    *,
    backend: str,
    dataset: ArtifactLike,
    model: ArtifactLike,
    baseline: ArtifactLike,
    data_uri: str = "",
    split: str = "val",
    run_id: str = "",
) -> str:
    """Build the monitoring baseline of ``model`` on ``dataset`` into the ``baseline`` artifact.

    ``data_uri``: the ISIC folder of the original files, for encoding features (optional).
    Returns where the baseline is (the monitoring pipeline's ``baseline_uri``). The dataset and
    the model are read where their records point (nothing of them is in this step's pod); on
    SageMaker the baseline stays in S3 and the artifact points at it.
    """
    configure_logging()
    be = get_backend(backend)
    handed = ModelHandoff.read(model)
    result = be.baseline(
        BaselineRequest(
            dataset_uri=DatasetHandoff.read(dataset).dataset
            or be.artifact_location(dataset.path, dataset.uri),
            model_uri=handed.job_model_data or be.artifact_location(model.path, model.uri),
            output_uri=be.artifact_location(baseline.path, baseline.uri),
            raw_uri=data_uri,
            split=split,
            # Without a run id, the output artifact's URI names the job, as for evaluate: KFP
            # keeps it when the step is retried, so a retry re-attaches to its job.
            run_id=run_id or job_identity(baseline),
            task_name="baseline",
        )
    )
    location = result.remote_output_uri or result.output_uri
    baseline.metadata.update({"baseline_uri": location, "split": split})
    write_pointer(baseline, location)
    log.info("Monitoring baseline at %s", location)
    return location
