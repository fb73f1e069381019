"""What the monitoring components do, written without KFP so it is tested as plain Python.

Each component body (``components/monitor.py``, ``notify.py``, ``trigger_retraining.py``,
``baseline.py``) calls one function here with its artifacts (anything with ``path``, ``uri``
and ``metadata``) and parameters. The jobs run where the backend says: a subprocess with the
processing-job layout locally, a SageMaker processing job with ``backend=sagemaker``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from skinlesion.backends import BACKENDS
from skinlesion.logs import configure_logging
from skinlesion.steps import ArtifactLike, MetricsLike

log = logging.getLogger(__name__)

CAPTURE_DIR = "data-capture"  # the local endpoint's capture folder (LocalBackend.deploy)
REQUEST_FILE = "request.json"
NOTIFICATION_FILE = "notification.json"


class MonitoringSetupError(ValueError):
    """The monitor cannot find what it needs (baseline, endpoint, capture); says what to pass."""


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend {backend!r}. Accepted: {', '.join(BACKENDS)}.")


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


# --- local helpers -----------------------------------------------------------------------------


def run_job(module: str, args: Sequence[str]) -> None:
    """``python -m module args`` as a local processing job; its failure reason is raised."""
    from skinlesion.contract import ML_ROOT_ENV

    with tempfile.TemporaryDirectory(prefix="skinlesion-job-") as scratch:
        command = [sys.executable, "-m", module, *args]
        log.info("job: %s", " ".join(command))
        done = subprocess.run(command, env={**os.environ, ML_ROOT_ENV: scratch}, check=False)
        if done.returncode != 0:
            message = Path(scratch) / "output" / "message"
            reason = message.read_text().splitlines()[0] if message.exists() else "see its log"
            raise RuntimeError(f"Job {module} failed with exit code {done.returncode}: {reason}")


@dataclass(frozen=True)
class LocalEndpoint:
    """What the monitor needs of a local endpoint."""

    name: str
    model_dir: Path
    capture_uri: str  # the endpoint's capture root (the writer adds <endpoint>/<variant>)
    model_version_arn: str  # empty when the endpoint was stopped (its record is gone)


def local_endpoint(endpoint_name: str) -> LocalEndpoint:
    """The local endpoint's model folder, capture folder and version.

    A stopped endpoint has no record any more; its newest model slot and its capture folder are
    still there and are used (without the version, so a baseline then needs the dataset).
    """
    from skinlesion.backends.local import LocalBackend

    backend = LocalBackend.from_environment()
    folder = backend.settings.root / "endpoints" / endpoint_name
    try:
        record = backend.describe_endpoint(endpoint_name)
    except LookupError:
        slots = sorted(folder.glob("v*/model"), key=lambda p: p.stat().st_mtime)
        if not slots:
            raise MonitoringSetupError(
                f"No local endpoint named {endpoint_name!r} under {backend.settings.root}: "
                "deploy one (make demo), or pass the baseline, the model and the capture folder."
            ) from None
        return LocalEndpoint(endpoint_name, slots[-1], str(folder / CAPTURE_DIR), "")
    return LocalEndpoint(
        endpoint_name,
        Path(record.details["model_dir"]),
        record.capture_uri or str(folder / CAPTURE_DIR),
        record.model_version_arn,
    )


def local_dataset_of(model_version_arn: str) -> str:
    """The preprocessed dataset a local model version was evaluated on (from its registry record)."""
    from skinlesion.backends.local import LocalBackend

    if not model_version_arn:
        raise MonitoringSetupError(
            "The endpoint's model version is unknown (the endpoint was stopped): pass dataset_uri "
            "(the preprocessed dataset, e.g. --dataset) or a baseline."
        )

    version = LocalBackend.from_environment().registry.get(model_version_arn)
    evaluation_uri = version.metadata.get("evaluation_uri", "")
    evaluation = Path(evaluation_uri) / "evaluation.json"
    if not evaluation.exists():
        raise MonitoringSetupError(
            f"Model version {model_version_arn} records no evaluation ({evaluation}): pass "
            "dataset_uri (the preprocessed dataset) or baseline_uri."
        )
    return str(json.loads(evaluation.read_text())["dataset"])


def local_baseline(endpoint_name: str, dataset_uri: str = "") -> str:
    """The baseline of the model the local endpoint serves, built once and kept beside it.

    Kept as ``<endpoint folder>/baseline-<weights sha256[:12]>``: a redeployed model gets its
    own baseline, the same model reuses its.
    """
    from skinlesion.monitoring.baseline import model_fingerprint
    from skinlesion.monitoring.files import STATISTICS_FILE

    endpoint = local_endpoint(endpoint_name)
    model_dir = endpoint.model_dir
    folder = model_dir.parent.parent / f"baseline-{model_fingerprint(model_dir)[:12]}"
    if (folder / STATISTICS_FILE).exists():
        return str(folder)
    dataset = dataset_uri or local_dataset_of(endpoint.model_version_arn)
    log.info("Building the baseline of %s on %s into %s", model_dir, dataset, folder)
    run_job(
        "skinlesion.jobs.baseline",
        ["--dataset", dataset, "--model", str(model_dir), "--output", str(folder)],
    )
    return str(folder)


# --- monitor -----------------------------------------------------------------------------------


def _local_monitor(
    *,
    endpoint_name: str,
    baseline_uri: str,
    model_uri: str,
    capture_uri: str,
    labels_uri: str,
    dataset_uri: str,
    start: datetime | None,
    end: datetime | None,
    checks: str,
    output_dir: Path,
) -> None:
    from skinlesion.capture import DEFAULT_VARIANT, format_inference_time
    from skinlesion.monitoring.files import write_empty_window

    if not capture_uri:
        capture_uri = local_endpoint(endpoint_name).capture_uri
    capture = Path(capture_uri) / endpoint_name / DEFAULT_VARIANT
    if not capture.is_dir():
        log.warning("No capture folder %s yet: nothing to monitor", capture)
        write_empty_window(output_dir, checks, {"capture": str(capture), "records": 0})
        return
    baseline = baseline_uri or local_baseline(endpoint_name, dataset_uri)
    args = [
        "--baseline", baseline,
        "--capture", str(capture),
        "--output", str(output_dir),
        "--checks", checks,
        "--labels", labels_uri,
    ]  # fmt: skip
    if model_uri:
        args += ["--model", model_uri]
    if start is not None and end is not None:
        args += ["--start", format_inference_time(start), "--end", format_inference_time(end)]
    run_job("skinlesion.jobs.monitor", args)


def _sagemaker_monitor(
    *,
    endpoint_name: str,
    baseline_uri: str,
    model_uri: str,
    capture_uri: str,
    labels_uri: str,
    start: datetime | None,
    end: datetime | None,
    checks: str,
    output: ArtifactLike,
    run_id: str,
) -> str | None:
    from skinlesion import storage
    from skinlesion.backends.sagemaker import SageMakerBackend
    from skinlesion.monitoring.files import STATISTICS_FILE
    from skinlesion.monitoring.sagemaker import capture_prefix, run_monitor_job

    backend = SageMakerBackend.from_environment()
    if not baseline_uri:
        raise MonitoringSetupError(
            "No baseline_uri: with backend=sagemaker pass the S3 folder that the baseline job "
            "wrote for the deployed model (pipelines.monitoring.baseline_uri in the params file)."
        )
    capture_root = capture_uri or backend.settings.default_capture_uri
    if not capture_root:
        raise MonitoringSetupError(
            "No capture destination: pass capture_uri or set SKINLESION_CAPTURE_URI / the "
            "Terraform output capture_bucket."
        )
    if not model_uri:
        statistics = storage.read_json(storage.join(baseline_uri, STATISTICS_FILE))
        model_uri = str(statistics["model"]["uri"])
    return run_monitor_job(
        backend,
        baseline_uri=baseline_uri,
        model_uri=model_uri,
        capture_prefix_uri=capture_prefix(capture_root, endpoint_name),
        output_uri=backend.artifact_location(output.path, output.uri),
        labels_uri=labels_uri,
        start=start,
        end=end,
        checks=checks,
        run_id=run_id,
        task_name="monitor",
    )


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

    With ``backend=sagemaker`` the metrics also go to CloudWatch. The alarm is data drift
    (``checks=drift``), a quality drop (``quality``) or either (``all``).
    """
    from skinlesion import storage
    from skinlesion.monitoring.config import check_checks
    from skinlesion.monitoring.files import (
        REPORT_FILE,
        SUMMARY_FILE,
        kfp_metrics,
        write_empty_window,
    )

    configure_logging()
    _check_backend(backend)
    check_checks(checks)
    start, end = window_bounds(window_hours, offset_hours, now)
    output_dir = Path(output.path)
    output_dir.mkdir(parents=True, exist_ok=True)
    location = str(output_dir)
    if backend == "local":
        _local_monitor(
            endpoint_name=endpoint_name,
            baseline_uri=baseline_uri,
            model_uri=model_uri,
            capture_uri=capture_uri,
            labels_uri=labels_uri,
            dataset_uri=dataset_uri,
            start=start,
            end=end,
            checks=checks,
            output_dir=output_dir,
        )
    else:
        written = _sagemaker_monitor(
            endpoint_name=endpoint_name,
            baseline_uri=baseline_uri,
            model_uri=model_uri,
            capture_uri=capture_uri,
            labels_uri=labels_uri,
            start=start,
            end=end,
            checks=checks,
            output=output,
            run_id=run_id,
        )
        if written is None:
            write_empty_window(output_dir, checks, {"capture": capture_uri, "records": 0})
        else:
            location = written
            for name in (SUMMARY_FILE, REPORT_FILE):
                storage.download(storage.join(written, name), output_dir / name)
    summary = json.loads((output_dir / SUMMARY_FILE).read_text())
    Path(report.path).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(output_dir / REPORT_FILE, report.path)
    for name, value in sorted(kfp_metrics(summary).items()):
        metrics.log_metric(name, value)
    if backend == "sagemaker":
        _publish(summary, endpoint_name=endpoint_name, checks=checks)
    output.metadata.update(
        {
            "alarm": bool(summary["alarm"]),
            "data_drift": bool(summary["data_drift"]),
            "quality_drop": bool(summary["quality_drop"]),
            "headline": summary["headline"],
            "monitor_output": location,
        }
    )
    log.info("Monitoring %s (%s): %s", endpoint_name, checks, summary["headline"])
    return bool(summary["alarm"])


