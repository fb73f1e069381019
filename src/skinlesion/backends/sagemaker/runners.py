"""The life of a SageMaker job: create or attach, wait, stream logs, stop on timeout.

``JobRunner`` owns all of it; ``ProcessingJobRunner`` and ``TrainingJobRunner`` only say how their
kind of job is created, described and stopped.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, ClassVar

from botocore.exceptions import ClientError

from skinlesion.backends.base import JobStatus
from skinlesion.backends.sagemaker.errors import (
    JobAttemptsExhaustedError,
    JobFailedError,
    JobInterruptedError,
    JobStoppedError,
    JobTimeoutError,
    is_already_exists,
    is_not_found,
    is_retryable_failure,
)
from skinlesion.backends.sagemaker.log_streaming import (
    PROCESSING_LOG_GROUP,
    TRAINING_LOG_GROUP,
    TRANSFORM_LOG_GROUP,
    LogSink,
    LogStreamer,
    log_line,
)
from skinlesion.backends.sagemaker.naming import attempt_name
from skinlesion.backends.sagemaker.validation import validate_request

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobState:
    """One look at a job: its status and why, plus the whole Describe response."""

    name: str
    status: JobStatus
    secondary_status: str = ""
    failure_reason: str = ""
    exit_message: str = ""
    description: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


class JobRunner(abc.ABC):
    """Runs one SageMaker job to its end. Subclasses implement the four hooks.

    ``run(request)`` creates the job named in the request, unless a job of that name exists (or
    the create says it does: a lost response): a running one is re-attached to, a completed one
    is reused, a stopped one or one failed for a transient reason (capacity, internal,
    throttling) makes the next attempt name (``-a2``...) be tried, and one failed for its own
    reason (AlgorithmError, ClientError) fails the step at once. While waiting it streams the
    job's CloudWatch logs, leaves the job running on SIGTERM/SIGINT (an eviction looks the same
    as a cancel), stops it after ``timeout_seconds``, and raises with FailureReason verbatim when
    the job fails.
    """

    kind: ClassVar[str]
    name_field: ClassVar[str]
    create_operation: ClassVar[str]
    log_group: ClassVar[str]

    def __init__(
        self,
        sagemaker: Any,
        logs: Any,
        *,
        poll_seconds: float = 15.0,
        timeout_seconds: float = 24 * 3600,
        max_attempts: int = 3,
        log_sink: LogSink = log_line,
        log_page_size: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sagemaker = sagemaker
        self.logs = logs
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds
        self.max_attempts = max_attempts
        self.log_sink = log_sink
        self.log_page_size = log_page_size
        self.sleep = sleep
        self.clock = clock

    # --- hooks ------------------------------------------------------------------------------
    @abc.abstractmethod
    def _create(self, request: Mapping[str, Any]) -> None:
        """Send the create call."""

    @abc.abstractmethod
    def _describe(self, name: str) -> Mapping[str, Any]:
        """The Describe response (raises ClientError when there is no such job)."""

    @abc.abstractmethod
    def _stop(self, name: str) -> None:
        """Send the stop call."""

    @abc.abstractmethod
    def _state(self, name: str, description: Mapping[str, Any]) -> JobState:
        """Read the typed state out of a Describe response."""

    # --- the life of a job ------------------------------------------------------------------
    def run(self, request: Mapping[str, Any]) -> JobState:
        """Create (or find again) the job of ``request``, wait for its end, return its final state."""
        validate_request(self.sagemaker.meta.service_model, self.create_operation, request)
        name, state = self._attach_or_create(request)
        if state is not None and state.status is JobStatus.COMPLETED:
            return state
        return self.wait(name)

    def _attach_or_create(self, request: Mapping[str, Any]) -> tuple[str, JobState | None]:
        base = request[self.name_field]
        for attempt in range(1, self.max_attempts + 1):
            name = attempt_name(base, attempt)
            state = self.find(name)
            if state is None:
                state = self._create_or_attach({**request, self.name_field: name})
                if state is None:
                    return name, None
            if state.status is JobStatus.COMPLETED:
                log.info("SageMaker %s %s already completed: reusing its outputs", self.kind, name)
                return name, state
            if state.status is JobStatus.IN_PROGRESS:
                log.info(
                    "Re-attaching to SageMaker %s %s (%s)", self.kind, name, state.secondary_status
                )
                return name, state
            if state.status is JobStatus.STOPPING:
                state = self._wait_quietly(name)
            if state.status is JobStatus.FAILED and not is_retryable_failure(state.failure_reason):
                # A retried KFP step must not pay for a new job that fails the same way.
                log.error(
                    "SageMaker %s %s failed for a reason a new attempt cannot fix", self.kind, name
                )
                self._raise_for(state)
            log.warning(
                "SageMaker %s %s ended %s%s; trying the next attempt",
                self.kind,
                name,
                state.status,
                f": {state.failure_reason}" if state.failure_reason else "",
            )
        raise JobAttemptsExhaustedError(
            f"Every attempt of SageMaker {self.kind} {base} ({self.max_attempts}: {base}, "
            f"{attempt_name(base, 2)}, ...) failed or was stopped. Raise "
            "SKINLESION_MAX_JOB_ATTEMPTS or use a new pipeline run."
        )

    def _create_or_attach(self, request: Mapping[str, Any]) -> JobState | None:
        """Create the job; None when created. When SageMaker says the name is taken, an earlier
        create of ours did succeed (its response was lost and botocore retried it, or a racing
        pod of the same step got there first): return that job's state instead of failing."""
        name = str(request[self.name_field])
        try:
            self._create(request)
        except ClientError as error:
            if not is_already_exists(error):
                raise
            state = self.find(name)
            if state is None:  # taken by something we cannot describe: say so, do not guess
                raise
            log.info(
                "SageMaker %s %s already exists (an earlier create succeeded): attaching to it",
                self.kind,
                name,
            )
            return state
        log.info("Created SageMaker %s %s", self.kind, name)
        return None

    def find(self, name: str) -> JobState | None:
        """The job's state, or None when no job has this name."""
        try:
            return self._state(name, self._describe(name))
        except ClientError as error:
            if is_not_found(error):
                return None
            raise

    def wait(self, name: str) -> JobState:
        """Poll until the job ends, streaming its logs; raise unless it completed."""
        deadline = self.clock() + self.timeout_seconds
        streamer = LogStreamer(
            self.logs, self.log_group, name, sink=self.log_sink, page_size=self.log_page_size
        )
        seen: tuple[str, str] | None = None
        with self._leave_running_on_signals(name) as interrupted:
            while True:
                interrupted.raise_if_set()
                state = self._state(name, self._describe(name))
                if (state.status, state.secondary_status) != seen:
                    seen = (state.status, state.secondary_status)
                    detail = f" / {state.secondary_status}" if state.secondary_status else ""
                    log.info("SageMaker %s %s: %s%s", self.kind, name, state.status, detail)
                self._stream(streamer)
                if state.status.terminal:
                    break
                if self.clock() >= deadline:
                    self._stop_quietly(name)
                    raise JobTimeoutError(self.kind, name, self.timeout_seconds)
                interrupted.raise_if_set()
                self.sleep(self.poll_seconds)
        self._stream(streamer)  # lines that reached CloudWatch after the last poll
        return self._raise_for(state)

    def _stream(self, streamer: LogStreamer) -> None:
        try:
            streamer.poll()
        except ClientError as error:
            # Logs are for people; a log hiccup must not fail the step.
            log.warning("Could not read the logs of %s: %s", streamer.job_name, error)

    def _wait_quietly(self, name: str) -> JobState:
        while True:
            state = self._state(name, self._describe(name))
            if state.status.terminal:
                return state
            self.sleep(self.poll_seconds)

    def _raise_for(self, state: JobState) -> JobState:
        if state.status is JobStatus.FAILED:
            raise JobFailedError(
                f"SageMaker {self.kind}",
                state.name,
                state.failure_reason,
                state.exit_message,
                retryable=is_retryable_failure(state.failure_reason),
            )
        if state.status is JobStatus.STOPPED:
            raise JobStoppedError(self.kind, state.name, state.secondary_status)
        return state

    def stop(self, name: str) -> None:
        """Ask SageMaker to stop the job (it ends Stopped, keeping what it wrote so far)."""
        log.warning("Stopping SageMaker %s %s", self.kind, name)
        self._stop(name)

    def _stop_quietly(self, name: str) -> None:
        try:
            self.stop(name)
        except ClientError as error:
            log.error("Could not stop SageMaker %s %s: %s", self.kind, name, error)

    @contextlib.contextmanager
    def _leave_running_on_signals(self, name: str) -> Iterator[Interruption]:
        """While waiting, SIGTERM/SIGINT end the wait (JobInterruptedError), not the job.

        A node drain or a pod eviction sends the same SIGTERM as a cancelled run; stopping the
        job here would make the retried step start a new attempt (``-a2``) instead of
        re-attaching. The job is stopped only when the run really ends cancelled or failed: the
        pipeline's exit handler calls ``Backend.stop_jobs(run_id)``.

        The handler only records the signal; the wait loop raises at its next check (within one
        poll interval). Raising from the handler itself would surface inside whatever library
        call was running, where a broad ``except`` (botocore's, urllib3's) can swallow it.
        """
        interruption = Interruption(self.kind, name)
        if threading.current_thread() is not threading.main_thread():
            log.debug("Not the main thread: signals are left to the main thread (%s)", name)
            yield interruption
            return
        previous = {
            sig: signal.signal(sig, interruption.handler) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            yield interruption
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


class Interruption:
    """The signal a waiting step received, raised as JobInterruptedError by the wait loop."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind, self.name = kind, name
        self.signal_name = ""

    def handler(self, signum: int, frame: FrameType | None) -> None:
        # Only record it: no I/O in a signal handler (it may interrupt a write in progress).
        self.signal_name = self.signal_name or signal.Signals(signum).name

    def raise_if_set(self) -> None:
        if self.signal_name:
            log.warning(
                "%s received: leaving SageMaker %s %s running; a retried step re-attaches to it, "
                "the run's exit handler stops it if the run is cancelled",
                self.signal_name,
                self.kind,
                self.name,
            )
            raise JobInterruptedError(self.kind, self.name, self.signal_name)


class ProcessingJobRunner(JobRunner):
    """CreateProcessingJob / DescribeProcessingJob / StopProcessingJob."""

    kind = "processing job"
    name_field = "ProcessingJobName"
    create_operation = "CreateProcessingJob"
    log_group = PROCESSING_LOG_GROUP

    def _create(self, request: Mapping[str, Any]) -> None:
        self.sagemaker.create_processing_job(**request)

    def _describe(self, name: str) -> Mapping[str, Any]:
        description: Mapping[str, Any] = self.sagemaker.describe_processing_job(
            ProcessingJobName=name
        )
        return description

    def _stop(self, name: str) -> None:
        self.sagemaker.stop_processing_job(ProcessingJobName=name)

    def _state(self, name: str, description: Mapping[str, Any]) -> JobState:
        return JobState(
            name=name,
            status=JobStatus(description["ProcessingJobStatus"]),
            secondary_status="",
            failure_reason=description.get("FailureReason", ""),
            exit_message=description.get("ExitMessage", ""),
            description=description,
        )


class TrainingJobRunner(JobRunner):
    """CreateTrainingJob / DescribeTrainingJob / StopTrainingJob."""

    kind = "training job"
    name_field = "TrainingJobName"
    create_operation = "CreateTrainingJob"
    log_group = TRAINING_LOG_GROUP

    def _create(self, request: Mapping[str, Any]) -> None:
        self.sagemaker.create_training_job(**request)

    def _describe(self, name: str) -> Mapping[str, Any]:
        description: Mapping[str, Any] = self.sagemaker.describe_training_job(TrainingJobName=name)
        return description

    def _stop(self, name: str) -> None:
        self.sagemaker.stop_training_job(TrainingJobName=name)

    def _state(self, name: str, description: Mapping[str, Any]) -> JobState:
        return JobState(
            name=name,
            status=JobStatus(description["TrainingJobStatus"]),
            secondary_status=description.get("SecondaryStatus", ""),
            failure_reason=description.get("FailureReason", ""),
            description=description,
        )


class TransformJobRunner(JobRunner):
    """CreateTransformJob / DescribeTransformJob / StopTransformJob (Batch Transform)."""

    kind = "transform job"
    name_field = "TransformJobName"
    create_operation = "CreateTransformJob"
    log_group = TRANSFORM_LOG_GROUP

    def _create(self, request: Mapping[str, Any]) -> None:
        self.sagemaker.create_transform_job(**request)

    def _describe(self, name: str) -> Mapping[str, Any]:
        description: Mapping[str, Any] = self.sagemaker.describe_transform_job(
            TransformJobName=name
        )
        return description

    def _stop(self, name: str) -> None:
        self.sagemaker.stop_transform_job(TransformJobName=name)

    def _state(self, name: str, description: Mapping[str, Any]) -> JobState:
        return JobState(
            name=name,
            status=JobStatus(description["TransformJobStatus"]),
            failure_reason=description.get("FailureReason", ""),
            description=description,
        )
