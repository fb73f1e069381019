"""The monitor and baseline jobs as SageMaker processing jobs.

The endpoint's DataCaptureConfig writes ``<capture uri>/<endpoint>/<variant>/yyyy/mm/dd/hh/``;
a window's files are listed by hour folder and handed to the job as a ManifestFile input, so
the job reads exactly the window (not the whole capture history) from its local disk, and works
with network isolation. Requests are built by pure functions (tested as whole dicts) on the
SageMaker backend's ``processing_job_request``; the backend's ProcessingJobRunner runs them
(re-attach on retry, logs streamed, stop on SIGTERM).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from skinlesion.capture import DEFAULT_VARIANT, format_inference_time
from skinlesion.contract import PROCESSING_INPUT, PROCESSING_OUTPUT

log = logging.getLogger(__name__)

MONITOR_MODULE = "skinlesion.jobs.monitor"
BASELINE_MODULE = "skinlesion.jobs.baseline"
MAX_WINDOW_HOURS = 24 * 31  # a window longer than a month is listed prefix by prefix anyway


def capture_prefix(capture_uri: str, endpoint_name: str, variant: str = DEFAULT_VARIANT) -> str:
    """``<capture uri>/<endpoint>/<variant>``: where one endpoint variant's capture lands."""
    return f"{capture_uri.rstrip('/')}/{endpoint_name}/{variant}"


def hour_prefixes(start: datetime, end: datetime) -> list[str]:
    """``yyyy/mm/dd/hh`` of every hour that overlaps [start, end) (UTC)."""
    if end <= start:
        return []
    moment = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    hours: list[str] = []
    while moment < end and len(hours) <= MAX_WINDOW_HOURS:
        hours.append(moment.strftime("%Y/%m/%d/%H"))
        moment += timedelta(hours=1)
    return hours


def window_objects(
    s3: Any, prefix_uri: str, start: datetime | None, end: datetime | None
) -> list[str]:
    """The s3:// URIs of the capture files in the window's hour folders (all when unbounded)."""
    from skinlesion.storage import split_s3

    bucket, prefix = split_s3(prefix_uri.rstrip("/") + "/")
    if start is not None and end is not None:
        prefixes = [f"{prefix}{hour}/" for hour in hour_prefixes(start, end)]
    else:
        prefixes = [prefix]
    uris: list[str] = []
    paginator = s3.get_paginator("list_objects_v2")
    for folder in prefixes:
        for page in paginator.paginate(Bucket=bucket, Prefix=folder):
            uris.extend(
                f"s3://{bucket}/{item['Key']}"
                for item in page.get("Contents", [])
                if item["Key"].endswith(".jsonl")
            )
    return sorted(uris)


def manifest(uris: list[str]) -> list[Any]:
    """A SageMaker ManifestFile body: the bucket as prefix, then each key relative to it."""
    if not uris:
        raise ValueError("A manifest needs at least one object.")
    buckets = {uri.split("/", 3)[2] for uri in uris}
    if len(buckets) != 1:
        raise ValueError(f"A manifest covers one bucket; got {sorted(buckets)}.")
    bucket = buckets.pop()
    return [{"prefix": f"s3://{bucket}/"}, *(uri.split("/", 3)[3] for uri in uris)]


def monitor_job_request(
    settings: Any,
    *,
    job_name: str,
    baseline_uri: str,
    model_uri: str,
    manifest_uri: str,
    output_uri: str,
    labels_uri: str = "",
    start: datetime | None = None,
    end: datetime | None = None,
    checks: str = "all",
    context: Any,
) -> dict[str, Any]:
    """CreateProcessingJob for ``python -m skinlesion.jobs.monitor`` over one window."""
    from skinlesion.backends.sagemaker.job_requests import (
        processing_input,
        processing_job_request,
        processing_output,
    )

    capture = processing_input("capture", manifest_uri)
    capture["S3Input"]["S3DataType"] = "ManifestFile"
    inputs = [
        processing_input("baseline", baseline_uri),
        processing_input("model", model_uri),
        capture,
    ]
    arguments = [
        "--baseline", f"{PROCESSING_INPUT}/baseline",
        "--model", f"{PROCESSING_INPUT}/model",
        "--capture", f"{PROCESSING_INPUT}/capture",
        "--output", f"{PROCESSING_OUTPUT}/monitor",
        "--checks", checks,
    ]  # fmt: skip
    if labels_uri:
        inputs.append(processing_input("labels", labels_uri))
        arguments += ["--labels", f"{PROCESSING_INPUT}/labels"]
    if start is not None:
        arguments += ["--start", format_inference_time(start)]
    if end is not None:
        arguments += ["--end", format_inference_time(end)]
    return processing_job_request(
        settings,
        job_name=job_name,
        module=MONITOR_MODULE,
        arguments=arguments,
        inputs=inputs,
        outputs=[processing_output("monitor", output_uri)],
        context=context,
    )


