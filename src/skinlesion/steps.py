"""What each KFP component does, written without KFP so it is tested as plain Python.

A component's body calls exactly one function here, passing its artifacts (anything with
``path``, ``uri`` and ``metadata``, as ``kfp.dsl.Artifact`` has) and its parameters. Each
function builds its backend once, by name, and hands the next step a typed record in the output
artifact's metadata (``skinlesion.handoff``).

Artifacts are pointers, not data: KFP's launcher downloads every input artifact into the pod
before the component starts, and the steps that drive SageMaker only pass URIs on. So a step
reads where its inputs' data is from their records (``DatasetHandoff.dataset``,
``ModelHandoff.job_model_data``, ``EvaluationHandoff.evaluation``), and when its job's data lies
elsewhere than the artifact (S3, on SageMaker) the artifact gets ``pointer.json`` and the job
record, kilobytes. Locally the data is the artifact folder, and the pointer is its own path.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from skinlesion import storage
from skinlesion.backends import get_backend
from skinlesion.backends.base import (
    ApprovalStatus,
    Backend,
    BatchScoreRequest,
    DeployRequest,
    EvaluateRequest,
    HyperparameterRange,
    JobResult,
    PreprocessRequest,
    RegisterRequest,
    TrainRequest,
    TuneRequest,
    TuneResult,
    TuningConfigError,
)
from skinlesion.backends.errors import JobOutputMissingError
from skinlesion.config import PreprocessConfig, TrainConfig
from skinlesion.handoff import DatasetHandoff, EvaluationHandoff, ModelHandoff
from skinlesion.logs import configure_logging

log = logging.getLogger(__name__)

JOB_RECORD = "job.json"
POINTER_FILE = "pointer.json"


class ArtifactLike(Protocol):
    path: str
    uri: str
    metadata: dict[str, Any]


class MetricsLike(ArtifactLike, Protocol):
    def log_metric(self, metric: str, value: float) -> None: ...


class ClassificationMetricsLike(ArtifactLike, Protocol):
    def log_confusion_matrix(self, categories: list[str], matrix: list[list[int]]) -> None: ...

    def log_roc_curve(self, fpr: list[float], tpr: list[float], threshold: list[float]) -> None: ...


def job_identity(output: ArtifactLike) -> str:
    """What names a step's job deterministically: its output artifact's URI.

    KFP gives each task of each run its own output URI and keeps it when the step is retried,
    so a retry finds its job again. The run id would do the same, but as a component input it
    would enter KFP's cache key and no run would ever reuse another's cached preprocess or train.
    """
    return f"artifact:{output.uri or output.path}"


def _location(backend: Backend, artifact: ArtifactLike) -> str:
    return backend.artifact_location(artifact.path, artifact.uri)


def _data(backend: Backend, artifact: ArtifactLike, recorded: str) -> str:
    """Where an input artifact's data is: what its producer recorded, else the artifact itself
    (an artifact made before the records carried the location)."""
    return recorded or _location(backend, artifact)


def write_pointer(artifact: ArtifactLike, data_uri: str) -> None:
    """Write ``pointer.json`` (the data's URI) into the artifact when its data lies elsewhere.

    The record in the metadata is what the next step reads; the file makes the artifact say
    where its data is to whoever browses the pipeline root.
    """
    folder = Path(artifact.path)
    data = Path(data_uri)
    if not data_uri or data == folder or folder in data.parents:
        return  # the data is in the artifact (the local backend)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / POINTER_FILE).write_text(json.dumps({"uri": data_uri}, indent=2) + "\n")


def _run_recorded(artifact: ArtifactLike, run: Callable[[], JobResult]) -> JobResult:
    """Run a step's job and keep its name, outputs, metrics and wall time next to its output."""
    started = time.monotonic()
    result = run()
    _record(artifact, result, started)
    return result


def _record(artifact: ArtifactLike, result: JobResult, started: float) -> None:
    folder = Path(artifact.path)
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "job_name": result.job_name,
        "status": result.status.value,
        "output_uri": result.output_uri,
        "remote_output_uri": result.remote_output_uri,
        "metrics": result.metrics,
        "wall_seconds": round(time.monotonic() - started, 3),
    }
    if "cost" in result.details:  # SageMaker jobs: instances, billable seconds, USD estimate
        record["cost"] = result.details["cost"]
        artifact.metadata["cost_usd"] = result.details["cost"].get("usd")
    (folder / JOB_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True))
    artifact.metadata["job_name"] = result.job_name


