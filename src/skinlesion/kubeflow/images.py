"""The one image set of a compiled pipeline: pipeline, training and inference images, one tag.

A run must use the images of one commit. The pipeline image runs every step; the training and
inference images are what the SageMaker steps hand to SageMaker. All three are named here, from
one source (Terraform's ECR repository outputs, or an explicit registry for a local cluster),
and with one tag (the commit, ``make``'s ``IMAGE_TAG``); compile bakes them into the YAML:
the executors' image, and the steps' ``SKINLESION_*_IMAGE_REPOSITORY_URL`` variables (with the
tag), which then win over the namespace ConfigMap's values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from skinlesion.settings import env_name, image_uri

IMAGE_NAMES = ("pipeline", "training", "inference")
DIRTY_SUFFIX = "-dirty"
# A Docker tag: what `docker tag` accepts (reference grammar of distribution/reference).
TAG_PATTERN = re.compile(r"^[\w][\w.-]{0,127}$")
# <host>[:port][/<path>], the part of a reference before the repository's own name. The host must
# hold a dot or a port, or be localhost: a bare first segment is read by Docker as a Docker Hub
# namespace (distribution/reference, splitDockerDomain), which is exactly what must not happen.
REGISTRY_PATTERN = re.compile(
    r"^(?:(?:localhost|[a-z0-9-]+(?:\.[a-z0-9-]+)+)(?::[0-9]+)?|[a-z0-9-]+:[0-9]+)"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
NO_REGISTRY_MESSAGE = (
    "No image registry: the compiled pipeline must name images a cluster can pull, and a "
    "bare name such as skinlesion-pipeline:<tag> would be pulled from Docker Hub. Run "
    "`make tf-outputs ENV=<env>` (the ECR repositories of Terraform's outputs; --tf-outputs), "
    "or give IMAGE_REGISTRY=<host>[/<path>] (--image-registry; e.g. kind.local for images "
    "loaded into kind)."
)


class ImageSetError(ValueError):
    """The image set cannot be named; the message says what is missing and how to give it."""


@dataclass(frozen=True)
class ImageSet:
    """The three images of one commit, each ``<repository>:<tag>``."""

    pipeline: str
    training: str
    inference: str
    tag: str

    @property
    def dirty(self) -> bool:
        """The tag marks uncommitted changes: ``make push`` never pushes such images."""
        return self.tag.endswith(DIRTY_SUFFIX)

    def executor_image(self, jobs_in_pod: bool) -> str:
        """The image every step runs in: the training image (torch) when jobs run in the pods."""
        return self.training if jobs_in_pod else self.pipeline

    def environment(self) -> dict[str, str]:
        """``SKINLESION_*`` variables that make skinlesion.settings name these three images."""
        return {
            env_name("pipeline_image_repository_url"): self.pipeline,
            env_name("training_image_repository_url"): self.training,
            env_name("inference_image_repository_url"): self.inference,
            env_name("image_tag"): self.tag,
        }


def check_tag(tag: str) -> str:
    """Return ``tag`` if Docker accepts it, else raise naming the rule."""
    if not TAG_PATTERN.match(tag or ""):
        raise ImageSetError(
            f"Invalid image tag {tag!r}. Accepted: letters, digits, '_', '.' and '-', at most "
            "128 characters, not starting with '.' or '-' (make's IMAGE_TAG: the commit)."
        )
    return tag


def from_repositories(repositories: Mapping[str, Any], tag: str, source: str) -> ImageSet:
    """The set from three repository URLs (``pipeline``, ``training``, ``inference`` keys)."""
    check_tag(tag)
    unknown = sorted(set(repositories) - set(IMAGE_NAMES))
    if unknown:
        raise ImageSetError(
            f"{source}: unknown image {', '.join(unknown)}. Accepted: {', '.join(IMAGE_NAMES)}."
        )
    uris = {}
    for name in IMAGE_NAMES:
        repository = str(repositories.get(name) or "")
        if not repository:
            raise ImageSetError(f"{source}: no {name} image repository. {NO_REGISTRY_MESSAGE}")
        if "@" in repository or ":" in repository.rsplit("/", 1)[-1]:
            raise ImageSetError(
                f"{source}: the {name} repository {repository!r} carries a tag or digest; give "
                "the repository alone (the tag is the commit, the same for all three)."
            )
        registry = repository.rsplit("/", 1)[0] if "/" in repository else ""
        if not REGISTRY_PATTERN.match(registry):
            raise ImageSetError(
                f"{source}: the {name} repository {repository!r} names no registry host, so a "
                f"cluster would pull it from Docker Hub. {NO_REGISTRY_MESSAGE}"
            )
        uris[name] = image_uri(repository, tag)
    return ImageSet(uris["pipeline"], uris["training"], uris["inference"], tag)


def from_terraform_outputs(outputs: Mapping[str, Any], tag: str) -> ImageSet:
    """The set from Terraform's ``<name>_image_repository_url`` outputs (the ECR repositories)."""
    repositories = {name: outputs.get(f"{name}_image_repository_url") for name in IMAGE_NAMES}
    return from_repositories(repositories, tag, "Terraform outputs")


def from_registry(registry: str, tag: str) -> ImageSet:
    """The set ``<registry>/skinlesion-<name>:<tag>``, the names ``make images`` builds."""
    registry = registry.rstrip("/")
    if not REGISTRY_PATTERN.match(registry):
        raise ImageSetError(
            f"Invalid image registry {registry!r}. Accepted: <host>[:<port>][/<path>] whose host "
            "holds a dot or a port or is localhost (e.g. 123456789012.dkr.ecr.eu-west-1."
            "amazonaws.com, localhost:5001, kind.local); a bare name is a Docker Hub namespace."
        )
    repositories = {name: f"{registry}/skinlesion-{name}" for name in IMAGE_NAMES}
    return from_repositories(repositories, tag, f"registry {registry}")


def refuse_dirty(images: ImageSet, allow_dirty: bool) -> None:
    """Raise when ``images`` carries a ``-dirty`` tag and that was not explicitly allowed."""
    if images.dirty and not allow_dirty:
        raise ImageSetError(
            f"The image tag {images.tag!r} marks uncommitted changes: `make push` never pushes "
            "such images, so the run's pods could not pull them. Commit, `make images push`, "
            "then submit; or pass ALLOW_DIRTY=1 (--allow-dirty) when images with this tag do "
            "exist where the cluster pulls from (e.g. loaded into kind)."
        )


def resolve_image_set(
    *,
    tag: str,
    registry: str | None = None,
    repositories: Mapping[str, Any] | None = None,
    terraform_outputs: Mapping[str, Any] | None = None,
) -> ImageSet:
    """The set from the first source given: a registry, three repositories, Terraform's outputs."""
    if registry:
        return from_registry(registry, tag)
    if repositories:
        return from_repositories(repositories, tag, "image_repositories")
    if terraform_outputs is not None:
        return from_terraform_outputs(terraform_outputs, tag)
    raise ImageSetError(NO_REGISTRY_MESSAGE)
