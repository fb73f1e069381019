"""``make submit``: compile, upload a pipeline version named by the commit, start a run, wait.

The version name is ``<commit>-<spec digest>`` (``<commit>-dirty-<digest>`` for uncommitted
changes): one commit compiles to one spec per image and caching choice, KFP wants version names
unique per pipeline, and the digest makes a resubmission of the same spec reuse its version.
"""

from __future__ import annotations

import enum
import logging
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from skinlesion.kubeflow.client import KubeflowClient, PipelineVersionRef
from skinlesion.kubeflow.compiling import (
    CompiledPipeline,
    CompileOptions,
    check_pipeline_root,
    compile_pipeline,
)
from skinlesion.kubeflow.discovery import PipelineEntry
from skinlesion.kubeflow.images import ImageSetError, resolve_image_set
from skinlesion.kubeflow.params import EnvironmentParams, ParamsError, check_arguments
from skinlesion.kubeflow.settings import KubeflowSettings
from skinlesion.kubeflow.targets import (
    SUPPORTED_BACKENDS,
    UnsupportedBackendError,
    parse_version,
    target,
    target_for_server,
)
from skinlesion.monitoring.retrain import RETRAIN_SUFFIX

log = logging.getLogger(__name__)

DEFAULT_UPLOAD_DIR = Path("build/pipelines")
COMMIT_INPUT = "git_commit"  # filled in with the commit when a pipeline has this input
# The pipeline that the monitoring pipeline retrains (skinlesion.monitoring.retrain), and the
# suffix of its retraining versions: compiled with caching off, because the KFP v2beta1 API has
# no per-run cache switch (backend/api/v2beta1/run.proto at 2.2.0 through 2.17.0) and a retrain
# reads new data under the same data_uri, where a cached preprocess would reuse the old split.
RETRAINED_PIPELINE = "training"


@dataclass(frozen=True)
class SourceRevision:
    """The commit the pipeline was compiled from."""

    commit: str  # full SHA; empty outside a git checkout
    dirty: bool  # tracked files differ from the commit

    @property
    def short(self) -> str:
        return self.commit[:12] if self.commit else "nogit"

    @property
    def image_tag(self) -> str:
        """The tag ``make images`` gives this checkout (mk/containers.mk IMAGE_TAG)."""
        return self.short + ("-dirty" if self.dirty else "")


