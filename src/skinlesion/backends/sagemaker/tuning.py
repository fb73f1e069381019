"""The tuning stage on SageMaker: the CreateHyperParameterTuningJob request and its runner.

The request reuses the training stage's CreateTrainingJob request (``training_job_request``), so
a trial is the very job the train step would run, with the tuned hyperparameters varied. Limits
are SageMaker's, checked here before any call (botocore's model only says "at least 1"):

- ResourceLimits (API reference, API_ResourceLimits): MaxParallelTrainingJobs >= 1 (required),
  MaxNumberOfTrainingJobs >= 1.
- "Resource Limits for Automatic Model Tuning" (SageMaker developer guide,
  automatic-model-tuning-limits): with the Bayesian strategy at most 750 training jobs per tuning
  job; at most 100 parallel training jobs per tuning job (the default quota is 10, raisable to
  100); at most 30 searched hyperparameters; at most 20 metric definitions per tuning job.
- HyperParameterTuningJobName: 1 to 32 characters, ``[a-zA-Z0-9](-*[a-zA-Z0-9]){0,31}``
  (botocore's service model).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from skinlesion.backends.base import JobStatus, TuneRequest, TuningConfigError
from skinlesion.backends.sagemaker.log_streaming import TRAINING_LOG_GROUP
from skinlesion.backends.sagemaker.naming import ATTEMPT_RESERVE, digest, resource_name
from skinlesion.backends.sagemaker.runners import JobRunner, JobState
from skinlesion.training.reporting import metric_regex

log = logging.getLogger(__name__)

MAX_TUNING_NAME = 32
MAX_TRAINING_JOBS_BAYESIAN = 750
MAX_PARALLEL_TRAINING_JOBS = 100
DEFAULT_PARALLEL_QUOTA = 10
MAX_METRIC_DEFINITIONS = 20
MAX_SEARCHED_HYPERPARAMETERS = 30
STRATEGY = "Bayesian"
# The objective: validation balanced accuracy as the training job logs it. Its regex matches
# both the per-epoch line (``epoch=3 ... val_balanced_accuracy=0.6120 ...``, from
# skinlesion.training.reporting.format_epoch_line), which early stopping (Auto) compares across
# trials epoch by epoch, and the job's last line (``Wrote the model to ...: best
# val_balanced_accuracy 0.6500 at epoch 3 of 8``, skinlesion.jobs.train). SageMaker ranks a
# completed trial by the objective's last value, so it ranks by the epoch whose weights the
# model keeps, not by whichever epoch happened to come last.
OBJECTIVE_METRIC = "tuning:val_balanced_accuracy"
OBJECTIVE_REGEX = metric_regex("val_balanced_accuracy")  # the train job's own metric regex
OBJECTIVE_DEFINITION = {"Name": OBJECTIVE_METRIC, "Regex": OBJECTIVE_REGEX}
# What a training definition of a tuning job takes of a CreateTrainingJob request
# (HyperParameterTrainingJobDefinition in the service model). Left out on purpose:
# ContainerEntrypoint (HyperParameterAlgorithmSpecification has no such field: SageMaker runs the
# image with the argument ``train``, and the training image's ENTRYPOINT ["tini", "--"] with
# CMD ["train"] makes that the same launcher), CheckpointConfig (one S3 prefix shared by every
# trial would make a trial resume from another trial's weights).
_COPIED_FIELDS = (
    "RoleArn",
    "InputDataConfig",
    "OutputDataConfig",
    "ResourceConfig",
    "StoppingCondition",
    "EnableNetworkIsolation",
    "EnableInterContainerTrafficEncryption",
    "EnableManagedSpotTraining",
    "Environment",
    "VpcConfig",
)


def tuning_job_name(prefix: str, run_id: str, task_name: str) -> str:
    """``<prefix>-tune-<digest>`` cut to fit 32 characters with room for ``-a2``..``-a9``."""
    return resource_name(
        prefix, "tune", digest(run_id, task_name or "tune"), limit=MAX_TUNING_NAME - ATTEMPT_RESERVE
    )


def check_limits(request: TuneRequest) -> None:
    """Refuse what SageMaker would refuse (see the module docstring for the sources)."""
    if request.max_jobs > MAX_TRAINING_JOBS_BAYESIAN:
        raise TuningConfigError(
            f"Invalid max_jobs {request.max_jobs}: a {STRATEGY} tuning job runs at most "
            f"{MAX_TRAINING_JOBS_BAYESIAN} training jobs."
        )
    if request.max_parallel_jobs > MAX_PARALLEL_TRAINING_JOBS:
        raise TuningConfigError(
            f"Invalid max_parallel_jobs {request.max_parallel_jobs}: SageMaker runs at most "
            f"{MAX_PARALLEL_TRAINING_JOBS} training jobs of a tuning job at once (default quota "
            f"{DEFAULT_PARALLEL_QUOTA})."
        )
    if len(request.ranges) > MAX_SEARCHED_HYPERPARAMETERS:
        raise TuningConfigError(
            f"Invalid ranges: {len(request.ranges)} searched hyperparameters, at most "
            f"{MAX_SEARCHED_HYPERPARAMETERS}."
        )


def tuning_job_request(
    request: TuneRequest, *, name: str, training: Mapping[str, Any]
) -> dict[str, Any]:
    """CreateHyperParameterTuningJob over the train stage's CreateTrainingJob ``training``."""
    check_limits(request)
    algorithm = training["AlgorithmSpecification"]
    metric_definitions = [*algorithm.get("MetricDefinitions", []), OBJECTIVE_DEFINITION]
    if len(metric_definitions) > MAX_METRIC_DEFINITIONS:
        raise TuningConfigError(
            f"{len(metric_definitions)} metric definitions: a tuning job takes at most "
            f"{MAX_METRIC_DEFINITIONS}."
        )
    tuned = {r.name for r in request.ranges}
    definition: dict[str, Any] = {
        "AlgorithmSpecification": {
            "TrainingImage": algorithm["TrainingImage"],
            "TrainingInputMode": algorithm["TrainingInputMode"],
            "MetricDefinitions": metric_definitions,
        },
        # A tuned hyperparameter must not also be static (SageMaker refuses the overlap).
        "StaticHyperParameters": {
            k: v for k, v in training["HyperParameters"].items() if k not in tuned
        },
        **{k: training[k] for k in _COPIED_FIELDS if k in training},
    }
    return {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": {
            "Strategy": STRATEGY,
            "HyperParameterTuningJobObjective": {
                "Type": "Maximize",
                "MetricName": OBJECTIVE_METRIC,
            },
            "ResourceLimits": {
                "MaxNumberOfTrainingJobs": request.max_jobs,
                "MaxParallelTrainingJobs": request.max_parallel_jobs,
            },
            "ParameterRanges": {
                "ContinuousParameterRanges": [
                    {
                        "Name": r.name,
                        "MinValue": repr(float(r.min_value)),
                        "MaxValue": repr(float(r.max_value)),
                        "ScalingType": r.scaling,
                    }
                    for r in request.ranges
                ]
            },
            "TrainingJobEarlyStoppingType": "Auto",
        },
        "TrainingJobDefinition": definition,
        "Tags": list(training.get("Tags", [])),
    }