def _publish(summary: Mapping[str, Any], *, endpoint_name: str, checks: str) -> None:
    from skinlesion.aws import client_factory_from_environment
    from skinlesion.monitoring.cloudwatch import metric_data, metrics_namespace, publish_metrics

    data = metric_data(summary, endpoint_name=endpoint_name, schedule=checks)
    publish_metrics(
        client_factory_from_environment().client("cloudwatch"), metrics_namespace(), data
    )


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
    """Send the alarm (SNS with ``sagemaker``, a log line and a record with ``local``)."""
    from skinlesion.monitoring.notify import notification_text, send_notification

    configure_logging()
    _check_backend(backend)
    summary = _summary(monitor_output)
    report = str(monitor_output.metadata.get("monitor_output") or monitor_output.uri)
    subject, message = notification_text(
        summary, endpoint_name=endpoint_name, report_uri=f"{report.rstrip('/')}/report.html"
    )
    topic = ""
    if backend == "sagemaker":
        from skinlesion.settings import Settings

        topic = Settings.from_environment().sns_topic_arn
    sent = send_notification(backend, subject, message, topic_arn=topic)
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
) -> str:
    """Start the training pipeline through the KFP API (``kfp_host``), or record the request.

    Returns the new run's id ("" when only recorded).
    """
    from skinlesion.monitoring.retrain import (
        kubeflow_settings,
        local_record_dir,
        request_retraining,
    )

    configure_logging()
    _check_backend(backend)
    summary = _summary(monitor_output)
    settings = kubeflow_settings(kfp_host, kfp_namespace, kfp_experiment)
    arguments = dict(training_arguments or {})
    arguments.setdefault("backend", backend)
    made = request_retraining(
        reason=str(summary["headline"]),
        data_uri=data_uri,
        arguments=arguments,
        kubeflow=settings,
        record_dir=local_record_dir() if backend == "local" else None,
        pipeline_name=pipeline_name,
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
    Returns where the baseline is (the monitoring pipeline's ``baseline_uri``).
    """
    configure_logging()
    _check_backend(backend)
    if backend == "local":
        model_path = str(model.metadata.get("model_data") or model.path)
        args = [
            "--dataset", dataset.path,
            "--model", model_path,
            "--output", baseline.path,
            "--split", split,
        ]  # fmt: skip
        if data_uri and not data_uri.startswith("s3://"):
            args += ["--raw", data_uri]
        run_job("skinlesion.jobs.baseline", args)
        location = baseline.path
    else:
        from skinlesion.backends.sagemaker import SageMakerBackend
        from skinlesion.monitoring.sagemaker import run_baseline_job

        backend_ = SageMakerBackend.from_environment()
        location = run_baseline_job(
            backend_,
            dataset_uri=backend_.artifact_location(dataset.path, dataset.uri),
            model_uri=str(
                model.metadata.get("model_data_s3")
                or backend_.artifact_location(model.path, model.uri)
            ),
            output_uri=backend_.artifact_location(baseline.path, baseline.uri),
            raw_uri=data_uri,
            split=split,
            # Without a run id, the output artifact's URI names the job, as for evaluate: KFP
            # keeps it when the step is retried, so a retry re-attaches to its job.
            run_id=run_id or f"artifact:{baseline.uri or baseline.path}",
            task_name="baseline",
        )
    baseline.metadata.update({"baseline_uri": location, "split": split})
    log.info("Monitoring baseline at %s", location)
    return location
