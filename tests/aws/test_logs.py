"""CloudWatch log streaming against moto's logs API: paginated, incremental, only this job's.

SageMaker never writes logs in moto, so each test writes the lines a job's container would.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import pytest
from tests.aws.moto_server import REGION

from skinlesion.aws import AwsClients
from skinlesion.backends.sagemaker.log_streaming import TRAINING_LOG_GROUP, LogStreamer

JOB = "skl-test-train-abc"


@pytest.fixture
def logs(endpoint: str) -> Any:
    client = AwsClients(REGION, endpoint_url=endpoint).client("logs")
    client.create_log_group(logGroupName=TRAINING_LOG_GROUP)
    return client


def write(logs: Any, stream: str, messages: list[str]) -> None:
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_stream(logGroupName=TRAINING_LOG_GROUP, logStreamName=stream)
    now = int(time.time() * 1000)
    logs.put_log_events(
        logGroupName=TRAINING_LOG_GROUP,
        logStreamName=stream,
        logEvents=[{"timestamp": now + i, "message": m} for i, m in enumerate(messages)],
    )


def test_every_page_of_every_stream_of_the_job_and_nothing_else(logs: Any) -> None:
    write(logs, f"{JOB}/algo-1-1700000000", [f"host1 line {i}" for i in range(7)])
    write(logs, f"{JOB}/algo-2-1700000000", [f"host2 line {i}" for i in range(3)])
    write(logs, f"{JOB}/algo-3-1700000000", ["host3 only line"])
    write(logs, f"{JOB}-a2/algo-1-1700000000", ["another attempt's line"])
    seen: list[tuple[str, str]] = []
    streamer = LogStreamer(
        logs, TRAINING_LOG_GROUP, JOB, sink=lambda s, m: seen.append((s, m)), page_size=2
    )
    assert streamer.poll() == 11
    assert [m for _, m in seen] == [
        *(f"host1 line {i}" for i in range(7)),
        *(f"host2 line {i}" for i in range(3)),
        "host3 only line",
    ]
    assert {s for s, _ in seen} == {f"{JOB}/algo-{h}-1700000000" for h in (1, 2, 3)}


def test_each_poll_emits_only_what_is_new(logs: Any) -> None:
    stream = f"{JOB}/algo-1-1700000000"
    seen: list[str] = []
    streamer = LogStreamer(
        logs, TRAINING_LOG_GROUP, JOB, sink=lambda s, m: seen.append(m), page_size=3
    )
    assert streamer.poll() == 0  # no stream yet
    write(logs, stream, ["a", "b"])
    assert streamer.poll() == 2
    assert streamer.poll() == 0
    write(logs, stream, ["c", "d", "e", "f"])
    assert streamer.poll() == 4
    assert seen == ["a", "b", "c", "d", "e", "f"]
    assert streamer.lines == 6


def test_a_missing_log_group_is_not_an_error(endpoint: str) -> None:
    logs = AwsClients(REGION, endpoint_url=endpoint).client("logs")
    assert LogStreamer(logs, "/aws/sagemaker/ProcessingJobs", JOB).poll() == 0


def test_default_sink_logs_each_line_under_the_job_logger(
    logs: Any, caplog: pytest.LogCaptureFixture
) -> None:
    write(logs, f"{JOB}/algo-1-1700000000", ["epoch=1 train_loss=0.9\n"])
    with caplog.at_level("INFO", logger="skinlesion.sagemaker.job"):
        LogStreamer(logs, TRAINING_LOG_GROUP, JOB).poll()
    assert [r.getMessage() for r in caplog.records] == [
        "[algo-1-1700000000] epoch=1 train_loss=0.9"
    ]