def run_cost_so_far(output: ArtifactLike, *inputs: ArtifactLike) -> float | None:
    """The run's estimated cost up to ``output``'s step: its job's plus what its inputs carried
    (``run_cost_usd``), kept in its metadata; None when no job had a price (local runs)."""
    costs = [a.metadata.get("run_cost_usd", a.metadata.get("cost_usd")) for a in inputs]
    costs.append(output.metadata.get("cost_usd"))
    known = [float(c) for c in costs if c is not None]
    total = round(sum(known), 4) if known else None
    if total is not None:
        output.metadata["run_cost_usd"] = total
    return total


def preprocess(
    *,
    backend: str,
    data_uri: str,
    dataset: ArtifactLike,
    image_size: int,
    labels: str = "",
    seed: int = 42,
    job_name: str = "",
) -> JobResult:
    """Validate, split and resize an ISIC-format folder into the ``dataset`` artifact."""
    configure_logging()
    be = get_backend(backend)
    request = PreprocessRequest(
        data_uri=data_uri,
        output_uri=_location(be, dataset),
        config=PreprocessConfig(image_size=image_size, seed=seed),
        labels=labels,
        job_name=job_name,
        run_id=job_identity(dataset),
        task_name="preprocess",
    )
    result = _run_recorded(dataset, lambda: be.preprocess(request))
    handoff = DatasetHandoff(
        dataset=result.remote_output_uri or result.output_uri,
        data_uri=data_uri,
        image_size=image_size,
        splits=dict(result.details.get("splits", {})),
    )
    handoff.write(dataset)
    write_pointer(dataset, handoff.dataset)
    return result


def train(
    *,
    backend: str,
    dataset: ArtifactLike,
    model: ArtifactLike,
    hyperparameters: dict[str, Any],
    job_name: str = "",
) -> JobResult:
    """Train on the ``dataset`` artifact's data; ``model`` receives model.tar.gz (or a pointer
    to it)."""
    configure_logging()
    be = get_backend(backend)
    config = TrainConfig(**hyperparameters)
    request = TrainRequest(
        dataset_uri=_data(be, dataset, DatasetHandoff.read(dataset).dataset),
        model_uri=_location(be, model),
        config=config,
        job_name=job_name,
        run_id=job_identity(model),
        task_name="train",
    )
    result = _run_recorded(model, lambda: be.train(request))
    run_cost_so_far(model, dataset)
    _hand_on_model(model, result, config, request.dataset_uri)
    return result


def _hand_on_model(
    model: ArtifactLike, result: JobResult, config: TrainConfig, dataset_uri: str
) -> None:
    """What a trained model hands the steps after it: its ModelHandoff and the pointer."""
    handoff = ModelHandoff(
        model_data=result.output_uri,
        job_model_data=result.remote_output_uri or result.output_uri,
        architecture=config.architecture,
        image_size=config.image_size,
        dataset=dataset_uri,
    )
    handoff.write(model)
    write_pointer(model, handoff.model_data)


