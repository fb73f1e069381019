"""Compile pipelines to KFP IR YAML with compile-time settings, then validate them strictly.

Settings that differ per environment (the image set, the pipeline root, a caching override)
are applied here, at compile time, to the compiled documents; nothing reads the
environment when a pipeline module is imported. The YAML is written the way KFP writes it
(KFP's header comments, then the documents with sorted keys), so the same pipeline and options
give the same bytes.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import logging
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kfp.dsl.graph_component import GraphComponent

from skinlesion.kubeflow.discovery import PipelineEntry
from skinlesion.kubeflow.images import ImageSet
from skinlesion.kubeflow.targets import DEFAULT_BACKEND, BackendTarget, target
from skinlesion.kubeflow.tasks import IN_POD_JOB_COMPONENTS, IN_POD_JOB_RESOURCES
from skinlesion.kubeflow.validation import (
    ValidatedPipeline,
    load_documents,
    validate_documents,
)

log = logging.getLogger(__name__)

DEFAULT_OUTPUT_DIR = Path("build/pipelines")
PIPELINE_ROOT_SCHEMES = ("s3", "minio", "gs")


class CompileOptionError(ValueError):
    """A compile-time setting has an invalid value; the message says what is accepted."""


TUNING_MODES = ("none", "sweep", "sagemaker")
TUNING_KEYS = ("mode", "learning_rates", "max_jobs", "parallel_jobs")
# SageMaker's limits for a Bayesian tuning job (HyperParameterTuningJobConfig
# ResourceLimits: MaxNumberOfTrainingJobs 1-750 for Bayesian, MaxParallelTrainingJobs 1-100).
MAX_TUNING_JOBS = 750
MAX_PARALLEL_TUNING_JOBS = 100


@dataclass(frozen=True)
class TuningSettings:
    """How the training pipeline finds its model; chosen at compile time (``compile.tuning``).

    ``none``: one train step (the graph ``make demo`` runs). ``sweep``: one train step per
    learning rate of ``learning_rates`` (``parallel_jobs`` at once), the best by validation
    balanced accuracy picked. ``sagemaker``: the backend's tuning job, ``max_jobs`` trials
    (``parallel_jobs`` at once) over the learning rate between the lowest and highest of
    ``learning_rates`` (log scale). The pipeline's ``learning_rate`` argument is not used by the
    tuning modes.
    """

    mode: str = "none"
    learning_rates: tuple[float, ...] = (1e-4, 1e-2)
    max_jobs: int = 8
    parallel_jobs: int = 2

    def __post_init__(self) -> None:
        if self.mode not in TUNING_MODES:
            raise CompileOptionError(
                f"Invalid tuning mode {self.mode!r}. Accepted: none (train once), sweep (a "
                "ParallelFor of train steps over learning_rates, the best picked) or sagemaker "
                "(the backend's tuning job over the learning_rates range)."
            )
        rates = self.learning_rates
        if (
            isinstance(rates, (str, bytes))
            or not isinstance(rates, Iterable)
            or not all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in rates)
        ):
            raise CompileOptionError(
                f"Invalid tuning learning_rates {rates!r}: a list of positive numbers."
            )
        rates = tuple(float(r) for r in rates)
        object.__setattr__(self, "learning_rates", rates)
        if any(r <= 0 for r in rates) or len(set(rates)) < 2:
            raise CompileOptionError(
                f"Invalid tuning learning_rates {list(rates)}: at least two different positive "
                "numbers (sweep: one trial each; sagemaker: the range's ends are the lowest and "
                "the highest)."
            )
        for name in ("max_jobs", "parallel_jobs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CompileOptionError(f"Invalid tuning {name} {value!r}: a positive integer.")
        if self.mode == "sagemaker":
            if self.max_jobs > MAX_TUNING_JOBS:
                raise CompileOptionError(
                    f"Invalid tuning max_jobs {self.max_jobs}: SageMaker's Bayesian tuning "
                    f"accepts 1 to {MAX_TUNING_JOBS}."
                )
            if not self.parallel_jobs <= min(self.max_jobs, MAX_PARALLEL_TUNING_JOBS):
                raise CompileOptionError(
                    f"Invalid tuning parallel_jobs {self.parallel_jobs}: 1 to max_jobs "
                    f"({self.max_jobs}) and at most {MAX_PARALLEL_TUNING_JOBS}."
                )

    @property
    def trials(self) -> int:
        """How many models are trained: one, one per learning rate, or ``max_jobs``."""
        return {"none": 1, "sweep": len(self.learning_rates)}.get(self.mode, self.max_jobs)

    @classmethod
    def parse(cls, value: Any) -> TuningSettings:
        """From ``compile.tuning``: a mode name, or a mapping with ``mode`` and sub-settings."""
        if isinstance(value, TuningSettings):
            return value
        if isinstance(value, str):
            return cls(mode=value)
        if not isinstance(value, Mapping):
            raise CompileOptionError(
                f"Invalid tuning {value!r}: a mode ({', '.join(TUNING_MODES)}) or a mapping with "
                f"{', '.join(TUNING_KEYS)}."
            )
        unknown = sorted(set(value) - set(TUNING_KEYS))
        if unknown:
            raise CompileOptionError(
                f"Unknown tuning settings {', '.join(unknown)}. Accepted: {', '.join(TUNING_KEYS)}."
            )
        if "mode" not in value:
            raise CompileOptionError(f"tuning needs a mode: one of {', '.join(TUNING_MODES)}.")
        return cls(**dict(value))


@dataclass(frozen=True)
class CompileOptions:
    """Compile-time settings; ``None`` keeps what the pipeline code says."""

    # The pipeline, training and inference images of one commit (skinlesion.kubeflow.images);
    # None keeps the components' PIPELINE_IMAGE, which names no registry: tests and kfp.local.
    images: ImageSet | None = None
    pipeline_root: str | None = None  # the spec's defaultPipelineRoot (a run may override it)
    enable_caching: bool | None = None  # overrides every task's caching option
    jobs_in_pod: bool = False  # backend=local on a cluster: size the job steps' pods for work
    kfp_backend: str = DEFAULT_BACKEND  # the KFP server release the YAML must suit
    # How the training pipeline finds its model (TuningSettings; a mode name or a mapping is
    # parsed); pipelines without tuning modes ignore it.
    tuning: TuningSettings = field(default_factory=TuningSettings)

    @property
    def target(self) -> BackendTarget:
        return target(self.kfp_backend)

    def __post_init__(self) -> None:
        target(self.kfp_backend)  # raises naming the supported releases
        object.__setattr__(self, "tuning", TuningSettings.parse(self.tuning))
        if self.images is not None and not isinstance(self.images, ImageSet):
            raise CompileOptionError(
                f"Invalid images {self.images!r}: an ImageSet (skinlesion.kubeflow.images)."
            )
        if self.pipeline_root is not None:
            check_pipeline_root(self.pipeline_root)


def check_pipeline_root(uri: str) -> str:
    """Return ``uri`` if it is a bucket URI KFP can write artifacts to, else raise."""
    scheme, _, rest = uri.partition("://")
    if scheme not in PIPELINE_ROOT_SCHEMES or not rest or rest.startswith("/"):
        raise CompileOptionError(
            f"Invalid pipeline root {uri!r}. Accepted: s3://<bucket>[/<prefix>] (Kubeflow on "
            "AWS), minio://<bucket>[/<prefix>] or gs://<bucket>[/<prefix>]."
        )
    return uri


@dataclass(frozen=True)
class CompiledPipeline:
    """A pipeline compiled to text and validated."""

    name: str  # the discovery name (file name under pipelines/)
    text: str
    validated: ValidatedPipeline
    kfp_backend: str = DEFAULT_BACKEND  # the KFP release the text was compiled for

    @property
    def pipeline_name(self) -> str:
        return self.validated.name

    @property
    def digest(self) -> str:
        """SHA-256 of the YAML text: equal texts, equal digests."""
        return hashlib.sha256(self.text.encode()).hexdigest()

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.text.encode())
        return path


def default_pipeline_image() -> str:
    """The image the components declare (``components.PIPELINE_IMAGE``)."""
    return str(importlib.import_module("components").PIPELINE_IMAGE)


def _dag_tasks(spec: dict[str, Any]) -> Iterable[dict[str, Any]]:
    yield from spec.get("root", {}).get("dag", {}).get("tasks", {}).values()
    for component in spec.get("components", {}).values():
        yield from component.get("dag", {}).get("tasks", {}).values()


def _executor_component(label: str) -> str:
    # exec-train, exec-record-decision-2 -> train, record_decision
    return re.sub(r"-\d+$", "", label.removeprefix("exec-")).replace("-", "_")


def apply_options(
    documents: list[dict[str, Any]], options: CompileOptions, default_image: str
) -> list[dict[str, Any]]:
    """Return a copy of the compiled documents with ``options`` applied."""
    docs = copy.deepcopy(documents)
    spec = docs[0]
    executors = spec.get("deploymentSpec", {}).get("executors", {})
    if options.images is not None:
        _apply_images(docs, options.images, options.jobs_in_pod, default_image)
    if options.pipeline_root is not None:
        spec["defaultPipelineRoot"] = options.pipeline_root
    if options.enable_caching is not None:
        for task in _dag_tasks(spec):
            # The form KFP writes: {} for off (proto3 drops a false default).
            task["cachingOptions"] = {"enableCache": True} if options.enable_caching else {}
    if options.jobs_in_pod:
        size = IN_POD_JOB_RESOURCES
        for label, executor in executors.items():
            if _executor_component(label) in IN_POD_JOB_COMPONENTS and "container" in executor:
                executor["container"]["resources"] = {
                    "resourceCpuRequest": size.cpu_request,
                    "resourceCpuLimit": size.cpu_limit,
                    "resourceMemoryRequest": size.memory_request,
                    "resourceMemoryLimit": size.memory_limit,
                }
    if len(docs) == 2:
        adapt_platform_spec(docs[1], options.target)
    return docs


def _apply_images(
    docs: list[dict[str, Any]], images: ImageSet, jobs_in_pod: bool, default_image: str
) -> None:
    """Run every step in the set's image and name the set in each step's environment.

    The driver puts a container's ``env`` into the pod first and appends the ConfigMap's
    variables after it (backend/src/v2/driver: initPodSpecPatch, then extendPodSpecPatch), and
    the kubelet keeps the last of two equal names; so the image keys leave ``configMapAsEnv``.
    Kubeflow's PodDefault adds the ConfigMap with ``envFrom``, which ``env`` overrides.
    """
    executors = docs[0].get("deploymentSpec", {}).get("executors", {})
    image = images.executor_image(jobs_in_pod)
    replaced = 0
    for executor in executors.values():
        container = executor.get("container")
        if container is None or container.get("image") != default_image:
            continue
        container["image"] = image
        variables = images.environment()
        env = [e for e in container.get("env", []) if e.get("name") not in variables]
        container["env"] = env + [{"name": k, "value": v} for k, v in variables.items()]
        replaced += 1
    if not replaced:
        raise CompileOptionError(
            f"No executor runs in {default_image!r}, so the image {image!r} would replace "
            "nothing; components must use base_image=PIPELINE_IMAGE."
        )
    log.debug("image %s set on %d executors", image, replaced)
    if len(docs) < 2:
        return
    image_env = set(images.environment())
    kubernetes = docs[1].get("platforms", {}).get("kubernetes", {})
    for executor in kubernetes.get("deploymentSpec", {}).get("executors", {}).values():
        for entry in executor.get("configMapAsEnv", []):
            entry["keyToEnv"] = [
                k for k in entry.get("keyToEnv", []) if k.get("envVar") not in image_env
            ]


def adapt_platform_spec(platform: dict[str, Any], backend: BackendTarget) -> None:
    """Remove from the platform spec, in place, what ``backend``'s server does not know.

    The server drops a platform spec it cannot parse (and with it every pod's Kubernetes
    settings), and drivers before 2.15 fail a task on ``configMapAsEnv[].optional``.
    """
    kubernetes = platform.get("platforms", {}).get("kubernetes", {})
    config = kubernetes.get("pipelineConfig")
    if config is not None:
        ttl_keys = [k for k in config if k.startswith("resourceTtl")]
        for key in ttl_keys:
            if key != backend.ttl_field:
                value = config.pop(key)
                log.warning(
                    "KFP %s applies no pipeline TTL; dropped %s=%s (the cluster's own workflow "
                    "TTL applies)",
                    backend.version,
                    key,
                    value,
                )
        if not backend.has_pipeline_config or not config:
            del kubernetes["pipelineConfig"]
    for executor in kubernetes.get("deploymentSpec", {}).get("executors", {}).values():
        for entry in executor.get("configMapAsEnv", []):
            if not backend.config_map_optional:
                entry.pop("optional", None)
            # kfp-kubernetes writes the constant name twice; older servers know only the first.
            if not backend.config_map_name_parameter and entry.get("configMapName"):
                entry.pop("configMapNameParameter", None)


def _split_header(text: str) -> tuple[str, str]:
    lines = text.splitlines(keepends=True)
    count = 0
    while count < len(lines) and lines[count].startswith("#"):
        count += 1
    return "".join(lines[:count]), "".join(lines[count:])


def render(header: str, documents: list[dict[str, Any]]) -> str:
    """The YAML text KFP would write for ``documents`` (its header, then sorted keys)."""
    return header + yaml.safe_dump_all(documents, sort_keys=True)


# A pipelines module with tuning modes defines this: TuningSettings -> the @dsl.pipeline.
TUNING_FACTORY = "pipeline_for_tuning"


def pipeline_for(entry: PipelineEntry, tuning: TuningSettings) -> GraphComponent:
    """The graph of ``entry`` for ``tuning``: its module's ``pipeline_for_tuning(tuning)``, or
    the entry's own pipeline for mode none and for pipelines that train nothing."""
    if tuning.mode == "none":
        return entry.pipeline
    factory = getattr(importlib.import_module(entry.module), TUNING_FACTORY, None)
    if factory is None:
        log.debug("%s has no tuning modes: tuning %s does not apply", entry.name, tuning.mode)
        return entry.pipeline
    pipeline = factory(tuning)
    if not isinstance(pipeline, GraphComponent):
        raise CompileOptionError(
            f"{entry.module}.{TUNING_FACTORY} returned a {type(pipeline).__name__}; expected a "
            "@dsl.pipeline."
        )
    return pipeline


