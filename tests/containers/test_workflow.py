"""The GitHub Actions workflow: it parses, calls only make targets that exist, and ships safely."""

from __future__ import annotations

import re
import shlex
import subprocess
from functools import cache
from typing import Any

import pytest
import yaml
from tests.containers.helpers import REPO_ROOT

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "ci.yml"
# `make` and its arguments up to the end of the command (a quote, `)`, `;`, `&`, `|` or newline).
MAKE_CALL = re.compile(r"(?:^|[\s(;&|])make((?:[ \t]+[^\s;&|)\"']+)*)")


@cache
def workflow() -> dict[str, Any]:
    document = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 reads the key `on` as True; GitHub reads it as "on".
    if True in document:
        document["on"] = document.pop(True)
    return dict(document)


@cache
def make_targets() -> frozenset[str]:
    """Every target make knows (Makefile and mk/*.mk), from its printed database."""
    result = subprocess.run(
        ["make", "--no-print-directory", "-pRrq", "-f", "Makefile"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    targets: set[str] = set()
    not_a_target = False
    for line in result.stdout.splitlines():
        if line.startswith("# Not a target"):
            not_a_target = True
            continue
        match = re.match(r"^([A-Za-z0-9_.%/-]+):(?!=)", line)
        if match and not not_a_target:
            targets.add(match.group(1))
        not_a_target = False
    return frozenset(targets)


def make_calls() -> list[tuple[str, str, list[str]]]:
    """(job, step name, targets) for every `make` in a run step."""
    calls = []
    for job_name, job in workflow()["jobs"].items():
        for step in job["steps"]:
            for match in MAKE_CALL.finditer(step.get("run", "")):
                words = shlex.split(match.group(1))
                targets = [w for w in words if not w.startswith("-") and "=" not in w]
                calls.append((job_name, step.get("name", step["run"]), targets))
    return calls


def steps_of(job: str) -> list[dict[str, Any]]:
    return list(workflow()["jobs"][job]["steps"])


def test_workflow_runs_on_pushes_to_main_and_pull_requests() -> None:
    triggers = workflow()["on"]
    assert triggers["push"]["branches"] == ["main"]
    assert "pull_request" in triggers
    assert workflow()["permissions"] == {"contents": "read"}


def test_make_database_is_read() -> None:
    # The check below is only as good as this list.
    assert {"lint", "test", "help", "images", "push", "lint-containers"} <= make_targets()


def test_every_make_target_in_the_workflow_exists() -> None:
    calls = make_calls()
    assert len(calls) >= 8
    known = make_targets()
    patterns = [re.compile(re.escape(t).replace("%", ".+")) for t in known if "%" in t]
    for job, step, targets in calls:
        assert targets, f"{job} / {step}: `make` without a target runs the help"
        for target in targets:
            assert target in known or any(p.fullmatch(target) for p in patterns), (
                f"{job} / {step}: make {target} is no target of Makefile or mk/*.mk"
            )


@pytest.mark.parametrize(
    ("job", "targets"),
    [
        ("lint", {"lint", "lint-containers"}),
        ("test", {"test"}),
        ("compile", {"compile"}),
        ("terraform", {"tf-fmt-check", "tf-validate", "tf-checkov", "containers-checkov"}),
        ("publish", {"images", "push", "compile", "tf-outputs"}),
    ],
)
def test_each_gate_runs_its_make_targets(job: str, targets: set[str]) -> None:
    called = {t for j, _, ts in make_calls() if j == job for t in ts}
    assert targets <= called, f"{job} misses {sorted(targets - called)}"


def test_publish_runs_only_for_main_after_every_gate() -> None:
    publish = workflow()["jobs"]["publish"]
    assert "github.ref == 'refs/heads/main'" in publish["if"]
    assert "github.event_name == 'push'" in publish["if"]
    assert set(publish["needs"]) == {"lint", "test", "compile", "terraform"}


def test_publish_assumes_a_role_through_oidc_without_static_keys() -> None:
    publish = workflow()["jobs"]["publish"]
    assert publish["permissions"] == {"contents": "read", "id-token": "write"}
    aws = [
        s
        for s in steps_of("publish")
        if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@")
    ]
    assert len(aws) == 1
    inputs = aws[0]["with"]
    assert inputs["role-to-assume"] and "aws-region" in inputs
    assert not {"aws-access-key-id", "aws-secret-access-key", "aws-session-token"} & set(inputs)
    text = WORKFLOW.read_text()
    assert "secrets.AWS" not in text and "AWS_SECRET_ACCESS_KEY" not in text
    # No other job gets a token or credentials.
    for name, job in workflow()["jobs"].items():
        if name != "publish":
            assert "permissions" not in job, name


def test_publish_uploads_the_pipeline_compiled_for_the_pushed_image() -> None:
    steps = steps_of("publish")
    runs = [s.get("run", "") for s in steps]
    push = next(i for i, r in enumerate(runs) if re.search(r"\bmake push\b", r))
    compile_step = next(i for i, r in enumerate(runs) if "make compile" in r)
    upload = next(
        i for i, s in enumerate(steps) if s.get("uses", "").startswith("actions/upload-artifact@")
    )
    assert push < compile_step < upload
    # The image set comes from the Terraform outputs written before it (one tag, the commit):
    # no image is named on the command line, so none can disagree with the pushed ones.
    outputs = next(i for i, r in enumerate(runs) if "tf-outputs" in r)
    assert outputs < compile_step
    assert "IMAGE" not in runs[compile_step]
    assert steps[upload]["with"]["path"].rstrip("/") == "build/pipelines"
    assert steps[upload]["with"]["if-no-files-found"] == "error"


def test_actions_are_pinned() -> None:
    for name, job in workflow()["jobs"].items():
        for step in job["steps"]:
            if "uses" in step:
                action, _, ref = step["uses"].partition("@")
                assert re.fullmatch(r"v\d+(\.\d+){0,2}|[0-9a-f]{40}", ref), (
                    f"{name}: {action}@{ref} is not pinned to a release or a commit"
                )