def evaluate(
    *,
    backend: str,
    dataset: ArtifactLike,
    model: ArtifactLike,
    evaluation: ArtifactLike,
    metrics: MetricsLike,
    classification: ClassificationMetricsLike,
    report: ArtifactLike,
    job_name: str = "",
) -> float:
    """Evaluate on the test split; log KFP metrics and the HTML report; return balanced accuracy."""
    configure_logging()
    be = get_backend(backend)
    request = EvaluateRequest(
        dataset_uri=_data(be, dataset, DatasetHandoff.read(dataset).dataset),
        model_uri=_data(be, model, ModelHandoff.read(model).job_model_data),
        output_uri=_location(be, evaluation),
        job_name=job_name,
        run_id=job_identity(evaluation),
        task_name="evaluate",
    )
    result = _run_recorded(evaluation, lambda: be.evaluate(request))
    run_cost_so_far(evaluation, model)
    with tempfile.TemporaryDirectory() as scratch:
        local = Path(scratch)
        for name in ("kfp_metrics.json", "kfp_classification.json", "report.html"):
            be.download(storage.join(result.output_uri, name), local / name)
        scalars = json.loads((local / "kfp_metrics.json").read_text())
        for name, value in sorted(scalars.items()):
            metrics.log_metric(name, float(value))
        classification_data = json.loads((local / "kfp_classification.json").read_text())
        matrix = classification_data["confusion_matrix"]
        classification.log_confusion_matrix(matrix["categories"], matrix["matrix"])
        roc = classification_data.get("roc")
        if roc:
            classification.log_roc_curve(roc["fpr"], roc["tpr"], roc["thresholds"])
        Path(report.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local / "report.html", report.path)
        _add_run_cost(Path(report.path), dataset, model, evaluation)
    balanced_accuracy = float(result.metrics["balanced_accuracy"])
    handoff = EvaluationHandoff(
        evaluation=result.remote_output_uri or result.output_uri,
        balanced_accuracy=balanced_accuracy,
    )
    handoff.write(evaluation)
    write_pointer(evaluation, handoff.evaluation)
    log.info("balanced accuracy on the test split: %.4f", balanced_accuracy)
    return balanced_accuracy


def register(
    *,
    backend: str,
    model: ArtifactLike,
    evaluation: ArtifactLike,
    model_group: str,
    data_uri: str,
    architecture: str,
    approval_margin: float,
    min_balanced_accuracy: float = 0.0,
    min_malignant_sensitivity: float = 0.0,
    git_commit: str = "",
    run_id: str = "",
    baseline: ArtifactLike | None = None,
) -> tuple[str, str]:
    """Register the model version; return its ARN and approval status.

    A candidate below the gate (``min_balanced_accuracy``, and ``min_malignant_sensitivity`` at
    the model's referral threshold on the test split) is registered as Rejected, so the registry
    keeps every candidate and why it was not promoted. The dataset it was trained on (the train
    step's record points at it: nothing is downloaded) and its model card are kept as lineage.
    """
    configure_logging()
    be = get_backend(backend)
    handed = ModelHandoff.read(model)
    evaluation_uri = EvaluationHandoff.read(evaluation).evaluation
    metrics = be.read_json(storage.join(evaluation_uri, "metrics.json"))
    numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    malignant = numbers.get("malignant_sensitivity_at_threshold", float("-inf"))
    gate_passed = numbers.get("balanced_accuracy", float("-inf")) >= min_balanced_accuracy and (
        min_malignant_sensitivity <= 0 or malignant >= min_malignant_sensitivity
    )
    version = be.register(
        RegisterRequest(
            model_uri=handed.model_data or _location(be, model),
            evaluation_uri=evaluation_uri,
            model_group=model_group or be.default_model_group(),
            metrics=numbers,
            data_uri=data_uri,
            architecture=architecture,
            git_commit=git_commit,
            run_id=run_id,
            gate_passed=gate_passed,
            approval_margin=approval_margin,
            dataset_uri=handed.dataset,
            model_card_uri=storage.join(evaluation_uri, "model_card.md"),
            run_cost_usd=evaluation.metadata.get("run_cost_usd"),
            baseline_uri=str(baseline.metadata.get("baseline_uri", "")) if baseline else "",
        )
    )
    log.info("model version %s: %s", version.arn, version.approval_status.value)
    return version.arn, version.approval_status.value


def deploy(
    *,
    backend: str,
    model_version_arn: str,
    endpoint_name: str,
    instance_type: str,
    min_instances: int,
    max_instances: int,
    capture_percentage: int = 100,
    challenger_model_version_arn: str = "",
    challenger_traffic_percent: int = 0,
) -> str:
    """Deploy an Approved version, with an Approved challenger beside it when one is named (its
    share of the requests ``challenger_traffic_percent``); return the endpoint's URL (an empty
    ``endpoint_name``: the backend's default, which on AWS lies inside the IAM name prefix)."""
    configure_logging()
    be = get_backend(backend)
    endpoint = be.deploy(
        DeployRequest(
            model_version_arn=model_version_arn,
            endpoint_name=endpoint_name or be.default_endpoint_name(),
            instance_type=instance_type,
            min_instances=min_instances,
            max_instances=max_instances,
            capture_percentage=capture_percentage,
            challenger_model_version_arn=challenger_model_version_arn,
            challenger_traffic_percent=challenger_traffic_percent,
        )
    )
    return endpoint.url


