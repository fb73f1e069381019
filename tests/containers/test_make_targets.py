"""The make targets of mk/containers.mk expand to the commands docs/deploy.md describes."""

from __future__ import annotations

import shlex
import subprocess

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
    assert "TORCH_VARIANT=cu130" in variants["skinlesion-training:t1"]
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