class TuningJobRunner(JobRunner):
    """CreateHyperParameterTuningJob / Describe... / Stop...: the runner's create or attach,
    wait, timeout and signal handling, for a tuning job. Its trials' logs are training job logs
    whose stream names start with the tuning job's name."""

    kind = "hyperparameter tuning job"
    name_field = "HyperParameterTuningJobName"
    create_operation = "CreateHyperParameterTuningJob"
    log_group = TRAINING_LOG_GROUP

    def _create(self, request: Mapping[str, Any]) -> None:
        self.sagemaker.create_hyper_parameter_tuning_job(**request)

    def _describe(self, name: str) -> Mapping[str, Any]:
        description: Mapping[str, Any] = self.sagemaker.describe_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=name
        )
        return description

    def _stop(self, name: str) -> None:
        self.sagemaker.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)

    def _state(self, name: str, description: Mapping[str, Any]) -> JobState:
        raw = str(description["HyperParameterTuningJobStatus"])
        reason = str(description.get("FailureReason", ""))
        try:
            status = JobStatus(raw)
        except ValueError:  # Deleting, DeleteFailed: the job is going away, its trials with it
            status, reason = JobStatus.FAILED, reason or f"Tuning job is {raw}"
        counters = description.get("TrainingJobStatusCounters", {})
        secondary = ", ".join(f"{k} {v}" for k, v in sorted(counters.items()) if v)
        return JobState(
            name=name,
            status=status,
            secondary_status=secondary,
            failure_reason=reason,
            description=description,
        )


def list_trials(sagemaker: Any, name: str) -> list[dict[str, Any]]:
    """Every training job of the tuning job (ListTrainingJobsForHyperParameterTuningJob)."""
    paginator = sagemaker.get_paginator("list_training_jobs_for_hyper_parameter_tuning_job")
    trials: list[dict[str, Any]] = []
    for page in paginator.paginate(HyperParameterTuningJobName=name):
        trials.extend(page.get("TrainingJobSummaries", []))
    return trials