def compile_pipeline(
    entry: PipelineEntry, options: CompileOptions | None = None
) -> CompiledPipeline:
    """Compile one pipeline with KFP, apply ``options``, validate strictly; nothing is written."""
    from kfp import compiler

    options = options or CompileOptions()
    pipeline = pipeline_for(entry, options.tuning)
    with tempfile.TemporaryDirectory(prefix="skinlesion-compile-") as scratch:
        raw_path = Path(scratch) / f"{entry.name}.yaml"
        compiler.Compiler().compile(pipeline, str(raw_path))
        raw = raw_path.read_text()
    header, _ = _split_header(raw)
    documents = load_documents(raw)
    validate_documents(documents)  # KFP's own output first, so a failure points at the code
    default_image = default_pipeline_image() if options.images is not None else ""
    text = render(header, apply_options(documents, options, default_image))
    validated = validate_documents(load_documents(text), options.target)
    return CompiledPipeline(
        name=entry.name, text=text, validated=validated, kfp_backend=options.kfp_backend
    )


def compile_to_file(
    entry: PipelineEntry,
    output_dir: Path = DEFAULT_OUTPUT_DIR,
    options: CompileOptions | None = None,
) -> tuple[CompiledPipeline, Path]:
    """Compile ``entry`` to ``<output_dir>/<name>.yaml``; return it and the path."""
    compiled = compile_pipeline(entry, options)
    path = compiled.write(output_dir / f"{entry.name}.yaml")
    log.info("compiled %s -> %s (sha256 %s)", entry.name, path, compiled.digest[:12])
    return compiled, path
