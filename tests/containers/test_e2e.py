"""The e2e workflow (.github/workflows/e2e.yml) and its make targets (mk/e2e.mk): it cannot run
here (no Docker, kind or cluster), so what can be checked is: it parses, every step is a make
target that exists, the matrix is the supported KFP lines, and each target's dry run (`make -n`)
issues the commands the job relies on."""

from __future__ import annotations

import re
import shlex
import subprocess
from functools import cache
from typing import Any

import pytest
import yaml
from tests.containers.helpers import REPO_ROOT
from tests.containers.test_workflow import MAKE_CALL, make_targets

from skinlesion.kubeflow.targets import SUPPORTED_BACKENDS

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "e2e.yml"
TAG = "0123456789ab"


@cache
def workflow() -> dict[str, Any]:
    document = yaml.safe_load(WORKFLOW.read_text())
    if True in document:  # YAML 1.1 reads `on` as True
        document["on"] = document.pop(True)
    return dict(document)


def dry_run(*arguments: str) -> str:
    """``make -n`` with stand-in tools, so nothing is built, created or contacted."""
    result = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-n",
            f"IMAGE_TAG={TAG}",
            "KIND=kind",
            "KUBECTL=kubectl",
            "DOCKER=docker",
            *arguments,
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.replace("\\\n", " ")  # one line per command


def test_the_matrix_covers_a_release_of_each_supported_line() -> None:
    job = workflow()["jobs"]["kfp"]
    versions = job["strategy"]["matrix"]["kfp"]
    assert set(versions) <= set(SUPPORTED_BACKENDS)
    # Kubeflow 1.9 (2.2/2.3), 1.10 (2.4-2.14), 26.03 (2.15/2.16), newest (2.17).
    lines = {"2.2.0": "1.9", "2.5.0": "1.10", "2.16.0": "26.03", SUPPORTED_BACKENDS[-1]: "new"}
    assert set(lines) <= set(versions)
    assert job["strategy"]["fail-fast"] is False
    assert job["env"]["E2E_KFP_VERSION"] == "${{ matrix.kfp }}"
    assert workflow()["permissions"] == {"contents": "read"}


def test_every_step_is_a_make_target_that_exists_in_job_order() -> None:
    known = make_targets()
    called = []
    for step in workflow()["jobs"]["kfp"]["steps"]:
        run = step.get("run", "")
        for match in MAKE_CALL.finditer(run):
            targets = [w for w in shlex.split(match.group(1)) if "=" not in w]
            assert targets, step
            for target in targets:
                assert target in known, f"make {target} is no target"
            called += targets
    expected = ["e2e-cluster", "e2e-kfp", "e2e-images", "e2e-port-forward", "e2e-submit"]
    assert [c for c in called if c.startswith("e2e-")] == [*expected, "e2e-wait", "e2e-logs"]
    [logs] = [s for s in workflow()["jobs"]["kfp"]["steps"] if "e2e-logs" in s.get("run", "")]
    assert logs["if"] == "failure()"


def test_kfp_is_installed_at_the_matrix_release_as_kfp_documents() -> None:
    out = dry_run("e2e-kfp", "E2E_KFP_VERSION=2.5.0")
    base = "github.com/kubeflow/pipelines/manifests/kustomize"
    cluster = out.index(f'apply -k "{base}/cluster-scoped-resources?ref=2.5.0"')
    crd = out.index("crd/applications.app.k8s.io")
    env = out.index(f'apply -k "{base}/env/platform-agnostic?ref=2.5.0"')
    assert cluster < crd < env
    assert "-n kubeflow wait --for=condition=Available deployment --all" in out


def test_images_are_loaded_under_the_names_compile_gives_them() -> None:
    out = dry_run("e2e-images")
    assert "TRAINING_TORCH_VARIANT=cpu" in out
    load = next(line for line in out.splitlines() if "load docker-image" in line)
    for name in ("pipeline", "training", "inference"):
        assert f"kind.local/skinlesion-{name}:{TAG}" in load
    assert f"--build-arg BASE_IMAGE=skinlesion-training:{TAG}" in out
    assert "skinlesion sample-data build/e2e/sample" in out


def test_submit_sends_both_pipelines_for_the_matrix_release_with_run_id_files() -> None:
    out = dry_run("e2e-submit", "E2E_KFP_VERSION=2.16.0")
    submits = [line for line in out.splitlines() if "kubeflow submit" in line]
    assert len(submits) == 2
    for pipeline, line in zip(("training", "monitoring"), submits, strict=True):
        words = shlex.split(line.replace("IMAGE_TAG=" + TAG + " ", ""))
        assert words[words.index("--pipeline") + 1] == pipeline
        assert words[words.index("--env") + 1] == "local"
        assert words[words.index("--kfp-backend") + 1] == "2.16.0"
        assert words[words.index("--image-registry") + 1] == "kind.local"
        assert words[words.index("--image-tag") + 1] == TAG
        assert words[words.index("--run-id-file") + 1] == f"build/e2e/{pipeline}.run"
        assert "--allow-dirty" in words
        assert words[words.index("--host") + 1] == "http://localhost:8888"


def test_wait_polls_every_submitted_run() -> None:
    out = dry_run("e2e-wait")
    [line] = [line for line in out.splitlines() if "kubeflow wait" in line]
    assert re.search(
        r"--run-id-file build/e2e/training\.run.*--run-id-file build/e2e/monitoring\.run", line
    )
    assert "--host http://localhost:8888" in line


@pytest.mark.parametrize("target", ["e2e-cluster", "e2e-port-forward", "e2e-logs", "e2e-down"])
def test_the_other_targets_dry_run(target: str) -> None:
    assert dry_run(target).strip()
