"""The KFP backend releases the compiled YAML can target, and what each one accepts.

Sources (kubeflow/pipelines at each tag): the API server parses the pipeline spec with
``protojson.Unmarshal`` (unknown fields rejected, HTTP 400) and silently drops a platform-spec
document that does not parse (``IsPlatformSpecWithKubernetesConfig`` returns false,
backend/src/apiserver/template/v2_template.go), so a field the server does not know costs every
pod its Kubernetes settings. ``SinglePlatformSpec.pipelineConfig`` exists from 2.4 (empty there);
2.5-2.16 call the TTL ``resource_ttl`` but never read it; 2.17 reads ``resource_ttl_on_completion``
(backend/src/v2/compiler/argocompiler/argo.go). ``ConfigMapAsEnv.optional`` exists from 2.15;
older drivers parse the executor config strictly (jsonpb) and fail the task on it;
``ConfigMapAsEnv.config_map_name_parameter`` exists from 2.5 (kubernetes_executor_config.proto).
"""

from __future__ import annotations

from dataclasses import dataclass

# Kubeflow 1.9 ships KFP 2.2.0 (1.9.1: 2.3.0), 1.10 ships 2.4/2.5, the 26.03 platform 2.16.0.
SUPPORTED_BACKENDS: tuple[str, ...] = (
    "2.2.0",
    "2.3.0",
    "2.4.1",
    "2.5.0",
    "2.14.0",
    "2.15.0",
    "2.16.0",
    "2.17.0",
)
DEFAULT_BACKEND = SUPPORTED_BACKENDS[0]


class UnsupportedBackendError(ValueError):
    """A KFP backend release this project does not compile for."""


def _key(version: str) -> tuple[int, int, int]:
    major, minor, patch = (int(part) for part in version.split("."))
    return major, minor, patch


def parse_version(text: str) -> tuple[int, int, int]:
    """``2.5.0`` (or ``v2.5.0``, ``2.5.0-rc.1``) as a tuple; raise on anything else."""
    core = text.strip().removeprefix("v").split("-")[0].split("+")[0]
    parts = core.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise UnsupportedBackendError(
            f"Invalid KFP version {text!r}. Accepted: a release such as 2.5.0."
        )
    return _key(core)


@dataclass(frozen=True)
class BackendTarget:
    """What one KFP backend release accepts in the compiled YAML."""

    version: str

    @property
    def key(self) -> tuple[int, int, int]:
        return _key(self.version)

    @property
    def minor(self) -> tuple[int, int]:
        return self.key[:2]

    @property
    def ttl_field(self) -> str | None:
        """The ``pipelineConfig`` field whose TTL this server applies, or None (none applied)."""
        return "resourceTtlOnCompletion" if self.key >= (2, 17, 0) else None

    @property
    def has_pipeline_config(self) -> bool:
        return self.key >= (2, 4, 0)

    @property
    def config_map_optional(self) -> bool:
        """Whether ``configMapAsEnv[].optional`` exists (and is honoured)."""
        return self.key >= (2, 15, 0)

    @property
    def config_map_name_parameter(self) -> bool:
        """Whether ``configMapAsEnv[].configMapNameParameter`` exists."""
        return self.key >= (2, 5, 0)

    def matches(self, server_version: str) -> bool:
        """Whether a server reporting ``server_version`` is this release's line (same minor)."""
        return parse_version(server_version)[:2] == self.minor


def target(version: str) -> BackendTarget:
    """The target for ``version``; raise naming the supported releases otherwise."""
    if version not in SUPPORTED_BACKENDS:
        raise UnsupportedBackendError(
            f"Unsupported KFP backend {version!r}. Supported: {', '.join(SUPPORTED_BACKENDS)}."
        )
    return BackendTarget(version)


def target_for_server(server_version: str) -> BackendTarget | None:
    """The supported target of the same minor release as ``server_version``, if any."""
    minor = parse_version(server_version)[:2]
    for version in reversed(SUPPORTED_BACKENDS):
        if _key(version)[:2] == minor:
            return BackendTarget(version)
    return None