def batch_score(
    *,
    backend: str,
    model_version_arn: str,
    images_uri: str,
    predictions: ArtifactLike,
    instance_type: str,
    instance_count: int,
) -> JobResult:
    """Score the JPEGs under ``images_uri`` with a registered version into ``predictions``
    (``predictions.jsonl``: one JSON line per image; on SageMaker it stays in S3 and the
    artifact points at it: metadata ``predictions``)."""
    from skinlesion.batch import PREDICTIONS_FILE

    configure_logging()
    be = get_backend(backend)
    request = BatchScoreRequest(
        model_version_arn=model_version_arn,
        images_uri=images_uri,
        output_uri=_location(be, predictions),
        instance_type=instance_type,
        instance_count=instance_count,
        run_id=job_identity(predictions),
        task_name="batch-score",
    )
    result = _run_recorded(predictions, lambda: be.batch_score(request))
    location = result.remote_output_uri or result.output_uri
    predictions.metadata.update(
        {
            "images": int(result.details.get("images", 0)),
            "model_version_arn": model_version_arn,
            "predictions": storage.join(location, PREDICTIONS_FILE),
        }
    )
    write_pointer(predictions, location)
    return result


def stop_run_jobs(*, backend: str, run_id: str, state: str) -> list[str]:
    """The exit handler's part: unless the run succeeded, stop the jobs still running for it.

    ``run_id`` is the KFP run id (or a resource name ending in it, as
    ``PipelineTaskFinalStatus.pipeline_job_resource_name`` gives it).
    """
    from skinlesion.kubeflow.status import SUCCESS_STATES

    configure_logging()
    run = run_id.rstrip("/").rsplit("/", 1)[-1]
    if state in SUCCESS_STATES:
        log.info("Run %s ended %s: no job to stop", run, state)
        return []
    if not run:
        raise ValueError(
            f"Run ended {state} but no run id was given: cannot find its jobs to stop."
        )
    stopped = get_backend(backend).stop_jobs(run)
    log.warning("Run %s ended %s: stopped %d jobs: %s", run, state, len(stopped), stopped)
    return stopped


def record_decision(
    *, decision: ArtifactLike, stage: str, balanced_accuracy: float, threshold: float, detail: str
) -> None:
    """Write a Markdown note of why a model was not registered or not deployed."""
    configure_logging()
    text = (
        f"# Model not promoted at the {stage} stage\n\n"
        f"- balanced accuracy on the test split: {balanced_accuracy:.4f}\n"
        f"- threshold: {threshold:.4f}\n"
        f"- detail: {detail}\n"
    )
    Path(decision.path).parent.mkdir(parents=True, exist_ok=True)
    Path(decision.path).write_text(text)
    log.warning("model not promoted at %s: %s", stage, detail)


# --- tuning ---------------------------------------------------------------------------------
TRIALS_FILE = "trials.json"
# A trial's objective in its train step's job record: the local job's best-epoch figure, or
# SageMaker's final value of the metric its MetricDefinitions parse from the epoch lines.
TRIAL_OBJECTIVE_KEYS = ("val_balanced_accuracy", "validation:balanced_accuracy")


def _add_run_cost(
    report: Path, dataset: ArtifactLike, model: ArtifactLike, evaluation: ArtifactLike
) -> None:
    """The report's "cost of this run" section, from what each step's artifact recorded."""
    from skinlesion.evaluation_report import add_cost_section

    def usd(artifact: ArtifactLike) -> float | None:
        value = artifact.metadata.get("cost_usd")
        return None if value is None else float(value)

    trained = "tuning" if model.metadata.get("tuning_job_name") else "train"
    steps = [("preprocess", usd(dataset)), (trained, usd(model)), ("evaluate", usd(evaluation))]
    report.write_text(add_cost_section(report.read_text(encoding="utf-8"), steps), encoding="utf-8")


