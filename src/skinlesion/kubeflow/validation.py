"""Strict validation of compiled pipeline YAML against the kfp-pipeline-spec protos.

KFP's own loader ignores what it does not know; a typo in a hand-edited or post-processed
spec then vanishes silently on the server. Here every document is parsed with unknown fields
rejected: the ``PipelineSpec``, each executor of its ``deploymentSpec``
(``PipelineDeploymentConfig``), the ``PlatformSpec`` and each Kubernetes executor config
(kfp-kubernetes' ``KubernetesExecutorConfig``). Then the references between them are checked
and a few rules of this project: every executor has an image and none is KFP's default
``python:3.x`` (our components run in the pipeline image).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format
from google.protobuf.message import Message
from kfp.kubernetes import kubernetes_executor_config_pb2
from kfp.pipeline_spec import pipeline_spec_pb2

from skinlesion.kubeflow.targets import BackendTarget

SCHEMA_VERSION = "2.1.0"
KNOWN_PLATFORMS = ("kubernetes",)
# KFP's default base image for lightweight components: python:3.11 and friends.
DEFAULT_IMAGE_PATTERN = re.compile(r"^(docker\.io/)?(library/)?python:3(\.\d+)?([-.\w]*)$")


class PipelineValidationError(ValueError):
    """A compiled pipeline is not valid; the message says where and what is accepted."""


@dataclass(frozen=True)
class ParameterInput:
    """One input parameter of a compiled pipeline."""

    name: str
    parameter_type: str  # STRING, NUMBER_INTEGER, NUMBER_DOUBLE, BOOLEAN, LIST, STRUCT
    default: Any
    optional: bool


@dataclass(frozen=True)
class ValidatedPipeline:
    """A compiled pipeline that passed :func:`validate_documents`."""

    spec: pipeline_spec_pb2.PipelineSpec
    deployment: pipeline_spec_pb2.PipelineDeploymentConfig
    platform: pipeline_spec_pb2.PlatformSpec | None
    kubernetes_executors: dict[str, kubernetes_executor_config_pb2.KubernetesExecutorConfig]
    documents: list[dict[str, Any]]

    @property
    def name(self) -> str:
        return str(self.spec.pipeline_info.name)

    def inputs(self) -> dict[str, ParameterInput]:
        """The pipeline's input parameters, by name."""
        out: dict[str, ParameterInput] = {}
        definitions = self.spec.root.input_definitions.parameters
        for name in sorted(definitions):
            spec = definitions[name]
            has_default = spec.HasField("default_value")
            out[name] = ParameterInput(
                name=name,
                parameter_type=pipeline_spec_pb2.ParameterType.ParameterTypeEnum.Name(
                    spec.parameter_type
                ),
                default=json_format.MessageToDict(spec.default_value) if has_default else None,
                optional=spec.is_optional or has_default,
            )
        return out


