"""The tuning stage on SageMaker: the CreateHyperParameterTuningJob request and Backend.tune.

moto implements CreateHyperParameterTuningJob and DescribeHyperParameterTuningJob (the request
round-trips through its server below) but not ListTrainingJobsForHyperParameterTuningJob, and its
tuning job completes at once with a fixed fake BestTrainingJob ("FakeTrainingJobName"). The
whole ``tune`` flow (wait, list the trials, describe the best) therefore runs against botocore's
Stubber, which checks every request and response against the service model.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from tests.aws.helpers import make_settings, offline_client

from skinlesion.backends.base import (
    HyperparameterRange,
    TrainRequest,
    TuneRequest,
    TuningConfigError,
)
from skinlesion.backends.sagemaker import SageMakerBackend
from skinlesion.backends.sagemaker.job_requests import JobContext, training_job_request
from skinlesion.backends.sagemaker.tuning import (
    OBJECTIVE_METRIC,
    OBJECTIVE_REGEX,
    check_limits,
    tuning_job_name,
    tuning_job_request,
)
from skinlesion.backends.sagemaker.validation import validate_request
from skinlesion.config import TrainConfig
from skinlesion.training import format_epoch_line

DATASET = "s3://skinlesion-test-models/job-outputs/pre/dataset/"
LR = HyperparameterRange("learning_rate", 1e-4, 1e-2)


def _request(**overrides: Any) -> TuneRequest:
    values: dict[str, Any] = {
        "dataset_uri": DATASET,
        "model_uri": "/tmp/model",
        "ranges": (LR,),
        "config": TrainConfig(epochs=3),
        "max_jobs": 6,
        "max_parallel_jobs": 2,
    }
    values.update(overrides)
    return TuneRequest(**values)


def _built(request: TuneRequest) -> dict[str, Any]:
    settings = make_settings()
    name = tuning_job_name(settings.name_prefix, "run-1", "tune")
    training = training_job_request(
        settings,
        TrainRequest(dataset_uri=DATASET, model_uri="/tmp/model", config=request.config),
        job_name=name,
        dataset_uri=DATASET,
        output_path="s3://skinlesion-test-models/job-outputs/t/model",
        checkpoint_uri="s3://skinlesion-test-models/checkpoints/t",
        context=JobContext(stage="tune", run_id="run-1", task_name="tune"),
    )
    return tuning_job_request(request, name=name, training=training)


def test_the_request_is_a_bayesian_auto_stopping_search_over_the_train_stages_job() -> None:
    built = _built(_request())
    config = built["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Bayesian"
    assert config["TrainingJobEarlyStoppingType"] == "Auto"
    assert config["HyperParameterTuningJobObjective"] == {
        "Type": "Maximize",
        "MetricName": OBJECTIVE_METRIC,
    }
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 2}
    assert config["ParameterRanges"]["ContinuousParameterRanges"] == [
        {"Name": "learning_rate", "MinValue": "0.0001", "MaxValue": "0.01",
         "ScalingType": "Logarithmic"}
    ]  # fmt: skip
    definition = built["TrainingJobDefinition"]
    static = definition["StaticHyperParameters"]
    assert "learning_rate" not in static  # tuned, so not static (SageMaker refuses the overlap)
    assert static["epochs"] == "3"
    assert "CheckpointConfig" not in definition  # one prefix shared by trials would mix them
    names = [d["Name"] for d in definition["AlgorithmSpecification"]["MetricDefinitions"]]
    assert OBJECTIVE_METRIC in names and "validation:balanced_accuracy" in names
    assert len(built["HyperParameterTuningJobName"]) <= 32 - 3
    # botocore's model and our own validator (patterns, lengths) accept it.
    validate_request(
        offline_client("sagemaker").meta.service_model, "CreateHyperParameterTuningJob", built
    )


def test_the_objective_regex_reads_what_the_training_job_logs() -> None:
    epoch = format_epoch_line({"epoch": 2, "val_loss": 0.7, "val_balanced_accuracy": 0.61234})
    final = "Wrote the model to /opt/ml/model: best val_balanced_accuracy %.4f at epoch %d of %d"
    assert re.search(OBJECTIVE_REGEX, epoch).group(1) == "0.6123"  # type: ignore[union-attr]
    assert re.search(OBJECTIVE_REGEX, final % (0.65, 3, 8)).group(1) == "0.6500"  # type: ignore[union-attr]
    assert re.search(OBJECTIVE_REGEX, "train_loss=0.5 val_loss=0.6") is None
    # The final line is the training job's own: if its wording changes, this regex must too.
    source = (Path(__file__).parents[2] / "src/skinlesion/jobs/train.py").read_text()
    assert "best val_balanced_accuracy %.4f at epoch" in source


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"max_jobs": 751, "max_parallel_jobs": 2}, "at most 750"),
        ({"max_jobs": 200, "max_parallel_jobs": 101}, "at most 100"),
    ],
)
def test_sagemakers_limits_are_refused_before_any_call(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(TuningConfigError, match=message):
        check_limits(_request(**overrides))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: _request(max_jobs=2, max_parallel_jobs=3), "exceeds max_jobs 2"),
        (lambda: _request(ranges=()), "at least one range"),
        (lambda: HyperparameterRange("epochs", 1, 5), "only learning_rate"),
        (lambda: HyperparameterRange("weight_decay", 0.0, 0.1), "needs min > 0"),
        (lambda: HyperparameterRange("label_smoothing", 0.1, 1.5, "Linear"), "label_smoothing"),
    ],
)
def test_bad_tuning_requests_say_what_is_accepted(build: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_the_request_round_trips_through_moto(backend: SageMakerBackend) -> None:
    built = _built(_request())
    sagemaker = backend.clients.client("sagemaker")
    sagemaker.create_hyper_parameter_tuning_job(**built)
    described = sagemaker.describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=built["HyperParameterTuningJobName"]
    )
    assert described["HyperParameterTuningJobConfig"] == built["HyperParameterTuningJobConfig"]
    assert (
        described["TrainingJobDefinition"]["StaticHyperParameters"]
        == (built["TrainingJobDefinition"]["StaticHyperParameters"])
    )


def _trial(name: str, lr: str, value: float) -> dict[str, Any]:
    return {
        "TrainingJobName": name,
        "TrainingJobArn": f"arn:aws:sagemaker:eu-west-1:123456789012:training-job/{name}",
        "CreationTime": dt.datetime(2024, 1, 1),
        "TrainingJobStatus": "Completed",
        "TunedHyperParameters": {"learning_rate": lr},
        "FinalHyperParameterTuningJobObjectiveMetric": {
            "Type": "Maximize", "MetricName": OBJECTIVE_METRIC, "Value": value,
        },
    }  # fmt: skip


def _training(name: str, seconds: int) -> dict[str, Any]:
    return {
        "TrainingJobName": name,
        "TrainingJobArn": f"arn:aws:sagemaker:eu-west-1:123456789012:training-job/{name}",
        "ModelArtifacts": {"S3ModelArtifacts": f"s3://skinlesion-test-models/{name}/model.tar.gz"},
        "TrainingJobStatus": "Completed",
        "SecondaryStatus": "Completed",
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 1,
                           "VolumeSizeInGB": 50},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "CreationTime": dt.datetime(2024, 1, 1),
        "TrainingTimeInSeconds": seconds,
        "BillableTimeInSeconds": seconds,
        "FinalMetricDataList": [{"MetricName": OBJECTIVE_METRIC, "Value": 0.5}],
    }  # fmt: skip


def test_tune_waits_and_hands_on_the_best_trials_model(backend: SageMakerBackend) -> None:
    client = offline_client("sagemaker")
    backend.clients._clients["sagemaker"] = client  # the Stubber's client instead of moto's
    name = "skl-test-tune-explicit"
    tuning_arn = f"arn:aws:sagemaker:eu-west-1:123456789012:hyper-parameter-tuning-job/{name}"
    describe = {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobArn": tuning_arn,
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian", "ResourceLimits": {"MaxParallelTrainingJobs": 2},
        },
        "CreationTime": dt.datetime(2024, 1, 1),
        "TrainingJobStatusCounters": {"Completed": 1, "InProgress": 1},
        "ObjectiveStatusCounters": {"Succeeded": 1},
    }  # fmt: skip
    worse, better = f"{name}-001-aaaa", f"{name}-002-bbbb"
    with Stubber(client) as stubber:
        stubber.add_client_error(
            "describe_hyper_parameter_tuning_job", "ResourceNotFound", "not found",
            expected_params={"HyperParameterTuningJobName": name},
        )  # fmt: skip
        stubber.add_response(
            "create_hyper_parameter_tuning_job", {"HyperParameterTuningJobArn": tuning_arn}
        )
        stubber.add_response(
            "describe_hyper_parameter_tuning_job",
            {**describe, "HyperParameterTuningJobStatus": "InProgress"},
        )
        stubber.add_response(
            "describe_hyper_parameter_tuning_job",
            {
                **describe,
                "HyperParameterTuningJobStatus": "Completed",
                "TrainingJobStatusCounters": {"Completed": 2},
                "BestTrainingJob": _trial(better, "0.003", 0.71),
            },
        )
        stubber.add_response(
            "list_training_jobs_for_hyper_parameter_tuning_job",
            {
                "TrainingJobSummaries": [
                    _trial(worse, "0.0002", 0.42),
                    _trial(better, "0.003", 0.71),
                ]
            },
            {"HyperParameterTuningJobName": name},
        )
        stubber.add_response("describe_training_job", _training(worse, 600))
        stubber.add_response("describe_training_job", _training(better, 900))
        outcome = backend.tune(_request(job_name=name))
        stubber.assert_no_pending_responses()
    assert outcome.tuning_job_name == name
    assert outcome.best.job_name == better
    assert outcome.best.output_uri == f"s3://skinlesion-test-models/{better}/model.tar.gz"
    assert outcome.objective_value == 0.71
    assert [(t.job_name, t.objective) for t in outcome.trials] == [(worse, 0.42), (better, 0.71)]
    assert outcome.trials[1].hyperparameters == {"learning_rate": 0.003}
    # Every trial's billable time counts, not only the best's.
    assert outcome.details["cost"]["billable_seconds"] == 1500
    assert outcome.details["cost"]["trials"] == 2


def test_a_tuning_job_that_failed_fails_the_step_once(backend: SageMakerBackend) -> None:
    from skinlesion.backends.errors import JobFailedError

    client = offline_client("sagemaker")
    backend.clients._clients["sagemaker"] = client
    name = "skl-test-tune-fails"
    with Stubber(client) as stubber:
        stubber.add_response(
            "describe_hyper_parameter_tuning_job",
            {
                "HyperParameterTuningJobName": name,
                "HyperParameterTuningJobArn": f"arn:aws:sagemaker:eu-west-1:1:hyper-parameter-tuning-job/{name}",
                "HyperParameterTuningJobConfig": {
                    "Strategy": "Bayesian", "ResourceLimits": {"MaxParallelTrainingJobs": 2},
                },
                "HyperParameterTuningJobStatus": "Failed",
                "FailureReason": "All training jobs failed. Please check the training job logs.",
                "CreationTime": dt.datetime(2024, 1, 1),
                "TrainingJobStatusCounters": {"NonRetryableError": 6},
                "ObjectiveStatusCounters": {"Failed": 6},
            },
        )  # fmt: skip
        # No create is queued: a job failed for its own reason is not run again (the Stubber
        # would refuse a second call).
        with pytest.raises(JobFailedError, match="All training jobs failed") as raised:
            backend.tune(_request(job_name=name))
    assert raised.value.retryable is False