def tune(
    *,
    backend: str,
    dataset: ArtifactLike,
    model: ArtifactLike,
    hyperparameters: dict[str, Any],
    learning_rates: list[float],
    max_jobs: int,
    max_parallel_jobs: int,
    job_name: str = "",
) -> TuneResult:
    """Tune the learning rate between the lowest and highest of ``learning_rates`` (log scale)
    with the backend's tuning job; ``model`` receives the best trial's model as the train step
    hands on its own (a ModelHandoff), so evaluate takes it unchanged."""
    configure_logging()
    be = get_backend(backend)
    if not learning_rates:
        raise TuningConfigError("learning_rates is empty: give the learning rates to search.")
    config = TrainConfig(**hyperparameters)
    request = TuneRequest(
        dataset_uri=_data(be, dataset, DatasetHandoff.read(dataset).dataset),
        model_uri=_location(be, model),
        ranges=(HyperparameterRange("learning_rate", min(learning_rates), max(learning_rates)),),
        config=config,
        max_jobs=max_jobs,
        max_parallel_jobs=max_parallel_jobs,
        job_name=job_name,
        run_id=job_identity(model),
        task_name="tune",
    )
    started = time.monotonic()
    outcome = be.tune(request)
    _record(model, dataclasses.replace(outcome.best, details=outcome.details), started)
    run_cost_so_far(model, dataset)
    _hand_on_model(model, outcome.best, config, request.dataset_uri)
    trials = [dataclasses.asdict(t) for t in outcome.trials]
    _write_trials(model, outcome.tuning_job_name, outcome.objective_metric, trials)
    model.metadata.update(
        {
            "tuning_job_name": outcome.tuning_job_name,
            "tuning_objective": outcome.objective_metric,
            "tuning_objective_value": outcome.objective_value,
        }
    )
    log.info(
        "Tuning %s: best trial %s, %s %.4f of %d trials",
        outcome.tuning_job_name,
        outcome.best.job_name,
        outcome.objective_metric,
        outcome.objective_value,
        len(trials),
    )
    return outcome


