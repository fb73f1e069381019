"""The errors of the backend interface, raised alike by the local and the SageMaker backend.

Each says what went wrong and what is accepted; callers catch these, never a backend's own.
"""

from __future__ import annotations


class BackendError(RuntimeError):
    """Base class of the errors below."""


class JobFailedError(BackendError):
    """A job ended Failed; ``failure_reason`` is the job's own reason, verbatim.

    ``retryable`` says whether running the same job again can succeed: False for the job's own
    errors (bad data, bad parameters, a code error), True for the platform's (capacity,
    internal, throttling).
    """

    def __init__(
        self,
        kind: str,
        job_name: str,
        failure_reason: str,
        exit_message: str = "",
        *,
        retryable: bool = False,
    ) -> None:
        self.kind = kind
        self.job_name = job_name
        self.failure_reason = failure_reason
        self.exit_message = exit_message
        self.retryable = retryable
        message = f"{kind} {job_name} failed: {failure_reason or '(no failure reason)'}"
        if exit_message:
            message += f"\nExitMessage: {exit_message}"
        super().__init__(message)


class JobOutputMissingError(BackendError, FileNotFoundError):
    """A job completed but the output that the next step needs is not where it should be."""


class ModelNotApprovedError(BackendError, ValueError):
    """Deployment asked for a model version that is not Approved."""


class EndpointNotFoundError(BackendError, LookupError):
    """No endpoint of that name."""


class MonitoringSetupError(BackendError, ValueError):
    """The monitor cannot find what it needs (baseline, endpoint, capture); says what to pass."""


class NotificationError(BackendError):
    """A notification could not be sent; the message says what is missing."""
