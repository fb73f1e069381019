"""Compilation: strict validation, determinism, the graph's structure and task settings."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.kubeflow.conftest import IMAGE, PIPELINE_ROOT, PIPELINES_DIR, REPO_ROOT

from skinlesion.kubeflow.compiling import (
    CompiledPipeline,
    CompileOptionError,
    CompileOptions,
    compile_pipeline,
    compile_to_file,
)
from skinlesion.kubeflow.discovery import (
    PipelineDefinitionError,
    PipelineEntry,
    PipelineNotFoundError,
    discover_pipelines,
    get_pipeline,
)
from skinlesion.kubeflow.tasks import AWS_RETRY, SETTINGS_CONFIG_MAP
from skinlesion.kubeflow.validation import (
    PipelineValidationError,
    load_documents,
    validate_documents,
)

AWS_STEPS = ("preprocess", "train", "evaluate", "register", "deploy")
NOTE_STEPS = ("record-decision", "record-decision-2", "exit-status")


def _all_tasks(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    tasks = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return tasks


@pytest.fixture(scope="module")
def documents(compiled_training: CompiledPipeline) -> list[dict[str, Any]]:
    return load_documents(compiled_training.text)


# -- strict validation -------------------------------------------------------------------------
def test_compiled_training_pipeline_is_strictly_valid(compiled_training: CompiledPipeline) -> None:
    validated = compiled_training.validated
    assert validated.name == "skinlesion-training"
    assert validated.platform is not None
    assert set(validated.kubernetes_executors) == set(validated.deployment.executors)
    inputs = validated.inputs()
    assert not inputs["data_uri"].optional
    assert inputs["threshold"].parameter_type == "NUMBER_DOUBLE"
    assert inputs["threshold"].default == 0.7


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d[0]["root"]["dag"]["tasks"]["exit-status"].update(retryPolicyy={}),
            'has no field named "retryPolicyy"',
        ),
        (
            lambda d: d[0]["deploymentSpec"]["executors"]["exec-train"]["container"].update(
                imagePullPolicy="Always"
            ),
            'PipelineContainerSpec" has no field named "imagePullPolicy"',
        ),
        (
            lambda d: d[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"][
                "exec-train"
            ].update(configMapAsEnvironment=[]),
            "KubernetesExecutorConfig",
        ),
        (
            lambda d: (
                d[1]["platforms"]["kubernetes"].setdefault("pipelineConfig", {}).update(ttl=1)
            ),
            'has no field named "ttl"',
        ),
        (lambda d: d[1]["platforms"].update(argo={}), "not a known platform"),
        (lambda d: d[0].update(schemaVersion="3.0.0"), "schemaVersion"),
        (
            lambda d: d[0]["root"]["dag"]["tasks"]["exit-status"]["componentRef"].update(
                name="comp-missing"
            ),
            "names no component",
        ),
        (
            lambda d: d[0]["deploymentSpec"]["executors"]["exec-train"]["container"].update(
                image="python:3.11"
            ),
            "default image",
        ),
        (lambda d: d.append({}), "1 or 2 YAML documents"),
    ],
)
def test_strict_validation_rejects_what_kfp_would_ignore(
    documents: list[dict[str, Any]], mutate: Any, message: str
) -> None:
    broken = copy.deepcopy(documents)
    mutate(broken)
    with pytest.raises(PipelineValidationError, match=message):
        validate_documents(broken)


# -- determinism -------------------------------------------------------------------------------
def test_compiling_twice_gives_the_same_bytes_in_one_process_and_across_processes(
    training_entry: PipelineEntry, compiled_training: CompiledPipeline, tmp_path: Path
) -> None:
    again = compile_pipeline(training_entry)
    assert again.text == compiled_training.text
    out = tmp_path / "out"
    subprocess.run(
        [sys.executable, "-m", "skinlesion.cli", "kubeflow", "compile", "--output-dir", str(out)],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert (out / "training.yaml").read_bytes() == compiled_training.text.encode()


# -- structure ---------------------------------------------------------------------------------
def test_every_stage_the_gate_and_the_exit_handler_are_in_the_graph(
    documents: list[dict[str, Any]],
) -> None:
    spec = documents[0]
    tasks = _all_tasks(spec)
    for stage in (*AWS_STEPS, *NOTE_STEPS):
        assert stage in tasks, stage
    display = {name: task["taskInfo"]["name"] for name, task in tasks.items()}
    assert display["preprocess"] == "Preprocess" and display["deploy"] == "Deploy"
    assert display["exit-status"] == "Record run status"
    conditions = [t.get("triggerPolicy", {}).get("condition", "") for t in tasks.values()]
    # The gate is the register step's: every candidate is registered, Rejected below threshold.
    register_inputs = tasks["register"]["inputs"]["parameters"]
    assert register_inputs["min_balanced_accuracy"] == {
        "componentInputParameter": "threshold"
    } or "threshold" in str(register_inputs["min_balanced_accuracy"])
    assert "triggerPolicy" not in tasks["register"]
    approved = "inputs.parameter_values['pipelinechannel--register-approval_status'] == 'Approved'"
    rejected = "inputs.parameter_values['pipelinechannel--register-approval_status'] == 'Rejected'"
    assert approved in conditions
    assert any(rejected in c and approved in c for c in conditions)  # elif: !approved && rejected
    assert any(c.startswith("!(") and rejected in c for c in conditions)  # else: neither
    # The exit handler: after the whole graph, whatever its outcome, with the final status.
    exit_task = spec["root"]["dag"]["tasks"]["exit-status"]
    assert exit_task["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    handler = exit_task["dependentTasks"][0]
    assert exit_task["inputs"]["parameters"]["status"] == {
        "taskFinalStatus": {"producerTask": handler}
    }
    inner = spec["components"][spec["root"]["dag"]["tasks"][handler]["componentRef"]["name"]]
    assert {"preprocess", "train", "evaluate"} <= set(inner["dag"]["tasks"])


def test_aws_steps_retry_with_backoff_and_note_steps_do_not(
    documents: list[dict[str, Any]],
) -> None:
    tasks = _all_tasks(documents[0])
    for stage in AWS_STEPS:
        assert tasks[stage]["retryPolicy"] == {
            "maxRetryCount": AWS_RETRY.num_retries,
            "backoffDuration": AWS_RETRY.backoff_duration,
            "backoffFactor": AWS_RETRY.backoff_factor,
            "backoffMaxDuration": AWS_RETRY.backoff_max_duration,
        }, stage
    for stage in NOTE_STEPS:
        assert "retryPolicy" not in tasks[stage], stage


def test_caching_is_on_for_data_and_training_off_for_register_and_deploy(
    documents: list[dict[str, Any]],
) -> None:
    tasks = _all_tasks(documents[0])
    for stage in ("preprocess", "train", "evaluate"):
        assert tasks[stage]["cachingOptions"] == {"enableCache": True}, stage
    for stage in ("register", "deploy", *NOTE_STEPS):
        assert tasks[stage]["cachingOptions"] == {}, stage  # KFP writes a false flag as {}


def test_pods_are_small_labelled_and_get_the_settings_configmap(
    documents: list[dict[str, Any]],
) -> None:
    executors = documents[0]["deploymentSpec"]["executors"]
    kubernetes = documents[1]["platforms"]["kubernetes"]
    for label, executor in executors.items():
        resources = executor["container"]["resources"]
        assert resources["resourceCpuRequest"] == "250m", label
        assert resources["resourceMemoryRequest"] == "512Mi", label
        assert resources["resourceMemoryLimit"] == "2Gi", label
        labels = kubernetes["deploymentSpec"]["executors"][label]["podMetadata"]["labels"]
        assert labels == {"app.kubernetes.io/part-of": "skinlesion", "skinlesion/settings": "true"}
    for stage in AWS_STEPS:
        [config_map] = kubernetes["deploymentSpec"]["executors"][f"exec-{stage}"]["configMapAsEnv"]
        assert config_map["configMapName"] == SETTINGS_CONFIG_MAP
        # The default target (KFP 2.2.0) has no "optional": the ConfigMap carries every key.
        assert "optional" not in config_map
        env = {m["configMapKey"]: m["envVar"] for m in config_map["keyToEnv"]}
        for name in ("SKINLESION_REGION", "SKINLESION_SAGEMAKER_EXECUTION_ROLE_ARN"):
            assert env[name] == name
        assert "SKINLESION_RUN_ID" not in env  # a run's id never comes from a shared ConfigMap
    for label in ("exec-record-decision", "exec-exit-status"):
        assert "configMapAsEnv" not in kubernetes["deploymentSpec"]["executors"][label]
    # KFP 2.2.0 has no pipelineConfig; 2.17 gets the TTL (test_backend_targets.py).
    assert "pipelineConfig" not in kubernetes


def test_no_executor_runs_in_a_default_python_image(documents: list[dict[str, Any]]) -> None:
    from components import PIPELINE_IMAGE

    images = {e["container"]["image"] for e in documents[0]["deploymentSpec"]["executors"].values()}
    assert images == {PIPELINE_IMAGE}
    assert "python:3" not in "\n".join(str(d) for d in documents)


def test_the_settings_configmap_covers_every_backend_setting(
    documents: list[dict[str, Any]],
) -> None:
    import dataclasses

    from skinlesion.settings import Settings, env_name

    executors = documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    [config_map] = executors["exec-train"]["configMapAsEnv"]
    keys = {m["configMapKey"] for m in config_map["keyToEnv"]}
    expected = {env_name(f.name) for f in dataclasses.fields(Settings) if f.name != "run_id"}
    assert expected <= keys


# -- compile-time options ----------------------------------------------------------------------
def test_image_and_pipeline_root_are_set_at_compile_time(
    training_entry: PipelineEntry, compiled_training: CompiledPipeline
) -> None:
    compiled = compile_pipeline(
        training_entry, CompileOptions(image=IMAGE, pipeline_root=PIPELINE_ROOT)
    )
    spec = load_documents(compiled.text)[0]
    assert {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()} == {
        IMAGE
    }
    assert spec["defaultPipelineRoot"] == PIPELINE_ROOT
    assert compiled.digest != compiled_training.digest
    assert compiled.text.startswith("# PIPELINE DEFINITION\n# Name: skinlesion-training\n")


def test_caching_override_and_jobs_in_pod(training_entry: PipelineEntry) -> None:
    compiled = compile_pipeline(
        training_entry, CompileOptions(enable_caching=False, jobs_in_pod=True)
    )
    spec = load_documents(compiled.text)[0]
    assert all(t["cachingOptions"] == {} for t in _all_tasks(spec).values())
    executors = spec["deploymentSpec"]["executors"]
    assert executors["exec-train"]["container"]["resources"]["resourceMemoryRequest"] == "8Gi"
    assert executors["exec-register"]["container"]["resources"]["resourceMemoryRequest"] == "512Mi"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"image": "Skinlesion Pipeline"}, "Invalid image"),
        ({"pipeline_root": "/tmp/root"}, "Invalid pipeline root"),
        ({"pipeline_root": "s3:///no-bucket"}, "Invalid pipeline root"),
        ({"pipeline_root": "https://bucket/x"}, "Invalid pipeline root"),
    ],
)
def test_invalid_compile_options_say_what_is_accepted(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(CompileOptionError, match=message):
        CompileOptions(**options)


def test_compile_command_writes_every_pipeline_and_validate_accepts_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from skinlesion.cli import main

    out = tmp_path / "pipelines"
    status = main(
        ["kubeflow", "compile", "--output-dir", str(out), "--pipelines-dir", str(PIPELINES_DIR)]
    )
    assert status == 0
    written = sorted(p.stem for p in out.glob("*.yaml"))
    assert written == sorted(discover_pipelines(PIPELINES_DIR))
    assert "training" in written
    assert main(["kubeflow", "validate", *map(str, out.glob("*.yaml"))]) == 0
    assert "valid (skinlesion-training" in capsys.readouterr().out


def test_compile_to_file_names_the_file_after_the_pipeline(
    training_entry: PipelineEntry, tmp_path: Path
) -> None:
    _, path = compile_to_file(training_entry, tmp_path)
    assert path == tmp_path / "training.yaml"


# -- discovery ---------------------------------------------------------------------------------
def test_discovery_finds_the_pipelines_and_skips_modules_without_one() -> None:
    found = discover_pipelines(PIPELINES_DIR)
    assert found["training"].pipeline_name == "skinlesion-training"
    assert "demo" not in found and "__init__" not in found
    with pytest.raises(PipelineNotFoundError, match=r"Known pipelines: .*training"):
        get_pipeline("nightly", PIPELINES_DIR)


def _package(tmp_path: Path, name: str, body: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (folder / "graphs.py").write_text(
        "from kfp import dsl\n\n\n@dsl.component(base_image='registry.example/x:1')\n"
        "def step() -> str:\n    return 'x'\n\n\n" + body
    )
    return folder


def test_a_module_with_two_pipelines_must_name_one(tmp_path: Path) -> None:
    two = (
        "@dsl.pipeline(name='a')\ndef a():\n    step()\n\n\n"
        "@dsl.pipeline(name='b')\ndef b():\n    step()\n"
    )
    with pytest.raises(PipelineDefinitionError, match="set PIPELINE"):
        discover_pipelines(_package(tmp_path, "kf_two_pipelines", two))
    chosen = discover_pipelines(_package(tmp_path, "kf_chosen", two + "\n\nPIPELINE = b\n"))
    assert chosen["graphs"].pipeline_name == "b"


def test_the_deploy_step_takes_the_capture_percentage_from_the_pipeline(
    documents: list[dict[str, Any]],
) -> None:
    """Data capture's share is a pipeline parameter (prod's params file sets 20), not 100 always."""
    tasks = _all_tasks(documents[0])
    wired = tasks["deploy"]["inputs"]["parameters"]["capture_percentage"]
    assert "capture_percentage" in json.dumps(wired)
    inputs = documents[0]["root"]["inputDefinitions"]["parameters"]
    assert inputs["capture_percentage"]["defaultValue"] == 100