def _write_trials(
    artifact: ArtifactLike, name: str, objective: str, trials: list[dict[str, Any]]
) -> None:
    folder = Path(artifact.path)
    folder.mkdir(parents=True, exist_ok=True)
    record = {"tuning": name, "objective": objective, "trials": trials}
    (folder / TRIALS_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def trial_objective(trial: ArtifactLike) -> float | None:
    """A sweep trial's validation balanced accuracy, from its train step's job record."""
    record = Path(trial.path) / JOB_RECORD
    if not record.exists():
        return None
    metrics = json.loads(record.read_text()).get("metrics", {})
    for key in TRIAL_OBJECTIVE_KEYS:
        if key in metrics:
            return float(metrics[key])
    return None


def pick_best(*, trials: list[ArtifactLike], dataset: ArtifactLike, model: ArtifactLike) -> str:
    """Hand on the sweep's best trial (highest validation balanced accuracy) as ``model``: its
    ModelHandoff, so evaluate takes it as a train step's; return the chosen trial's job name.
    Every trial's cost counts towards the run's."""
    configure_logging()
    if not trials:
        raise ValueError("The sweep produced no trial: nothing to pick from.")
    scored = []
    rows = []
    handoffs = [ModelHandoff.read(trial) for trial in trials]
    for index, (trial, handed) in enumerate(zip(trials, handoffs, strict=True)):
        objective = trial_objective(trial)
        rows.append(
            {
                "job_name": str(trial.metadata.get("job_name", "")),
                "model_data": handed.model_data,
                "objective": objective,
                "cost_usd": trial.metadata.get("cost_usd"),
            }
        )
        if objective is not None:
            scored.append((objective, -index))
    missing = [
        f"trial {i} ({r['job_name'] or trials[i].path})"
        for i, r in enumerate(rows)
        if r["objective"] is None
    ]
    if missing:
        # A trial without its objective cannot be ranked; picking among the others would
        # hide that its training (or the log line its metric is parsed from) went wrong.
        raise JobOutputMissingError(
            f"{', '.join(missing)} of {len(trials)} recorded none of "
            f"{', '.join(TRIAL_OBJECTIVE_KEYS)} in the metrics of its {JOB_RECORD}: every "
            "trial needs its validation balanced accuracy to be ranked."
        )
    # Ties go to the earlier trial, so the choice does not depend on the order of arrival alone.
    best_value, negative_index = max(scored)
    best = handoffs[-negative_index]
    best.write(model)
    write_pointer(model, best.model_data)
    known = [float(c) for c in (r["cost_usd"] for r in rows) if c is not None]
    if known:
        model.metadata["cost_usd"] = round(sum(known), 4)
    run_cost_so_far(model, dataset)
    best_name = rows[-negative_index]["job_name"]
    _write_trials(model, "sweep", "val_balanced_accuracy", rows)
    model.metadata.update(
        {
            "job_name": best_name,
            "tuning_job_name": "sweep",
            "tuning_objective": "val_balanced_accuracy",
            "tuning_objective_value": best_value,
        }
    )
    log.info("Sweep of %d trials: best %s (%.4f)", len(trials), best_name, best_value)
    return str(best_name)


def promote_challenger(
    *,
    backend: str,
    endpoint_name: str,
    labels_uri: str,
    min_requests: int,
    min_labelled: int,
    margin: float,
    instance_type: str,
    min_instances: int,
    max_instances: int,
    capture_percentage: int = 100,
    report: ArtifactLike | None = None,
) -> str:
    """Compare champion and challenger on their capture and act on the decision: promote (the
    challenger takes all traffic, then serves alone), retire (the champion does), or hold.
    Returns the decision; ``report`` receives the comparison as JSON."""
    from skinlesion.backends.base import CHALLENGER_VARIANT, CHAMPION_VARIANT
    from skinlesion.monitoring.variants import Decision, PromotionRule, compare_variants

    configure_logging()
    be = get_backend(backend)
    name = endpoint_name or be.default_endpoint_name()
    variants = {v.name: v for v in be.describe_variants(name)}
    if set(variants) != {CHAMPION_VARIANT, CHALLENGER_VARIANT}:
        raise ValueError(
            f"Endpoint {name} serves the variants {sorted(variants)}: promotion needs a champion "
            f"({CHAMPION_VARIANT}) and a challenger ({CHALLENGER_VARIANT}); deploy one with "
            "challenger_model_version_arn."
        )
    capture_uri = be.describe_endpoint(name).capture_uri
    rule = PromotionRule(min_requests=min_requests, min_labelled=min_labelled, margin=margin)
    comparison = compare_variants(
        capture_uri, name, labels_uri=labels_uri, rule=rule, s3_client=be.s3_client()
    )
    if report is not None:
        Path(report.path).parent.mkdir(parents=True, exist_ok=True)
        Path(report.path).write_text(json.dumps(comparison.to_dict(), indent=2))
        report.metadata.update({"decision": comparison.decision.value, "reason": comparison.reason})
    if comparison.decision is Decision.HOLD:
        log.info("Endpoint %s keeps its weights: %s", name, comparison.reason)
        return comparison.decision.value
    winner, loser = (
        (CHALLENGER_VARIANT, CHAMPION_VARIANT)
        if comparison.decision is Decision.PROMOTE
        else (CHAMPION_VARIANT, CHALLENGER_VARIANT)
    )
    # First the weights (seconds, no new fleet): the loser stops answering at once; then the
    # winner alone as the endpoint's one variant, which frees the loser's instances.
    be.set_traffic(name, {winner: 1.0, loser: 0.0})
    be.deploy(
        DeployRequest(
            model_version_arn=variants[winner].model_version_arn,
            endpoint_name=name,
            instance_type=instance_type,
            min_instances=min_instances,
            max_instances=max_instances,
            capture_percentage=capture_percentage,
        )
    )
    log.info(
        "Endpoint %s: %s (%s); it now serves %s alone",
        name,
        comparison.decision.value,
        comparison.reason,
        variants[winner].model_version_arn,
    )
    return comparison.decision.value


__all__ = [
    "ApprovalStatus",
    "batch_score",
    "deploy",
    "evaluate",
    "pick_best",
    "preprocess",
    "promote_challenger",
    "record_decision",
    "register",
    "stop_run_jobs",
    "train",
    "tune",
]
