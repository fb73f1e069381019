"""compile.tuning: the training pipeline's tuning mode, chosen at compile time.

none is today's graph (the bytes of the module's ``training_pipeline``), sweep a ParallelFor of
train steps whose models pick_best reduces to one, sagemaker the tune step in place of train;
each hands evaluate, baseline and register one model. Each mode's strict validation on every
supported KFP release is in test_backend_targets.py.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.kubeflow.conftest import PIPELINES_DIR

from skinlesion.kubeflow.compiling import (
    CompileOptionError,
    CompileOptions,
    TuningSettings,
    compile_pipeline,
)
from skinlesion.kubeflow.discovery import PipelineEntry, get_pipeline
from skinlesion.kubeflow.params import ParamsError, load_environment
from skinlesion.kubeflow.tasks import AWS_RETRY
from skinlesion.kubeflow.validation import load_documents

MODEL_CONSUMERS = ("evaluate", "baseline", "register")


@functools.cache
def _spec(mode: str) -> dict[str, Any]:
    options = CompileOptions(tuning=TuningSettings(mode=mode, learning_rates=(1e-4, 1e-3, 1e-2)))
    return load_documents(compile_pipeline(get_pipeline("training", PIPELINES_DIR), options).text)[
        0
    ]


def _handler_tasks(spec: dict[str, Any]) -> dict[str, Any]:
    tasks: dict[str, Any] = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    return tasks


def _model_producer(task: dict[str, Any]) -> tuple[str, str]:
    source = task["inputs"]["artifacts"]["model"]["taskOutputArtifact"]
    return source["producerTask"], source["outputArtifactKey"]


def test_mode_none_built_by_the_factory_is_the_modules_pipeline_byte_for_byte(
    training_entry: PipelineEntry,
) -> None:
    import importlib

    from skinlesion.kubeflow.discovery import PipelineEntry as Entry

    module = importlib.import_module(training_entry.module)
    rebuilt = Entry("training", training_entry.module, module.pipeline_for_tuning(TuningSettings()))
    # pipeline_for hands back the entry's own pipeline for none; a fresh build by the factory
    # must give the same bytes, so the factory and the module-level pipeline cannot drift.
    assert compile_pipeline(rebuilt).text == compile_pipeline(training_entry).text
    assert (
        compile_pipeline(training_entry, CompileOptions(tuning="none")).text
        == compile_pipeline(training_entry).text
    )


def test_sweep_trains_one_model_per_learning_rate_and_picks_one_for_the_steps_after() -> None:
    spec = _spec("sweep")
    tasks = _handler_tasks(spec)
    assert "train" not in tasks and "tune" not in tasks
    [loop_name] = [name for name, task in tasks.items() if "parameterIterator" in task]
    loop = tasks[loop_name]
    assert loop["taskInfo"]["name"] == "trials"
    assert yaml.safe_load(loop["parameterIterator"]["items"]["raw"]) == [1e-4, 1e-3, 1e-2]
    assert loop["iteratorPolicy"]["parallelismLimit"] == 2
    body = spec["components"][loop["componentRef"]["name"]]["dag"]
    trial = body["tasks"]["train"]
    # Each trial's learning rate is the loop's item, not the pipeline's learning_rate.
    assert trial["inputs"]["parameters"]["learning_rate"] == {
        "componentInputParameter": loop["parameterIterator"]["itemInput"]
    }
    assert trial["retryPolicy"]["maxRetryCount"] == AWS_RETRY.num_retries
    pick = tasks["pick-best"]
    assert pick["inputs"]["artifacts"]["trials"]["taskOutputArtifact"]["producerTask"] == loop_name
    assert pick["cachingOptions"] == {"enableCache": True}
    assert "retryPolicy" not in pick  # it only reads records: a failure would repeat
    for consumer in MODEL_CONSUMERS:
        assert _model_producer(tasks[consumer]) == ("pick-best", "model")


def test_sagemaker_mode_puts_the_tune_step_in_place_of_train() -> None:
    tasks = _handler_tasks(_spec("sagemaker"))
    assert "train" not in tasks and "pick-best" not in tasks
    tune = tasks["tune"]
    constants = {
        name: value["runtimeValue"]["constant"]
        for name, value in tune["inputs"]["parameters"].items()
        if "runtimeValue" in value
    }
    assert constants == {"learning_rates": [1e-4, 1e-3, 1e-2], "max_jobs": 8, "parallel_jobs": 2}
    assert tune["inputs"]["parameters"]["backend"] == {
        "componentInputParameter": "pipelinechannel--backend"
    }
    assert tune["retryPolicy"]["maxRetryCount"] == AWS_RETRY.num_retries
    for consumer in MODEL_CONSUMERS:
        assert _model_producer(tasks[consumer]) == ("tune", "model")


def test_with_jobs_in_the_pod_the_tune_step_gets_the_training_pods_size() -> None:
    """The local backend's tune trains its trials in the step's own pod, as train does."""
    options = CompileOptions(
        tuning=TuningSettings(mode="sagemaker", learning_rates=(1e-4, 1e-2)), jobs_in_pod=True
    )
    text = compile_pipeline(get_pipeline("training", PIPELINES_DIR), options).text
    executors = load_documents(text)[0]["deploymentSpec"]["executors"]
    memory = executors["exec-tune"]["container"]["resources"]["resourceMemoryRequest"]
    assert memory == "8Gi"


def test_every_mode_takes_the_same_arguments() -> None:
    inputs = {mode: _spec(mode)["root"]["inputDefinitions"] for mode in ("none", "sweep")}
    assert inputs["none"] == inputs["sweep"] == _spec("sagemaker")["root"]["inputDefinitions"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("job", r"Invalid tuning mode 'job'\. Accepted: none .*sweep .*sagemaker"),
        ({"mode": "sweep", "learning_rates": [0.01]}, r"at least two different positive"),
        ({"mode": "sweep", "learning_rates": [0.01, -1]}, r"at least two different positive"),
        ({"mode": "sweep", "learning_rates": "0.01,0.1"}, r"a list of positive numbers"),
        ({"mode": "sagemaker", "max_jobs": 0}, r"max_jobs 0: a positive integer"),
        ({"mode": "sagemaker", "max_jobs": 751}, r"accepts 1 to 750"),
        ({"mode": "sagemaker", "max_jobs": 4, "parallel_jobs": 5}, r"1 to max_jobs \(4\)"),
        ({"mode": "sagemaker", "max_jobs": 300, "parallel_jobs": 101}, r"at most 100"),
        ({"mode": "sweep", "trials": 3}, r"Unknown tuning settings trials\. Accepted: mode"),
        ({"max_jobs": 3}, r"tuning needs a mode: one of none, sweep, sagemaker"),
        (3, r"a mode \(none, sweep, sagemaker\) or a mapping"),
    ],
)
def test_invalid_tuning_settings_say_what_is_accepted(value: Any, message: str) -> None:
    with pytest.raises(CompileOptionError, match=message):
        CompileOptions(tuning=value)


def test_the_params_files_choose_the_modes_prod_tunes_on_sagemaker_on_a_small_budget() -> None:
    params_dir = PIPELINES_DIR / "params"
    for env in ("dev", "local"):
        assert load_environment(env, params_dir, environ={}).tuning() == TuningSettings()
    prod = load_environment("prod", params_dir, environ={}).tuning()
    assert (prod.mode, prod.max_jobs, prod.parallel_jobs) == ("sagemaker", 8, 2)
    assert min(prod.learning_rates) < max(prod.learning_rates)


def test_a_bad_tuning_in_a_params_file_names_the_file_and_the_accepted_values(
    tmp_path: Path, tf_outputs: Path
) -> None:
    (tmp_path / "odd.yaml").write_text("compile:\n  tuning: grid\n")
    params = load_environment("odd", tmp_path, environ={}, tf_outputs=tf_outputs)
    with pytest.raises(ParamsError, match=r"odd\.yaml: compile\.tuning: .*Accepted: none"):
        params.tuning()
    with pytest.raises(ParamsError, match=r"odd\.yaml: compile\.tuning"):
        params.compile_options()


def test_submit_compiles_the_mode_the_params_file_names(tmp_path: Path, tf_outputs: Path) -> None:
    from skinlesion.kubeflow.submit import compile_options_for

    raw = yaml.safe_load((PIPELINES_DIR / "params" / "prod.yaml").read_text())
    (tmp_path / "prod.yaml").write_text(yaml.safe_dump(raw))
    params = load_environment("prod", tmp_path, environ={"IMAGE_TAG": "abc"}, tf_outputs=tf_outputs)
    options = compile_options_for(params)
    assert options.tuning == params.tuning()
    assert options.tuning.mode == "sagemaker"


def test_the_compile_command_reads_the_mode_from_the_environment(
    tmp_path: Path, tf_outputs: Path
) -> None:
    from skinlesion.cli import main

    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "tuned.yaml").write_text(
        "compile:\n  tuning:\n    mode: sweep\n    learning_rates: [0.001, 0.01]\n"
    )
    out = tmp_path / "out"
    common = ["kubeflow", "compile", "--pipeline", "training", "--image-registry", "r.example"]
    common += ["--image-tag", "abc", "--pipelines-dir", str(PIPELINES_DIR)]
    args = [*common, "--output-dir", str(out)]
    assert main([*args, "--env", "tuned", "--params-dir", str(tmp_path / "params")]) == 0
    tasks = _handler_tasks(load_documents((out / "training.yaml").read_text())[0])
    assert "pick-best" in tasks and "train" not in tasks
    assert main(args) == 0  # no --env: mode none
    assert "train" in _handler_tasks(load_documents((out / "training.yaml").read_text())[0])
