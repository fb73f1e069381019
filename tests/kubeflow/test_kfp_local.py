"""The compiled YAML, loaded back, runs on kfp.local with the local backend.

This is the file Kubeflow receives, not the Python graph: ``load_component_from_file`` reads the
IR YAML and KFP's SubprocessRunner executes each task from it (the Kubernetes platform spec is
what kfp.local ignores). Nothing is mocked: the jobs, the folder registry and the endpoint are
the local backend's real ones.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.kubeflow.conftest import PIPELINES_DIR

from skinlesion.backends.errors import EndpointNotFoundError
from skinlesion.kubeflow.compiling import CompiledPipeline
from skinlesion.kubeflow.discovery import PipelineEntry
from skinlesion.kubeflow.validation import load_documents

pytestmark = [
    pytest.mark.slow,
    # kfp.local says what it cannot honour (pod resources, the container image): expected here.
    pytest.mark.filterwarnings("ignore:Task .* have no effect:UserWarning"),
    pytest.mark.filterwarnings("ignore:You may be attemping to run a task:RuntimeWarning"),
]


def _write(documents: list[dict[str, Any]], path: Path) -> Path:
    path.write_text(yaml.safe_dump_all(documents, sort_keys=True))
    return path


# A training run that takes seconds: a small network from scratch, one epoch, 32 px.
TINY_RUN: dict[str, Any] = {
    "backend": "local",
    "architecture": "mobilenet_v2",
    "pretrained": "none",
    "epochs": 1,
    "batch_size": 16,
    "image_size": 32,
}


@pytest.fixture
def local_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from kfp import local

    monkeypatch.setenv("SKINLESION_LOCAL_ROOT", str(tmp_path / "local"))
    pipeline_root = tmp_path / "pipeline-root"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root))
    return pipeline_root


def _final_status(pipeline_root: Path) -> dict[str, Any]:
    [record] = list(pipeline_root.rglob("status.json"))
    return json.loads(record.read_text())


def test_compiled_training_pipeline_runs_end_to_end_on_kfp_local(
    compiled_training: CompiledPipeline,
    sample_data_dir: Path,
    local_backend: Path,
    tmp_path: Path,
) -> None:
    from kfp.components import load_component_from_file

    from skinlesion.backends.local import LocalBackend

    path = tmp_path / "training.yaml"
    path.write_text(compiled_training.text)
    pipeline = load_component_from_file(str(path))
    backend = LocalBackend.from_environment()
    try:
        pipeline(
            data_uri=str(sample_data_dir),
            **TINY_RUN,
            threshold=0.0,  # the gate passes: register and deploy run
            model_group="kf-local",
            endpoint_name="kf-local",
            git_commit="0123456789abcdef",
        )
        [version] = backend.list_versions("kf-local")
        assert version.approval_status.value == "Approved"
        assert version.metadata.get("git_commit") == "0123456789abcdef"
        endpoint = backend.describe_endpoint("kf-local")
        assert endpoint.model_version_arn == version.arn
    finally:
        backend.delete_endpoint("kf-local")
    status = _final_status(local_backend)
    assert status["state"] == "SUCCEEDED"
    assert status["pipeline"] == "skinlesion-training"
    assert status["error_code"] is None


def test_the_exit_handler_records_a_failed_run(
    compiled_training: CompiledPipeline,
    local_backend: Path,
    tmp_path: Path,
) -> None:
    from kfp.components import load_component_from_file

    documents = load_documents(compiled_training.text)
    # Without the retries (and their backoff) of the AWS steps: this failure is not transient.
    for component in [documents[0]["root"], *documents[0]["components"].values()]:
        for task in component.get("dag", {}).get("tasks", {}).values():
            task.pop("retryPolicy", None)
    pipeline = load_component_from_file(str(_write(documents, tmp_path / "no-retries.yaml")))
    with pytest.raises(RuntimeError, match="preprocess"):
        pipeline(data_uri=str(tmp_path / "no-such-folder"), backend="local")
    status = _final_status(local_backend)
    assert status["state"] == "FAILED"
    assert status["error_code"] is not None
    assert status["error_message"]


def _job_record(folder: Path) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((folder / "job.json").read_text())
    return record


def test_the_sweep_mode_runs_on_kfp_local_and_evaluate_takes_the_best_trial(
    training_entry: PipelineEntry,
    sample_data_dir: Path,
    local_backend: Path,
    tmp_path: Path,
) -> None:
    """compile.tuning sweep: two train trials (different learning rates), pick_best keeps the one
    with the highest recorded validation balanced accuracy, and evaluate and register get it."""
    from kfp.components import load_component_from_file

    from skinlesion.artifacts import ModelSpec, resolve_model_dir
    from skinlesion.backends.local import LocalBackend
    from skinlesion.kubeflow.compiling import CompileOptions, TuningSettings, compile_pipeline

    rates = (0.00001, 0.01)
    tuning = TuningSettings(mode="sweep", learning_rates=rates, parallel_jobs=1)
    compiled = compile_pipeline(training_entry, CompileOptions(tuning=tuning))
    pipeline = load_component_from_file(str(compiled.write(tmp_path / "training-sweep.yaml")))
    backend = LocalBackend.from_environment()
    try:
        pipeline(
            data_uri=str(sample_data_dir),
            **TINY_RUN,
            threshold=1.0,  # the gate: nothing to deploy
            model_group="kf-sweep",
            endpoint_name="kf-sweep",
        )
    finally:
        with contextlib.suppress(EndpointNotFoundError):
            backend.delete_endpoint("kf-sweep")
    assert _final_status(local_backend)["state"] == "SUCCEEDED"

    # The trials: train steps' outputs, each trained at one of the learning rates.
    trial_folders = sorted(
        p.parent
        for p in local_backend.rglob("job.json")
        if _job_record(p.parent)["job_name"].startswith("train")
    )
    assert len(trial_folders) == 2
    trials = {}
    for folder in trial_folders:
        record = _job_record(folder)
        hyperparameters = json.loads(
            (
                backend.settings.root
                / "jobs"
                / record["job_name"]
                / "opt/ml/input/config"
                / "hyperparameters.json"
            ).read_text()
        )
        trials[record["job_name"]] = (
            float(hyperparameters["learning_rate"]),
            float(record["metrics"]["val_balanced_accuracy"]),
            folder,
        )
    assert sorted(rate for rate, _, _ in trials.values()) == sorted(rates)

    # pick_best's choice: the highest objective (a tie: the earlier trial of the collected list).
    [picked_folder] = [p.parent for p in local_backend.rglob("trials.json")]
    picked = json.loads((picked_folder / "trials.json").read_text())
    listed = [(row["job_name"], row["objective"]) for row in picked["trials"]]
    assert sorted(listed) == sorted((name, t[1]) for name, t in trials.items())
    best_objective = max(objective for _, objective in listed)
    best_name = next(name for name, objective in listed if objective == best_objective)

    # evaluate scored that trial's model: its evaluation names the model it loaded.
    [evaluation] = list(local_backend.rglob("evaluation.json"))
    evaluated = json.loads(evaluation.read_text())["model"]
    best_folder = trials[best_name][2]
    with tempfile.TemporaryDirectory() as scratch:
        best_spec = ModelSpec.read(resolve_model_dir(best_folder, Path(scratch)))
    assert evaluated["metrics"] == best_spec.metrics
    assert evaluated["temperature"] == best_spec.temperature
    # ... and register registered it: the version's model is the best trial's archive.
    [version] = backend.list_versions("kf-sweep")
    assert str(best_folder) in version.model_data_uri


def test_the_promote_step_fails_once_on_an_endpoint_it_cannot_promote(
    local_backend: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No such endpoint (or no challenger on it) cannot succeed on retry: one attempt, and the
    run's error is the step's own. kfp.local honours the compiled retryPolicy
    (kfp/local/orchestrator/task_executor.py), as the KFP backend does."""
    from kfp.components import load_component_from_file

    from skinlesion.kubeflow.compiling import compile_pipeline
    from skinlesion.kubeflow.discovery import get_pipeline

    compiled = compile_pipeline(get_pipeline("promote", PIPELINES_DIR))
    pipeline = load_component_from_file(str(compiled.write(tmp_path / "promote.yaml")))
    with caplog.at_level(logging.INFO), pytest.raises(RuntimeError, match="promote"):
        pipeline(endpoint_name="no-such-endpoint", backend="local")
    assert "Retrying in" not in caplog.text
    assert "attempt 1/" not in caplog.text
