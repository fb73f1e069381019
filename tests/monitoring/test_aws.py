"""The monitor on AWS against moto's server: the window's capture files as a ManifestFile
processing job, CloudWatch metrics and the SNS notification, all through the SageMaker backend."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from tests.aws.helpers import BUCKETS, make_settings, offline_client
from tests.aws.moto_server import REGION

from skinlesion.aws import AwsClients
from skinlesion.backends.base import MonitorRequest
from skinlesion.backends.errors import NotificationError
from skinlesion.backends.local import LocalBackend, LocalSettings
from skinlesion.backends.sagemaker import SageMakerBackend
from skinlesion.backends.sagemaker.capture_windows import capture_prefix, manifest
from skinlesion.backends.sagemaker.job_requests import JobContext, monitor_job_request
from skinlesion.backends.sagemaker.validation import request_problems
from skinlesion.capture import window_hour_folders
from skinlesion.monitoring.alarm_text import notification_text
from skinlesion.monitoring.cloudwatch_metrics import metric_data

pytestmark = pytest.mark.aws

CAPTURE = f"s3://{BUCKETS['capture_bucket']}/capture"
START = datetime(2024, 5, 1, 11, 30, tzinfo=UTC)
SUMMARY: dict[str, Any] = {
    "alarm": True,
    "data_drift": True,
    "quality_drop": False,
    "headline": "data drift (features red_green; embeddings)",
    "window": {"images": 200, "records": 180},
    "drifted_features": ["red_green"],
    "violations": [
        {
            "feature_name": "red_green",
            "constraint_check_type": "baseline_drift_check",
            "description": "PSI 0.9",
        }
    ],
    "unreadable_fraction": 0.0,
    "features": [{"name": "red_green", "psi": 0.9}, {"name": "brightness", "psi": None}],
    "embedding": {"mmd2": 0.02, "p_value": 0.002},
    "predictions": {"js_distance": 0.05},
    "quality_checks": [{"metric": "recall_MEL", "value": 0.71}],
}


@pytest.fixture
def backend(moto_endpoint: str) -> SageMakerBackend:
    settings = make_settings(moto_endpoint, run_id="run-7f3e")
    session = boto3.Session(region_name=REGION)
    clients = AwsClients.from_settings(settings, session=session)
    for bucket in BUCKETS.values():
        clients.client("s3").create_bucket(Bucket=bucket)
    return SageMakerBackend(settings, clients, sleep=lambda _: None)


def test_the_window_is_the_hour_folders_it_overlaps() -> None:
    assert window_hour_folders(START, START + timedelta(hours=1)) == [
        "2024/05/01/11",
        "2024/05/01/12",
    ]
    assert window_hour_folders(START, START) == []
    assert capture_prefix(CAPTURE + "/", "skinlesion") == f"{CAPTURE}/skinlesion/AllTraffic"
    assert manifest([f"s3://b/{k}" for k in ("a/1.jsonl", "a/2.jsonl")]) == [
        {"prefix": "s3://b/"},
        "a/1.jsonl",
        "a/2.jsonl",
    ]
    with pytest.raises(ValueError, match="one bucket"):
        manifest(["s3://a/x.jsonl", "s3://b/y.jsonl"])


def test_the_monitor_job_request_is_valid_for_the_sagemaker_api() -> None:
    settings = make_settings()
    request = monitor_job_request(
        settings,
        MonitorRequest(
            endpoint_name="skinlesion",
            output_uri="s3://m/pipeline-root/monitor/",
            start=START,
            end=START + timedelta(hours=1),
            checks="all",
        ),
        job_name="skl-test-monitor-0123456789",
        baseline_uri="s3://m/baseline/",
        model_uri="s3://m/model/model.tar.gz",
        manifest_uri="s3://m/staging/job/capture.manifest",
        output_uri="s3://m/pipeline-root/monitor/",
        labels_uri="s3://m/ground-truth/",
        context=JobContext(stage="monitor", run_id="run-1"),
    )
    assert request_problems(offline_client("sagemaker").meta.service_model,
                            "CreateProcessingJob", request) == []  # fmt: skip
    app = request["AppSpecification"]
    assert app["ContainerEntrypoint"] == ["python", "-m", "skinlesion.jobs.monitor"]
    assert app["ContainerArguments"] == [
        "--baseline", "/opt/ml/processing/input/baseline",
        "--model", "/opt/ml/processing/input/model",
        "--capture", "/opt/ml/processing/input/capture",
        "--output", "/opt/ml/processing/output/monitor",
        "--checks", "all",
        "--labels", "/opt/ml/processing/input/labels",
        "--start", "2024-05-01T11:30:00.000Z",
        "--end", "2024-05-01T12:30:00.000Z",
    ]  # fmt: skip
    inputs = {i["InputName"]: i["S3Input"] for i in request["ProcessingInputs"]}
    assert inputs["capture"]["S3DataType"] == "ManifestFile"
    assert inputs["capture"]["S3Uri"] == "s3://m/staging/job/capture.manifest"
    assert inputs["baseline"]["S3DataType"] == "S3Prefix"
    [output] = request["ProcessingOutputConfig"]["Outputs"]
    assert output["S3Output"]["S3Uri"] == "s3://m/pipeline-root/monitor/"


def test_the_job_reads_exactly_the_windows_capture_files(backend: SageMakerBackend) -> None:
    s3 = backend.clients.client("s3")
    bucket = BUCKETS["capture_bucket"]
    keys = {
        hour: f"capture/skinlesion/AllTraffic/2024/05/01/{hour}/00-00-000-{hour}.jsonl"
        for hour in ("10", "11", "12", "13")
    }
    for key in keys.values():
        s3.put_object(Bucket=bucket, Key=key, Body=b"{}\n")
    models = BUCKETS["models_bucket"]
    s3.put_object(Bucket=models, Key="baseline/statistics.json", Body=b"{}")
    s3.put_object(Bucket=models, Key="train/model.tar.gz", Body=b"archive")
    result = backend.monitor(
        MonitorRequest(
            endpoint_name="skinlesion",
            baseline_uri=f"s3://{models}/baseline/",
            model_uri=f"s3://{models}/train/model.tar.gz",
            capture_uri=CAPTURE,
            output_uri=f"s3://{models}/pipeline-root/monitor",
            start=START,
            end=START + timedelta(hours=1),
            checks="drift",
            task_name="monitor",
        )
    )
    assert result is not None
    assert result.output_uri == f"s3://{models}/pipeline-root/monitor"
    sagemaker = backend.clients.client("sagemaker")
    [job] = sagemaker.list_processing_jobs()["ProcessingJobSummaries"]
    assert job["ProcessingJobName"].startswith("skl-test-monitor-")  # the settings' prefix
    described = sagemaker.describe_processing_job(ProcessingJobName=job["ProcessingJobName"])
    capture = next(i for i in described["ProcessingInputs"] if i["InputName"] == "capture")
    manifest_bucket, manifest_key = capture["S3Input"]["S3Uri"].removeprefix("s3://").split("/", 1)
    body = json.loads(s3.get_object(Bucket=manifest_bucket, Key=manifest_key)["Body"].read())
    # 11:30-12:30 overlaps the 11 and 12 o'clock folders, not 10 or 13.
    assert body == [{"prefix": f"s3://{bucket}/"}, keys["11"], keys["12"]]


def test_an_empty_window_starts_no_job(backend: SageMakerBackend) -> None:
    result = backend.monitor(
        MonitorRequest(
            endpoint_name="quiet",
            baseline_uri="s3://x/baseline/",
            model_uri="s3://x/model.tar.gz",
            capture_uri=CAPTURE,
            output_uri="s3://x/out",
            start=START,
            end=START + timedelta(hours=1),
        )
    )
    assert result is None
    assert not backend.clients.client("sagemaker").list_processing_jobs()["ProcessingJobSummaries"]


def test_metrics_are_published_to_cloudwatch(backend: SageMakerBackend) -> None:
    data = metric_data(SUMMARY, endpoint_name="skinlesion", schedule="drift")
    names = {d["MetricName"] for d in data}
    assert {"data_drift", "feature_baseline_drift_red_green", "embedding_mmd2",
            "recall_MEL", "window_images"} <= names  # fmt: skip
    assert "feature_baseline_drift_brightness" not in names  # no value, no datum
    cloudwatch = backend.clients.client("cloudwatch")
    assert backend.settings.metrics_namespace == "SkinLesion"
    assert backend.publish_metrics(data) == len(data)
    listed = cloudwatch.list_metrics(Namespace="SkinLesion")["Metrics"]
    assert {m["MetricName"] for m in listed} == names
    dimensions = {(d["Name"], d["Value"]) for m in listed for d in m["Dimensions"]}
    assert dimensions == {("Endpoint", "skinlesion"), ("MonitoringSchedule", "drift")}


def test_the_alarm_goes_to_the_sns_topic(backend: SageMakerBackend) -> None:
    sns = backend.clients.client("sns")
    sqs = backend.clients.client("sqs")
    topic = sns.create_topic(Name="skinlesion-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="alerts")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    subject, message = notification_text(
        SUMMARY, endpoint_name="skinlesion", report_uri="s3://m/monitor/report.html"
    )
    backend.settings = dataclasses.replace(backend.settings, sns_topic_arn=topic)
    sent = backend.notify(subject, message)
    assert sent.channel == "sns" and sent.message_id
    [received] = sqs.receive_message(QueueUrl=queue)["Messages"]
    envelope = json.loads(received["Body"])
    assert envelope["Subject"] == subject == "[skinlesion] skinlesion: " + SUMMARY["headline"]
    assert "red_green (baseline_drift_check)" in envelope["Message"]
    assert "s3://m/monitor/report.html" in envelope["Message"]


def test_a_missing_topic_is_named_in_the_error(backend: SageMakerBackend) -> None:
    with pytest.raises(NotificationError, match="SKINLESION_SNS_TOPIC_ARN"):
        backend.notify("s", "m")


def test_a_window_of_any_length_keeps_its_newest_hours_on_both_backends(
    backend: SageMakerBackend, tmp_path: Any
) -> None:
    """A 40-day window used to lose every hour after the 745th on SageMaker (the listing stopped
    counting from the window's start) while the local backend kept them: both must list the same
    files, the newest hour included."""
    end = START + timedelta(days=40)
    hours = [
        START - timedelta(hours=2),
        START,
        START + timedelta(days=20),
        end - timedelta(hours=1),
    ]
    s3 = backend.clients.client("s3")
    local_capture = tmp_path / "capture"
    relative = []
    for moment in hours:
        key = f"skinlesion/AllTraffic/{moment:%Y/%m/%d/%H}/00-00-000-x.jsonl"
        relative.append(key)
        s3.put_object(Bucket=BUCKETS["capture_bucket"], Key=f"capture/{key}", Body=b"{}\n")
        (local_capture / key).parent.mkdir(parents=True, exist_ok=True)
        (local_capture / key).write_text("{}\n")
    on_aws = backend.list_capture_files("skinlesion", CAPTURE, START, end)
    local = LocalBackend(LocalSettings(root=tmp_path / "root"))
    on_disk = local.list_capture_files("skinlesion", str(local_capture), START, end)
    expected = relative[1:]  # the hour before the window is out, the newest hour is in
    assert [u.removeprefix(f"{CAPTURE}/") for u in on_aws] == expected
    assert [str(p).removeprefix(f"{local_capture}/") for p in on_disk] == expected
