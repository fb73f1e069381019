"""The exceptions only the SageMaker backend raises (the shared ones: ``backends.errors``)."""

from __future__ import annotations

from botocore.exceptions import ClientError

from skinlesion.backends.errors import (
    BackendError,
    JobFailedError,
    JobOutputMissingError,
    ModelNotApprovedError,
)

_NOT_FOUND_CODES = frozenset(
    {"ResourceNotFound", "ResourceNotFoundException", "NoSuchKey", "NotFound", "404"}
)
_NOT_FOUND_WORDS = ("could not find", "does not exist", "not found", "cannot find")


class SageMakerBackendError(BackendError):
    """Base class of the errors below that only the SageMaker backend raises."""


class RequestValidationError(SageMakerBackendError, ValueError):
    """A request breaks the service model's rules (required, enum, pattern, length, range)."""

    def __init__(self, operation: str, problems: list[str]) -> None:
        self.operation = operation
        self.problems = problems
        listed = "\n  - ".join(problems)
        super().__init__(f"{operation} request is invalid:\n  - {listed}")


class JobStoppedError(SageMakerBackendError):
    """The job ended Stopped (by a user, by us, or spot capacity that never came back)."""

    def __init__(self, kind: str, job_name: str, secondary_status: str = "") -> None:
        self.kind = kind
        self.job_name = job_name
        self.secondary_status = secondary_status
        detail = f" ({secondary_status})" if secondary_status else ""
        super().__init__(f"SageMaker {kind} {job_name} was stopped{detail}.")


class JobTimeoutError(SageMakerBackendError, TimeoutError):
    """The step waited longer than its wall-clock limit; the job was asked to stop."""

    def __init__(self, kind: str, job_name: str, timeout_seconds: float) -> None:
        self.kind = kind
        self.job_name = job_name
        self.timeout_seconds = timeout_seconds
        super().__init__(
            f"SageMaker {kind} {job_name} did not finish within {timeout_seconds:.0f} s; "
            "it was asked to stop. Raise SKINLESION_JOB_TIMEOUT_SECONDS to wait longer."
        )


class JobInterruptedError(SageMakerBackendError):
    """The step got SIGTERM or SIGINT (an eviction, a drain or a cancel); the job keeps running."""

    def __init__(self, kind: str, job_name: str, signal_name: str) -> None:
        self.kind = kind
        self.job_name = job_name
        self.signal_name = signal_name
        super().__init__(
            f"{signal_name} received: left SageMaker {kind} {job_name} running. A retried step "
            "re-attaches to it; a cancelled run's exit handler stops it (stop_jobs)."
        )


class JobAttemptsExhaustedError(SageMakerBackendError):
    """Every attempt name of a step is taken by a failed or stopped job."""


class DeploymentError(SageMakerBackendError):
    """The endpoint ended Failed, or a blue/green update was rolled back."""


# FailureReason prefixes of failures that a new job can get past. Sources: the SageMaker API
# reference, RetryStrategy ("when a training job fails due to an InternalServerError"); the AWS
# Batch user guide on SageMaker training capacity (sm_job_stuck_in_runnable_capacity: the job is
# Failed and "failedReason begins with CapacityError"); ThrottlingException is the service's
# throttling error code. "AlgorithmError:" (the container's own failure) and "ClientError:"
# (bad input, permissions, configuration) fail the same way again.
RETRYABLE_FAILURE_PREFIXES = ("CapacityError", "InternalServerError", "ThrottlingException")


def is_retryable_failure(failure_reason: str) -> bool:
    """True when a job's FailureReason names a transient platform failure (see above)."""
    return failure_reason.strip().startswith(RETRYABLE_FAILURE_PREFIXES)


def is_not_found(error: ClientError) -> bool:
    """True when a ClientError says the resource does not exist (SageMaker uses several forms)."""
    code = error.response.get("Error", {}).get("Code", "")
    message = error.response.get("Error", {}).get("Message", "").lower()
    if code in _NOT_FOUND_CODES:
        return True
    return code == "ValidationException" and any(w in message for w in _NOT_FOUND_WORDS)


def is_already_exists(error: ClientError) -> bool:
    """True when a create call failed because the resource is already there."""
    code = error.response.get("Error", {}).get("Code", "")
    message = error.response.get("Error", {}).get("Message", "").lower()
    if code in ("ResourceInUse", "ResourceInUseException", "ConflictException"):
        return True
    return code == "ValidationException" and (
        "already exist" in message or "cannot create a duplicate" in message
    )


__all__ = [
    "DeploymentError",
    "JobAttemptsExhaustedError",
    "JobFailedError",
    "JobInterruptedError",
    "JobOutputMissingError",
    "JobStoppedError",
    "JobTimeoutError",
    "ModelNotApprovedError",
    "RequestValidationError",
    "SageMakerBackendError",
    "is_already_exists",
    "is_not_found",
    "is_retryable_failure",
]