def baseline_job_request(
    settings: Any,
    *,
    job_name: str,
    dataset_uri: str,
    model_uri: str,
    output_uri: str,
    raw_uri: str = "",
    split: str = "val",
    context: Any,
) -> dict[str, Any]:
    """CreateProcessingJob for ``python -m skinlesion.jobs.baseline``."""
    from skinlesion.backends.sagemaker.job_requests import (
        processing_input,
        processing_job_request,
        processing_output,
    )

    inputs = [processing_input("dataset", dataset_uri), processing_input("model", model_uri)]
    arguments = [
        "--dataset", f"{PROCESSING_INPUT}/dataset",
        "--model", f"{PROCESSING_INPUT}/model",
        "--output", f"{PROCESSING_OUTPUT}/baseline",
        "--split", split,
        "--model-uri", model_uri,
    ]  # fmt: skip
    if raw_uri:
        inputs.append(processing_input("data", raw_uri))
        arguments += ["--raw", f"{PROCESSING_INPUT}/data"]
    return processing_job_request(
        settings,
        job_name=job_name,
        module=BASELINE_MODULE,
        arguments=arguments,
        inputs=inputs,
        outputs=[processing_output("baseline", output_uri)],
        context=context,
    )


def _job(backend: Any, stage: str, run_id: str, task_name: str) -> tuple[str, Any]:
    """The job's deterministic name (a retried step finds its job again) and its tags."""
    from skinlesion.backends.sagemaker.backend import REQUIRED_FOR_JOBS
    from skinlesion.backends.sagemaker.job_requests import JobContext
    from skinlesion.backends.sagemaker.naming import job_name

    settings = backend.settings
    settings.require(*REQUIRED_FOR_JOBS)
    run = run_id or settings.run_id
    name = job_name(stage, prefix=settings.name_prefix, run_id=run, task_name=task_name)
    return name, JobContext(stage=stage, run_id=run, task_name=task_name or stage)


def _run(backend: Any, request: dict[str, Any]) -> Any:
    from skinlesion.backends.sagemaker.runners import ProcessingJobRunner

    settings = backend.settings
    runner = ProcessingJobRunner(
        backend.clients.client("sagemaker"),
        backend.clients.client("logs"),
        poll_seconds=settings.poll_seconds,
        timeout_seconds=settings.effective_job_timeout_seconds,
        max_attempts=settings.max_job_attempts,
        sleep=backend.sleep,
        clock=backend.clock,
    )
    return runner.run(request)


def run_monitor_job(
    backend: Any,
    *,
    baseline_uri: str,
    model_uri: str,
    capture_prefix_uri: str,
    output_uri: str,
    labels_uri: str = "",
    start: datetime | None = None,
    end: datetime | None = None,
    checks: str = "all",
    run_id: str = "",
    task_name: str = "",
) -> str | None:
    """Run the monitor job over the window; the S3 URI of its outputs (None: empty window)."""
    name, context = _job(backend, "monitor", run_id, task_name)
    plane = backend.data_plane
    s3 = backend.clients.client("s3")
    objects = window_objects(s3, capture_prefix_uri, start, end)
    if not objects:
        log.warning(
            "No capture files under %s between %s and %s: nothing to monitor",
            capture_prefix_uri,
            start,
            end,
        )
        return None
    from skinlesion.backends.sagemaker.s3 import S3Uri

    manifest_uri = S3Uri.parse(backend.settings.staging_root).join(name, "capture.manifest")
    s3.put_object(
        Bucket=manifest_uri.bucket,
        Key=manifest_uri.key,
        Body=json.dumps(manifest(objects)).encode(),
        **(
            {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": backend.settings.kms_key_arn}
            if backend.settings.kms_key_arn
            else {}
        ),
    )
    output = plane.output_uri(output_uri, job_name=name, name="monitor")
    request = monitor_job_request(
        backend.settings,
        job_name=name,
        baseline_uri=plane.input_uri(baseline_uri, job_name=name, name="baseline"),
        model_uri=plane.model_archive_uri(model_uri, staging_name=name),
        manifest_uri=str(manifest_uri),
        output_uri=output,
        labels_uri=plane.input_uri(labels_uri, job_name=name, name="labels") if labels_uri else "",
        start=start,
        end=end,
        checks=checks,
        context=context,
    )
    log.info("Monitoring %d capture files with processing job %s", len(objects), name)
    _run(backend, request)
    return output


def run_baseline_job(
    backend: Any,
    *,
    dataset_uri: str,
    model_uri: str,
    output_uri: str,
    raw_uri: str = "",
    split: str = "val",
    run_id: str = "",
    task_name: str = "",
) -> str:
    """Run the baseline job; the S3 URI of the baseline folder."""
    name, context = _job(backend, "baseline", run_id, task_name)
    plane = backend.data_plane
    output = plane.output_uri(output_uri, job_name=name, name="baseline")
    request = baseline_job_request(
        backend.settings,
        job_name=name,
        dataset_uri=plane.input_uri(dataset_uri, job_name=name, name="dataset"),
        model_uri=plane.model_archive_uri(model_uri, staging_name=name),
        output_uri=output,
        raw_uri=plane.input_uri(raw_uri, job_name=name, name="data") if raw_uri else "",
        split=split,
        context=context,
    )
    _run(backend, request)
    return output