def _strict(data: Any, message: Message, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise PipelineValidationError(f"{where}: expected a mapping, got {type(data).__name__}.")
    try:
        return json_format.ParseDict(data, message, ignore_unknown_fields=False)
    except json_format.ParseError as error:
        raise PipelineValidationError(
            f"{where} is not a valid {message.DESCRIPTOR.full_name}: {error}"
        ) from None


def _check_executors(deployment: pipeline_spec_pb2.PipelineDeploymentConfig) -> None:
    if not deployment.executors:
        raise PipelineValidationError("deploymentSpec has no executors.")
    for label, executor in sorted(deployment.executors.items()):
        kind = executor.WhichOneof("spec")
        if kind != "container":
            continue
        image = executor.container.image
        if not image:
            raise PipelineValidationError(f"deploymentSpec.executors.{label} has no image.")
        if DEFAULT_IMAGE_PATTERN.match(image):
            raise PipelineValidationError(
                f"deploymentSpec.executors.{label} runs in KFP's default image {image!r}; "
                "components must set base_image=PIPELINE_IMAGE (components/__init__.py)."
            )


def _walk_dags(
    spec: pipeline_spec_pb2.PipelineSpec,
) -> Iterable[tuple[str, pipeline_spec_pb2.DagSpec]]:
    yield "root", spec.root.dag
    for name, component in sorted(spec.components.items()):
        if component.WhichOneof("implementation") == "dag":
            yield f"components.{name}", component.dag


def _check_references(
    spec: pipeline_spec_pb2.PipelineSpec, deployment: pipeline_spec_pb2.PipelineDeploymentConfig
) -> None:
    if spec.root.WhichOneof("implementation") != "dag":
        raise PipelineValidationError("root is not a DAG.")
    for name, component in sorted(spec.components.items()):
        if (
            component.WhichOneof("implementation") == "executor_label"
            and component.executor_label not in deployment.executors
        ):
            raise PipelineValidationError(
                f"components.{name}.executorLabel {component.executor_label!r} names no "
                f"executor in deploymentSpec (known: {', '.join(sorted(deployment.executors))})."
            )
    for where, dag in _walk_dags(spec):
        for task_name, task in sorted(dag.tasks.items()):
            ref = task.component_ref.name
            if ref not in spec.components:
                raise PipelineValidationError(
                    f"{where}.dag.tasks.{task_name}.componentRef {ref!r} names no component."
                )
            for dependency in task.dependent_tasks:
                if dependency not in dag.tasks:
                    raise PipelineValidationError(
                        f"{where}.dag.tasks.{task_name} depends on {dependency!r}, which is not a "
                        "task of the same DAG."
                    )


def check_target(documents: list[Any], backend: BackendTarget) -> None:
    """Reject what ``backend``'s server does not know (see skinlesion.kubeflow.targets).

    The installed protos are the newest release's; these are the differences to the older ones
    that our compiler can emit. The server would drop the platform spec silently (or its driver
    fail the task), so the compile fails here instead, naming both.
    """
    if len(documents) < 2:
        return
    kubernetes = documents[1].get("platforms", {}).get("kubernetes", {})
    config = kubernetes.get("pipelineConfig")
    if config is not None:
        if not backend.has_pipeline_config:
            raise PipelineValidationError(
                f"KFP {backend.version}: platforms.kubernetes has no field named "
                '"pipelineConfig" (it exists from KFP 2.4.0).'
            )
        for key in config:
            if key.startswith("resourceTtl") and key != backend.ttl_field:
                raise PipelineValidationError(
                    f"KFP {backend.version}: pipelineConfig has no field named {key!r} that the "
                    f"server applies (accepted: {backend.ttl_field or 'none'}); compile with "
                    f"--kfp-backend {backend.version}."
                )
    newer = (
        ("optional", backend.config_map_optional, "2.15.0"),
        ("configMapNameParameter", backend.config_map_name_parameter, "2.5.0"),
    )
    executors = kubernetes.get("deploymentSpec", {}).get("executors", {})
    for label, executor in sorted(executors.items()):
        for entry in executor.get("configMapAsEnv", []):
            for name, known, since in newer:
                if not known and name in entry:
                    raise PipelineValidationError(
                        f"KFP {backend.version}: executor {label}: configMapAsEnv has no field "
                        f'named "{name}" (it exists from KFP {since}); its driver fails the task.'
                    )


def validate_documents(
    documents: list[Any], backend: BackendTarget | None = None
) -> ValidatedPipeline:
    """Validate the YAML documents of a compiled pipeline; raise on the first problem.

    With ``backend``, also reject what that KFP release does not accept.
    """
    if len(documents) not in (1, 2):
        raise PipelineValidationError(
            f"A compiled pipeline has 1 or 2 YAML documents (pipeline spec, then platform "
            f"spec); got {len(documents)}."
        )
    spec = _strict(documents[0], pipeline_spec_pb2.PipelineSpec(), "document 1 (pipeline spec)")
    if spec.schema_version != SCHEMA_VERSION:
        raise PipelineValidationError(
            f"schemaVersion {spec.schema_version!r} is not supported; expected {SCHEMA_VERSION}."
        )
    if not spec.pipeline_info.name:
        raise PipelineValidationError("pipelineInfo.name is empty.")
    deployment = _strict(
        documents[0].get("deploymentSpec"),
        pipeline_spec_pb2.PipelineDeploymentConfig(),
        "deploymentSpec",
    )
    _check_executors(deployment)
    _check_references(spec, deployment)

    platform = None
    kubernetes_executors: dict[str, kubernetes_executor_config_pb2.KubernetesExecutorConfig] = {}
    if len(documents) == 2:
        platform = _strict(
            documents[1], pipeline_spec_pb2.PlatformSpec(), "document 2 (platform spec)"
        )
        for name in platform.platforms:
            if name not in KNOWN_PLATFORMS:
                raise PipelineValidationError(
                    f"platforms.{name} is not a known platform; accepted: "
                    f"{', '.join(KNOWN_PLATFORMS)}."
                )
        raw = documents[1].get("platforms", {}).get("kubernetes", {})
        executors = raw.get("deploymentSpec", {}).get("executors", {})
        for label, config in sorted(executors.items()):
            where = f"platforms.kubernetes.deploymentSpec.executors.{label}"
            if label not in deployment.executors:
                raise PipelineValidationError(f"{where} names no executor in deploymentSpec.")
            kubernetes_executors[label] = _strict(
                config, kubernetes_executor_config_pb2.KubernetesExecutorConfig(), where
            )
    if backend is not None:
        check_target(documents, backend)
    return ValidatedPipeline(
        spec=spec,
        deployment=deployment,
        platform=platform,
        kubernetes_executors=kubernetes_executors,
        documents=list(documents),
    )


def load_documents(text: str) -> list[Any]:
    """The YAML documents of a compiled pipeline (empty documents dropped)."""
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as error:
        raise PipelineValidationError(f"Not valid YAML: {error}") from None


def validate_file(path: Path) -> ValidatedPipeline:
    """Validate a compiled pipeline file (see :func:`validate_documents`)."""
    try:
        return validate_documents(load_documents(path.read_text()))
    except PipelineValidationError as error:
        raise PipelineValidationError(f"{path}: {error}") from None
