"""The make targets: mk/containers.mk expands to the commands docs/deploy.md describes; help,
data and diagram do what their help text says."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from tests.containers.helpers import IMAGES, REPO_ROOT


def dry_run(*args: str) -> list[list[str]]:
    """The commands `make -n` would run, one word list per command line."""
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    joined = result.stdout.replace("\\\n", " ")
    return [shlex.split(line) for line in joined.splitlines() if line.strip()]


def test_images_builds_each_image_from_its_dockerfile() -> None:
    builds = [
        c for c in dry_run("images", "IMAGE_TAG=t1", "STAMP=") if c[:2] == ["docker", "build"]
    ]
    assert len(builds) == len(IMAGES)
    for image, command in zip(("training", "inference", "pipeline"), builds, strict=True):
        assert command[command.index("-f") + 1] == f"containers/{image}/Dockerfile"
        assert command[command.index("-t") + 1] == f"skinlesion-{image}:t1"
        assert command[-1] == "."  # the repository root is the build context
        assert command[command.index("--platform") + 1] == "linux/amd64"
    variants = {c[c.index("-t") + 1]: c for c in builds}
    assert "TORCH_VARIANT=cu126" in variants["skinlesion-training:t1"]
    assert "TORCH_VARIANT=cpu" in variants["skinlesion-inference:t1"]
    assert not any(w.startswith("TORCH_VARIANT") for w in variants["skinlesion-pipeline:t1"])


def test_torch_variant_can_be_chosen() -> None:
    (build,) = [
        c
        for c in dry_run("image-training", "IMAGE_TAG=t", "STAMP=", "TRAINING_TORCH_VARIANT=cpu")
        if c[:2] == ["docker", "build"]
    ]
    assert "TORCH_VARIANT=cpu" in build


def test_push_and_manifests_read_the_environments_terraform_outputs() -> None:
    (push,) = [
        c
        for c in dry_run("push", "ENV=prod", "IMAGE_TAG=t", "STAMP=")
        if "publish.py" in " ".join(c)
    ]
    assert push[push.index("--outputs") + 1] == "build/terraform-outputs-prod.json"
    assert push[push.index("--tag") + 1] == "t"
    assert push[-3:] == ["training", "inference", "pipeline"]
    (render,) = [
        c
        for c in dry_run("manifests", "ENV=prod", "IMAGE_TAG=t", "STAMP=", "PROFILE_OWNER=o@x.org")
        if "render.py" in " ".join(c)
    ]
    assert render[render.index("--env") + 1] == "prod"
    assert render[render.index("--outputs") + 1] == "build/terraform-outputs-prod.json"
    assert render[render.index("--owner") + 1] == "o@x.org"
    assert render[render.index("--image-tag") + 1] == "t"


def test_help_through_a_pipe_is_plain_and_aligned() -> None:
    """`make help | less` shows no escape codes; descriptions start in one column, however long
    the longest target name is."""
    result = subprocess.run(
        ["make", "--no-print-directory", "help"],
        capture_output=True,  # stdout is a pipe, not a terminal
        text=True,
        cwd=REPO_ROOT,
        env={k: v for k, v in os.environ.items() if k != "NO_COLOR"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) > 20
    assert "\x1b" not in result.stdout
    rows = [re.fullmatch(r"  (\S+)( +)(\S.*)", line) for line in lines]
    assert all(rows), [line for line, row in zip(lines, rows, strict=True) if not row]
    names = [row.group(1) for row in rows if row]
    width = max(len(name) for name in names)
    assert width > 16  # the old fixed width: a longer name used to push its text out of line
    starts = {row.start(3) for row in rows if row}
    assert starts == {2 + width + 2}
    assert {"help", "demo", "test", "data", "diagram"} <= set(names)


def test_data_installs_isic_cli_from_the_data_extra_then_fetches(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`make data` (not run: it downloads 9 GB) installs the `data` extra, then runs
    fetch-isic with that venv's `isic` executable."""
    install, fetch = dry_run("data", "STAMP=", "ISIC_DIR=build/isic-test")
    assert install[:2] == [".venv/bin/pip", "install"] and install[-2:] == ["-e", ".[data]"]
    with (REPO_ROOT / "pyproject.toml").open("rb") as handle:
        extras = tomllib.load(handle)["project"]["optional-dependencies"]
    assert [r for r in extras["data"] if re.match(r"isic-cli\b", r)], extras["data"]
    assert fetch[:3] == [".venv/bin/skinlesion", "fetch-isic", "build/isic-test"]
    assert fetch[fetch.index("--isic-binary") + 1] == ".venv/bin/isic"  # isic-cli's script

    # The same arguments through the CLI, dry: the isic-cli command it would run.
    from skinlesion.cli import main

    assert main([*fetch[1:], "--dry-run"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == ".venv/bin/isic image download --collections 65 build/isic-test/images"


def test_architecture_svg_is_rendered_from_its_source() -> None:
    """docs/architecture.svg is what `make diagram` makes of docs/architecture.dot today."""
    dot = shutil.which("dot")
    if dot is None:
        pytest.skip("Graphviz's dot is not installed (apt-get install graphviz; .ci/run does)")
    source, committed = REPO_ROOT / "docs/architecture.dot", REPO_ROOT / "docs/architecture.svg"
    assert dry_run("diagram")[-1] == [
        "dot",
        "-Tsvg",
        "docs/architecture.dot",
        "-o",
        "docs/architecture.svg",
    ]
    rendered = subprocess.run(
        [dot, "-Tsvg", str(source)], capture_output=True, text=True, check=True
    ).stdout
    version = re.compile(r"Generated by graphviz version ([^\n]*)")
    ours, theirs = version.search(rendered), version.search(committed.read_text())
    assert ours and theirs, "the SVG lacks Graphviz's version comment: was it rendered by dot?"
    if ours.group(1) != theirs.group(1):
        pytest.skip(
            f"docs/architecture.svg was rendered by Graphviz {theirs.group(1)}, this machine has "
            f"{ours.group(1)}: layouts differ between versions, so only that version can compare"
        )
    assert rendered == committed.read_text(), "docs/architecture.svg is stale: run make diagram"


FAKE_KUBECTL = """#!/bin/sh
# Records each call; the namespace appears after $APPEAR_AFTER lookups (never when empty).
echo "$*" >> "$KUBECTL_LOG"
if [ "$1" = get ] && [ "$2" = namespace ]; then
    count=$(cat "$KUBECTL_LOG.gets" 2>/dev/null || echo 0)
    count=$((count + 1))
    echo "$count" > "$KUBECTL_LOG.gets"
    if [ -n "$APPEAR_AFTER" ] && [ "$count" -gt "$APPEAR_AFTER" ]; then
        echo "namespace/$3"
        exit 0
    fi
    echo "Error from server (NotFound): namespaces \\"$3\\" not found" >&2
    exit 1
fi
exit 0
"""


def _manifests_apply(
    tmp_path: Path, appear_after: str, timeout: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(FAKE_KUBECTL)
    kubectl.chmod(0o755)
    out = tmp_path / "manifests"
    out.mkdir()
    for name in ("dev.yaml", "dev.profile.yaml", "dev.resources.yaml"):
        (out / name).write_text("# rendered by make manifests\n")
    (out / "dev.namespace").write_text("skinlesion-dev\n")
    log = tmp_path / "kubectl.log"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "KUBECTL_LOG": str(log),
        "APPEAR_AFTER": appear_after,
    }
    result = subprocess.run(
        ["make", "--no-print-directory", "manifests-apply", "ENV=dev", f"MANIFESTS_OUT={out}",
         "KUBECTL=kubectl", "NAMESPACE_POLL=1", f"NAMESPACE_TIMEOUT={timeout}"],
        capture_output=True, text=True, cwd=REPO_ROOT, env=env, check=False,
    )  # fmt: skip
    calls = log.read_text().splitlines() if log.exists() else []
    return result, calls


def test_manifests_apply_applies_the_profile_waits_for_its_namespace_then_the_rest(
    tmp_path: Path,
) -> None:
    result, calls = _manifests_apply(tmp_path, appear_after="2", timeout="30")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "manifests"
    assert calls == [
        f"apply -f {out}/dev.profile.yaml",
        "get namespace skinlesion-dev -o name",
        "get namespace skinlesion-dev -o name",
        "get namespace skinlesion-dev -o name",
        "wait --for=jsonpath={.status.phase}=Active namespace/skinlesion-dev --timeout=30s",
        f"apply -f {out}/dev.resources.yaml",
    ]


def test_manifests_apply_gives_up_when_the_namespace_never_appears(
    tmp_path: Path,
) -> None:
    result, calls = _manifests_apply(tmp_path, appear_after="", timeout="2")
    assert result.returncode != 0
    assert "Namespace skinlesion-dev did not appear within 2 s" in result.stderr
    assert "profile controller" in result.stderr
    assert calls[0].startswith("apply -f ") and calls[0].endswith("dev.profile.yaml")
    assert not [c for c in calls if c.endswith("dev.resources.yaml")]  # nothing namespaced


def test_manifests_apply_needs_make_manifests_first(tmp_path: Path) -> None:
    result = subprocess.run(
        ["make", "--no-print-directory", "manifests-apply", "ENV=dev",
         f"MANIFESTS_OUT={tmp_path}"],
        capture_output=True, text=True, cwd=REPO_ROOT, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "run 'make manifests ENV=dev' first" in result.stderr