def source_revision(repo: Path = Path(".")) -> SourceRevision:
    """The checkout's commit and whether tracked files have uncommitted changes."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30, check=True
        )
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        log.warning("not a git checkout: the pipeline version is named 'nogit-<digest>'")
        return SourceRevision(commit="", dirty=False)
    return SourceRevision(commit=commit, dirty=dirty)


def version_name(revision: SourceRevision, digest: str) -> str:
    """``<commit12>-<digest8>``, with ``-dirty`` after the commit for uncommitted changes."""
    dirty = "-dirty" if revision.dirty else ""
    return f"{revision.short}{dirty}-{digest[:8]}"


@dataclass(frozen=True)
class PreparedPipeline:
    """A pipeline compiled for one environment, with checked arguments, ready to upload."""

    entry: PipelineEntry
    compiled: CompiledPipeline
    path: Path
    arguments: dict[str, Any]
    revision: SourceRevision

    @property
    def version_name(self) -> str:
        return version_name(self.revision, self.compiled.digest)

    @property
    def description(self) -> str:
        state = " (uncommitted changes)" if self.revision.dirty else ""
        return (
            f"git commit {self.revision.commit or 'unknown'}{state}; "
            f"spec sha256 {self.compiled.digest}"
        )


def compile_options_for(
    params: EnvironmentParams,
    overrides: Mapping[str, Any] | None = None,
    *,
    revision: SourceRevision | None = None,
) -> CompileOptions:
    """The environment's ``compile:`` section with ``overrides`` (non-None values) on top.

    The image set comes from ``image_registry`` or ``image_repositories`` (the params file or an
    override), with ``image_tag`` or else the checkout's tag (the commit, ``-dirty`` marked).
    """
    values = params.compile_options()
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    registry = values.pop("image_registry", None)
    repositories = values.pop("image_repositories", None)
    tag = values.pop("image_tag", None) or (revision or source_revision()).image_tag
    if repositories is not None and not isinstance(repositories, Mapping):
        raise ParamsError(
            f"{params.path}: compile.image_repositories must map pipeline, training and "
            "inference to repository URLs."
        )
    try:
        images = resolve_image_set(tag=str(tag), registry=registry, repositories=repositories)
        return CompileOptions(images=images, **values)
    except ImageSetError as error:
        raise ParamsError(f"{params.path}: compile: {error}") from None
    except TypeError as error:
        raise ParamsError(f"{params.path}: compile: {error}") from None


def prepare(
    entry: PipelineEntry,
    params: EnvironmentParams,
    options: CompileOptions,
    *,
    overrides: Mapping[str, Any] | None = None,
    revision: SourceRevision | None = None,
    upload_dir: Path = DEFAULT_UPLOAD_DIR,
    file_suffix: str = "",
) -> PreparedPipeline:
    """Compile ``entry`` with ``options``, write it under ``upload_dir/<env>/``, check arguments."""
    revision = revision or source_revision()
    compiled = compile_pipeline(entry, options)
    arguments = params.arguments(entry.name)
    arguments.update(overrides or {})
    inputs = compiled.validated.inputs()
    if COMMIT_INPUT in inputs and not arguments.get(COMMIT_INPUT):
        arguments[COMMIT_INPUT] = revision.commit
    checked = check_arguments(arguments, inputs, entry.name)
    if checked.get("backend") == "local" and not options.jobs_in_pod:
        log.warning(
            "backend=local on Kubeflow runs the jobs inside the step pods; set compile.jobs_in_pod"
            " so those pods get the CPU and memory the jobs need"
        )
    path = compiled.write(upload_dir / params.env / f"{entry.name}{file_suffix}.yaml")
    return PreparedPipeline(entry, compiled, path, checked, revision)


def prepare_retraining(
    entry: PipelineEntry,
    params: EnvironmentParams,
    options: CompileOptions,
    *,
    revision: SourceRevision | None = None,
    upload_dir: Path = DEFAULT_UPLOAD_DIR,
) -> PreparedPipeline:
    """``entry`` compiled with caching off on every task, for the runs that retraining starts."""
    return prepare(
        entry,
        params,
        replace(options, enable_caching=False),
        revision=revision,
        upload_dir=upload_dir,
        file_suffix=RETRAIN_SUFFIX,
    )


def upload_retraining_version(
    client: KubeflowClient, prepared: PreparedPipeline
) -> PipelineVersionRef:
    """Upload ``prepared`` (from :func:`prepare_retraining`) as ``<version>-retrain``."""
    check_server_version(client.server_version, prepared.compiled.kfp_backend)
    version = client.ensure_pipeline_version(
        str(prepared.path),
        prepared.compiled.pipeline_name,
        prepared.version_name + RETRAIN_SUFFIX,
        prepared.description + "; caching off on every task, for runs started by retraining",
    )
    log.info("retraining version: %s", version.version_name)
    return version


@dataclass(frozen=True)
class SubmittedRun:
    run_id: str
    url: str
    experiment_id: str
    version: PipelineVersionRef


def default_run_name(prepared: PreparedPipeline, env: str, now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{prepared.entry.name} {env} {prepared.revision.short} {stamp}"


class BackendMismatchError(ValueError):
    """The pipeline was compiled for another KFP release than the server runs."""


def check_server_version(server_version: str, kfp_backend: str) -> None:
    """Raise if the server reports a release of another line than ``kfp_backend``."""
    if server_version in ("", "unknown"):
        log.warning(
            "the KFP API does not report its version (healthz tag_name %r); submitting the "
            "pipeline compiled for KFP %s unchecked",
            server_version,
            kfp_backend,
        )
        return
    try:
        same = target(kfp_backend).matches(server_version)
    except UnsupportedBackendError:
        same = False
    if not same:
        suggestion = target_for_server(server_version) if _parses(server_version) else None
        hint = (
            f"compile for it: KFP_BACKEND={suggestion.version}"
            if suggestion
            else f"supported: {', '.join(SUPPORTED_BACKENDS)}"
        )
        raise BackendMismatchError(
            f"The KFP server runs {server_version}, but the pipeline was compiled for KFP "
            f"{kfp_backend}; {hint}."
        )


def _parses(version: str) -> bool:
    try:
        parse_version(version)
    except UnsupportedBackendError:
        return False
    return True


def submit(
    client: KubeflowClient,
    prepared: PreparedPipeline,
    settings: KubeflowSettings,
    *,
    run_name: str,
) -> SubmittedRun:
    """Upload the pipeline version (unless there) and create a run in the experiment."""
    if settings.pipeline_root:
        check_pipeline_root(settings.pipeline_root)
    check_server_version(client.server_version, prepared.compiled.kfp_backend)
    experiment_id = client.experiment_id(settings.experiment)
    version = client.ensure_pipeline_version(
        str(prepared.path),
        prepared.compiled.pipeline_name,
        prepared.version_name,
        prepared.description,
    )
    run = client.create_run(
        experiment_id=experiment_id,
        name=run_name,
        version=version,
        arguments=prepared.arguments,
        pipeline_root=settings.pipeline_root,
        service_account=settings.service_account,
    )
    run_id = str(run.run_id)
    url = settings.ui_link(f"runs/details/{run_id}")
    log.info("run %s created: %s", run_name, url)
    return SubmittedRun(run_id=run_id, url=url, experiment_id=experiment_id, version=version)


class RunOutcome(enum.StrEnum):
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    SKIPPED = "SKIPPED"
    TIMED_OUT = "TIMED_OUT"

    @property
    def exit_code(self) -> int:
        return {"SUCCEEDED": 0, "FAILED": 1, "SKIPPED": 1, "CANCELED": 3, "TIMED_OUT": 4}[
            self.value
        ]


# KFP's RuntimeState values that end a run.
TERMINAL_STATES = {"SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"}


@dataclass(frozen=True)
class RunResult:
    outcome: RunOutcome
    state: str  # the last state KFP reported
    error: str  # the run's error message, when it has one
    waited_seconds: float


def _error_message(run: Any) -> str:
    error = getattr(run, "error", None)
    if error is None:
        return ""
    return str(getattr(error, "message", None) or error)


def wait_for_run(
    client: KubeflowClient,
    run_id: str,
    *,
    timeout_seconds: float = 12 * 3600,
    poll_seconds: float = 15,
    cancel_grace_seconds: float = 300,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> RunResult:
    """Poll the run until it ends; a cancelled run ends the wait.

    ``kfp.Client.wait_for_run_completion`` does not treat CANCELED as an end and polls a
    cancelled run until its timeout; here CANCELED ends the wait, and so does a run stuck in
    CANCELING for ``cancel_grace_seconds`` (its workflow was deleted under it).
    """
    started = clock()
    last_state = ""
    canceling_since: float | None = None
    while True:
        run = client.get_run(run_id)
        state = str(getattr(run, "state", "") or "RUNTIME_STATE_UNSPECIFIED")
        now = clock()
        if state != last_state:
            log.info("run %s: %s", run_id, state)
            last_state = state
        if state in TERMINAL_STATES:
            return RunResult(RunOutcome(state), state, _error_message(run), now - started)
        if state == "CANCELING":
            canceling_since = now if canceling_since is None else canceling_since
            if now - canceling_since >= cancel_grace_seconds:
                log.warning("run %s still CANCELING after %.0f s", run_id, now - canceling_since)
                return RunResult(RunOutcome.CANCELED, state, _error_message(run), now - started)
        else:
            canceling_since = None
        if now - started >= timeout_seconds:
            return RunResult(RunOutcome.TIMED_OUT, state, "", now - started)
        sleep(poll_seconds)


def with_caching(options: CompileOptions, enable_caching: bool | None) -> CompileOptions:
    """``options`` with a caching override, when one is given."""
    return options if enable_caching is None else replace(options, enable_caching=enable_caching)
