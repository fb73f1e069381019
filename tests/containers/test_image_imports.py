"""Each image's entrypoints import with that image's requirement set and nothing more.

No Docker here, so each image is stood in for by a folder that holds only the distributions its
requirement set pulls in (symlinks into this environment) and an interpreter started with ``-S``
on that folder and src/. A module that imports something the image lacks fails here as it would
in the container; torch cannot be found in the pipeline image's stand-in.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from tests.containers.helpers import (
    CONTAINERS,
    IMAGES,
    REPO_ROOT,
    ImportReport,
    component_modules,
    imported_distributions_roots,
    mirror_environment,
    package_modules,
    probe_imports,
    project_scripts,
    read_requirements,
    requirement_closure,
)

# What each image runs. Explicit modules must exist; packages add whatever modules they hold.
ENTRYPOINTS: dict[str, dict[str, tuple[str, ...]]] = {
    # SageMaker training runs skinlesion.jobs.train (containers/training/train.py, which may use
    # torch.distributed.run); processing jobs run the other jobs (monitoring's too).
    "training": {
        "modules": (
            "skinlesion.jobs.train",
            "skinlesion.jobs.preprocess",
            "skinlesion.jobs.evaluate",
            "torch.distributed.run",
        ),
        "packages": (
            "skinlesion.jobs",
            "skinlesion.training",
            "skinlesion.data",
            "skinlesion.monitoring",
        ),
        "scripts": (),
    },
    # SageMaker starts `serve`; the app behind it is skinlesion.serving.
    "inference": {
        "modules": ("skinlesion.serving",),
        "packages": ("skinlesion.serving",),
        "scripts": ("serve",),
    },
    # KFP runs each component as `python3 -m kfp.dsl.executor_main`; the component bodies import
    # skinlesion.steps and friends (read from components/*.py), which drive the SageMaker
    # backend. The image's CMD is the skinlesion CLI.
    "pipeline": {
        "modules": (
            "kfp.dsl.executor_main",
            "skinlesion.steps",
            "skinlesion.backends",
            "skinlesion.backends.sagemaker",
            "skinlesion.settings",
            "skinlesion.aws",
            "skinlesion.cli",
        ),
        "packages": ("skinlesion.backends.sagemaker",),
        "scripts": ("skinlesion",),
    },
}
# Functions called in the image (no arguments): the pipeline image's CMD is `skinlesion --help`,
# whose parser imports every command module of the CLI.
INVOKE = {"pipeline": ("skinlesion.cli:build_parser",)}
# Modules that an image's code imports only on a path the image never takes, with the reason.
NOT_NEEDED: dict[str, dict[str, str]] = {
    "training": {
        "kfp": "skinlesion.monitoring.retrain starts a retraining run through the KFP API from "
        "a pipeline step, in the pipeline image; no processing job calls it",
    },
    "inference": {},
    "pipeline": {},
}


def modules_of(image: str) -> list[str]:
    spec = ENTRYPOINTS[image]
    found = {m for package in spec["packages"] for m in package_modules(package)}
    if image == "pipeline":
        found |= set(component_modules())  # what the component bodies import
    return sorted(set(spec["modules"]) | found)


def lazy_imports(image: str) -> set[str]:
    """Third-party packages the image's modules import anywhere in their source."""
    return imported_distributions_roots(modules_of(image)) - set(NOT_NEEDED[image])


def scripts_of(image: str) -> list[str]:
    scripts = project_scripts()
    return [scripts[name] for name in ENTRYPOINTS[image]["scripts"] if name in scripts]


