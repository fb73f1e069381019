"""Stream a SageMaker job's CloudWatch logs into the step's log while the job runs.

Each ``poll()`` finds the job's log streams (``<job>/algo-1-...``; paginated) and reads every
stream forward from where the last poll stopped (paginated with ``nextForwardToken``), so each
line appears once, in order, while the job is still running, and none is lost past the first page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from skinlesion.backends.sagemaker.errors import is_not_found

log = logging.getLogger(__name__)
job_log = logging.getLogger("skinlesion.sagemaker.job")

PROCESSING_LOG_GROUP = "/aws/sagemaker/ProcessingJobs"
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TRANSFORM_LOG_GROUP = "/aws/sagemaker/TransformJobs"

LogSink = Callable[[str, str], None]


def log_line(stream: str, message: str) -> None:
    """The default sink: one INFO record per job log line, tagged with the stream's host part."""
    job_log.info("[%s] %s", stream.split("/", 1)[-1], message.rstrip("\n"))


class LogStreamer:
    """Incremental, paginated reader of the log streams of one job."""

    def __init__(
        self,
        logs: Any,
        log_group: str,
        job_name: str,
        *,
        sink: LogSink = log_line,
        page_size: int | None = None,
    ) -> None:
        self.logs = logs
        self.log_group = log_group
        self.job_name = job_name
        self.sink = sink
        self.page_size = page_size
        self._tokens: dict[str, str] = {}
        self.lines = 0

    def poll(self) -> int:
        """Emit every line written since the last poll; returns how many."""
        emitted = 0
        try:
            streams = self._streams()
        except ClientError as error:
            if is_not_found(error):
                return 0  # the log group appears with the job's first line
            raise
        for stream in streams:
            emitted += self._drain(stream)
        self.lines += emitted
        return emitted

    def _streams(self) -> list[str]:
        names: list[str] = []
        kwargs: dict[str, Any] = {
            "logGroupName": self.log_group,
            "logStreamNamePrefix": f"{self.job_name}/",
        }
        if self.page_size:
            kwargs["limit"] = self.page_size
        while True:
            response = self.logs.describe_log_streams(**kwargs)
            names.extend(s["logStreamName"] for s in response.get("logStreams", []))
            token = response.get("nextToken")
            if not token:
                return sorted(names)
            kwargs["nextToken"] = token

    def _drain(self, stream: str) -> int:
        emitted = 0
        token = self._tokens.get(stream)
        while True:
            kwargs: dict[str, Any] = {
                "logGroupName": self.log_group,
                "logStreamName": stream,
                "startFromHead": True,
            }
            if token:
                kwargs["nextToken"] = token
            if self.page_size:
                kwargs["limit"] = self.page_size
            response = self.logs.get_log_events(**kwargs)
            events = response.get("events", [])
            for event in events:
                self.sink(stream, event["message"])
            emitted += len(events)
            next_token = response.get("nextForwardToken")
            # The end of a stream returns the token that was passed in.
            if not next_token or next_token == token or not events:
                if next_token:
                    self._tokens[stream] = next_token
                return emitted
            token = next_token
            self._tokens[stream] = token
