"""The SageMaker backend: processing and training jobs, the model registry, endpoints (boto3).

``SageMakerBackend.from_environment()`` builds it from ``skinlesion.settings.Settings``; the
parts (job runners, registry, deployer, S3 data plane, request validator) are usable alone.
"""

from skinlesion.backends.sagemaker.backend import SageMakerBackend
from skinlesion.backends.sagemaker.errors import (
    DeploymentError,
    JobAttemptsExhaustedError,
    JobFailedError,
    JobInterruptedError,
    JobOutputMissingError,
    JobStoppedError,
    JobTimeoutError,
    ModelNotApprovedError,
    RequestValidationError,
    SageMakerBackendError,
)
from skinlesion.backends.sagemaker.runners import (
    JobRunner,
    JobState,
    JobStatus,
    ProcessingJobRunner,
    TrainingJobRunner,
)

__all__ = [
    "DeploymentError",
    "JobAttemptsExhaustedError",
    "JobFailedError",
    "JobInterruptedError",
    "JobOutputMissingError",
    "JobRunner",
    "JobState",
    "JobStatus",
    "JobStoppedError",
    "JobTimeoutError",
    "ModelNotApprovedError",
    "ProcessingJobRunner",
    "RequestValidationError",
    "SageMakerBackend",
    "SageMakerBackendError",
    "TrainingJobRunner",
]