@pytest.fixture(scope="session")
def image_reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ImportReport]:
    """One probe per image: every entrypoint imported in the image's stand-in environment."""
    roots: dict[str, Path] = {}
    sites: dict[str, Path] = {}
    for image in IMAGES:
        closure = requirement_closure(read_requirements(CONTAINERS / image / "requirements.txt"))
        assert not closure.missing, f"{image}: not installed here: {closure.missing}"
        roots[image] = tmp_path_factory.mktemp(f"image-{image}")
        sites[image] = mirror_environment(closure, roots[image] / "site-packages")

    # ast.parse is not thread-safe on CPython 3.11 ("AST constructor recursion depth
    # mismatch"): read the imports here, before the threads start.
    finds = {image: sorted({"torch", "kfp", "fastapi"} | lazy_imports(image)) for image in IMAGES}

    def probe(image: str) -> ImportReport:
        return probe_imports(
            [REPO_ROOT / "src", sites[image]],
            modules_of(image),
            callables=scripts_of(image),
            invoke=INVOKE.get(image, ()),
            find=finds[image],
            cwd=roots[image],
        )

    # The probes are separate interpreters: run them side by side.
    with ThreadPoolExecutor(max_workers=len(IMAGES)) as pool:
        return dict(zip(IMAGES, pool.map(probe, IMAGES), strict=True))


@pytest.mark.parametrize(
    ("image", "module"), [(image, m) for image in IMAGES for m in modules_of(image)]
)
def test_entrypoint_module_imports(
    image_reports: dict[str, ImportReport], image: str, module: str
) -> None:
    error = image_reports[image].errors.get(module)
    assert error is None, f"{module} does not import in the {image} image: {error}"


@pytest.mark.parametrize("image", IMAGES)
def test_lazily_imported_packages_are_in_the_image(
    image_reports: dict[str, ImportReport], image: str
) -> None:
    # Imports inside functions only fail when the function runs, in the container; the source
    # says what they are, and each must be installed in the image.
    wanted = lazy_imports(image)
    assert wanted, f"no third-party import found in the {image} image's modules"
    missing = sorted(name for name in wanted if not image_reports[image].found[name])
    assert not missing, f"the {image} image's code imports {missing}, which its set lacks"


@pytest.mark.parametrize("image", IMAGES)
def test_console_scripts_resolve(image_reports: dict[str, ImportReport], image: str) -> None:
    scripts = project_scripts()
    for name in ENTRYPOINTS[image]["scripts"]:
        assert name in scripts, f"pyproject.toml declares no console script {name!r}"
        target = scripts[name]
        error = image_reports[image].errors.get(target)
        assert error is None, f"script {name} = {target} fails in the {image} image: {error}"


def test_pipeline_image_builds_the_cli(image_reports: dict[str, ImportReport]) -> None:
    for target in INVOKE["pipeline"]:
        error = image_reports["pipeline"].errors.get(target)
        assert error is None, f"{target}() fails in the pipeline image: {error}"


def test_pipeline_image_has_no_torch(image_reports: dict[str, ImportReport]) -> None:
    report = image_reports["pipeline"]
    assert (report.found["torch"], report.found["kfp"], report.found["fastapi"]) == (
        False,
        True,
        False,
    )
    assert not any(m == "torch" or m.startswith("torch.") for m in report.modules)


def test_sagemaker_images_carry_no_orchestration(image_reports: dict[str, ImportReport]) -> None:
    for image in ("training", "inference"):
        assert image_reports[image].found["kfp"] is False, image
        assert image_reports[image].found["torch"] is True, image
    assert image_reports["inference"].found["fastapi"] is True


def test_stand_in_environment_hides_what_the_set_lacks(tmp_path: Path) -> None:
    # The stand-in is only a test if it really hides distributions: boto3 is installed here, but
    # a set of PyYAML alone does not pull it in.
    closure = requirement_closure([Requirement("PyYAML")])
    assert set(closure.distributions) == {"pyyaml"}
    site = mirror_environment(closure, tmp_path / "site-packages")
    report = probe_imports([site], ["boto3", "yaml"], find=["boto3"], cwd=tmp_path)
    assert "ModuleNotFoundError" in report.errors["boto3"]
    assert "yaml" not in report.errors
    assert report.found == {"boto3": False}
