"""One image set per commit: compile names pipeline, training and inference images together,
from Terraform's outputs or an explicit registry, never a name Docker would pull from Docker Hub;
submit refuses a ``-dirty`` tag unless told otherwise."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.kubeflow.conftest import IMAGE, PIPELINES_DIR
from tests.kubeflow.fake_kfp import FakeKfp

from skinlesion.kubeflow.compiling import CompileOptions, compile_pipeline
from skinlesion.kubeflow.discovery import PipelineEntry
from skinlesion.kubeflow.images import (
    ImageSetError,
    from_registry,
    from_repositories,
    from_terraform_outputs,
    refuse_dirty,
    resolve_image_set,
)
from skinlesion.kubeflow.validation import load_documents
from skinlesion.settings import Settings

TAG = "3f2a9c1d4e5b"
IMAGE_VARIABLES = {
    "SKINLESION_PIPELINE_IMAGE_REPOSITORY_URL",
    "SKINLESION_TRAINING_IMAGE_REPOSITORY_URL",
    "SKINLESION_INFERENCE_IMAGE_REPOSITORY_URL",
    "SKINLESION_IMAGE_TAG",
}


def test_terraform_outputs_give_all_three_images_with_one_tag() -> None:
    repository = IMAGE.rsplit(":", 1)[0]
    outputs = {
        "pipeline_image_repository_url": repository,
        "training_image_repository_url": repository.replace("pipeline", "training"),
        "inference_image_repository_url": repository.replace("pipeline", "inference"),
    }
    images = from_terraform_outputs(outputs, TAG)
    assert images.pipeline == IMAGE
    assert images.training == IMAGE.replace("pipeline", "training")
    assert images.inference == IMAGE.replace("pipeline", "inference")
    assert not images.dirty
    with pytest.raises(ImageSetError, match=r"no training image repository.*make tf-outputs"):
        from_terraform_outputs({"pipeline_image_repository_url": repository}, TAG)


@pytest.mark.parametrize(
    ("registry", "accepted"),
    [
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com", True),
        ("localhost:5001", True),
        ("localhost", True),
        ("kind.local", True),
        ("registry:5000/team", True),
        # A bare first segment is a Docker Hub namespace (distribution/reference,
        # splitDockerDomain): a cluster would pull docker.io/skinlesion/skinlesion-pipeline.
        ("skinlesion", False),
        ("Registry.Example", False),
        ("", False),
    ],
)
def test_a_registry_must_name_a_host_that_is_not_docker_hub(registry: str, accepted: bool) -> None:
    if accepted:
        assert from_registry(registry, TAG).training == f"{registry}/skinlesion-training:{TAG}"
    else:
        with pytest.raises(ImageSetError, match="Invalid image registry"):
            from_registry(registry, TAG)


@pytest.mark.parametrize(
    ("repositories", "message"),
    [
        ({"pipeline": "skinlesion-pipeline"}, "names no registry host.*Docker Hub"),
        ({"pipeline": "r.example/p:1"}, "carries a tag or digest"),
        ({"pipeline": "r.example/p", "notebook": "r.example/n"}, "unknown image notebook"),
    ],
)
def test_repositories_are_refused_with_the_reason(
    repositories: dict[str, str], message: str
) -> None:
    full = {"training": "r.example/t", "inference": "r.example/i", **repositories}
    with pytest.raises(ImageSetError, match=message):
        from_repositories(full, TAG, "test")


@pytest.mark.parametrize("tag", ["", "-dirty", "a b", "x" * 129])
def test_a_tag_docker_refuses_is_refused(tag: str) -> None:
    with pytest.raises(ImageSetError, match="Invalid image tag"):
        from_registry("kind.local", tag)


def test_without_any_source_the_error_says_how_to_name_a_registry() -> None:
    with pytest.raises(ImageSetError, match=r"make tf-outputs ENV=<env>.*IMAGE_REGISTRY="):
        resolve_image_set(tag=TAG)


def test_a_dirty_tag_is_refused_unless_allowed() -> None:
    images = from_registry("kind.local", f"{TAG}-dirty")
    assert images.dirty
    with pytest.raises(ImageSetError, match=r"uncommitted changes.*ALLOW_DIRTY=1"):
        refuse_dirty(images, allow_dirty=False)
    refuse_dirty(images, allow_dirty=True)
    refuse_dirty(from_registry("kind.local", TAG), allow_dirty=False)


def _container_env(spec: dict[str, Any], executor: str) -> dict[str, str]:
    container = spec["deploymentSpec"]["executors"][executor]["container"]
    return {e["name"]: e["value"] for e in container.get("env", [])}


def test_compile_bakes_the_set_into_every_step_and_the_configmap_no_longer_names_images(
    training_entry: PipelineEntry,
) -> None:
    images = from_registry("r.example", TAG)
    documents = load_documents(compile_pipeline(training_entry, CompileOptions(images=images)).text)
    spec, platform = documents
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {images.pipeline}
    env = _container_env(spec, "exec-train")
    assert {k: env[k] for k in IMAGE_VARIABLES} == images.environment()
    # The pods parse these as skinlesion.settings does: the three URIs of one commit.
    settings = Settings.from_environment(env)
    assert settings.training_image_uri == images.training
    assert settings.inference_image_uri == images.inference
    # The ConfigMap's entries come after env in the pod (the driver's extendPodSpecPatch), so a
    # ConfigMap key of the same name would win: none is left.
    kubernetes = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    referenced = {
        item["envVar"]
        for executor in kubernetes.values()
        for entry in executor.get("configMapAsEnv", [])
        for item in entry["keyToEnv"]
    }
    assert referenced and not referenced & IMAGE_VARIABLES
    assert "SKINLESION_REGION" in referenced


def test_jobs_in_pod_steps_run_in_the_training_image(training_entry: PipelineEntry) -> None:
    images = from_registry("kind.local", TAG)
    spec = load_documents(
        compile_pipeline(training_entry, CompileOptions(images=images, jobs_in_pod=True)).text
    )[0]
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {images.training}


def test_compile_command_without_a_registry_fails_naming_how_to_set_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from skinlesion.cli import main

    out = tmp_path / "pipelines"
    status = main(["kubeflow", "compile", "--output-dir", str(out), "--pipeline", "training"])
    assert status != 0
    assert not out.exists()
    assert "IMAGE_REGISTRY=" in caplog.text and "make tf-outputs" in caplog.text


def test_compile_command_reads_the_repositories_from_terraform_outputs(
    tf_outputs: Path, tmp_path: Path
) -> None:
    from skinlesion.cli import main

    out = tmp_path / "pipelines"
    status = main(
        [
            "kubeflow",
            "compile",
            "--output-dir",
            str(out),
            "--pipeline",
            "training",
            "--tf-outputs",
            str(tf_outputs),
            "--image-tag",
            TAG,
            "--pipelines-dir",
            str(PIPELINES_DIR),
        ]
    )
    assert status == 0
    spec = load_documents((out / "training.yaml").read_text())[0]
    assert _container_env(spec, "exec-train")["SKINLESION_TRAINING_IMAGE_REPOSITORY_URL"] == (
        IMAGE.replace("pipeline", "training")
    )


def test_submit_refuses_a_dirty_tag_and_sends_it_when_allowed(
    cli: Callable[..., tuple[int, str]], fake_kfp: FakeKfp, caplog: pytest.LogCaptureFixture
) -> None:
    status, _ = cli("submit", "--image-tag", f"{TAG}-dirty")
    assert status != 0
    assert "uncommitted changes" in caplog.text and "ALLOW_DIRTY=1" in caplog.text
    assert not fake_kfp.state.api_requests("POST", "/runs")
    status, _ = cli("submit", "--image-tag", f"{TAG}-dirty", "--allow-dirty")
    assert status == 0
    [run] = fake_kfp.state.api_requests("POST", "/runs")
    assert run.json()["display_name"]
