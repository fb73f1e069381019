"""A KFP API client for this machine: pipeline versions, experiments and runs in a folder, each
run executed by kfp.local in a process of its own.

It answers the calls that the retraining trigger (:mod:`skinlesion.monitoring.retrain`) makes of
:class:`skinlesion.kubeflow.client.KubeflowClient` - ``pipeline_id``, ``kfp.list_pipeline_versions``
through ``call``, ``experiment_id``, ``runs`` (with the two v2beta1 filters the trigger sends) and
``create_run`` - so that on a laptop the trigger's own code decides (in flight? inside the
cooldown?) and starts the training pipeline, as it does against Kubeflow.

What differs from the server, and why:

- A version is not IR YAML but the pipeline function it was compiled from (``module:function``):
  kfp.local executes pipeline functions only (a pipeline loaded from YAML raises
  ``NotImplementedError`` in ``YamlComponent.execute``). kfp.local caches nothing unless asked,
  which is what the server's ``-retrain`` versions (compiled with caching off) do.
- ``create_run`` starts ``python -m skinlesion.kubeflow.local_client execute`` detached and
  returns the run PENDING, as the API server does; that process marks it RUNNING, runs the
  pipeline with the SubprocessRunner and ends it SUCCEEDED or FAILED (v2beta1 RuntimeState names).
- Filters: only the predicates the trigger sends are understood (``state IN`` and
  ``created_at GREATER_THAN``); any other is refused with the list of accepted ones, rather than
  ignored (an ignored filter would list runs the server would not).

The store (``local://<folder>`` as the trigger's ``kfp_host``)::

    <folder>/pipelines.json     pipelines and their versions
    <folder>/experiments.json   experiment name -> id
    <folder>/runs/<id>.json     one run: state, arguments, times, error
    <folder>/runs/<id>.log      everything the run printed
    <folder>/pipeline-root/     kfp.local's pipeline root (the runs' artifacts)
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
LOCAL_SCHEME = "local://"
FINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELED")
ACCEPTED_FILTERS = "state IN [...] and created_at GREATER_THAN <timestamp>"


class LocalKfpError(RuntimeError):
    """A call to the local KFP store was refused; the message says what is accepted."""


@dataclass(frozen=True)
class LocalKubeflowSettings:
    """Where the local store is: the trigger's ``kfp_host`` ``local://<absolute folder>``."""

    store: Path
    namespace: str = ""
    experiment: str = "skinlesion"
    service_account: str = ""
    pipeline_root: str = ""  # empty: <store>/pipeline-root

    @property
    def host(self) -> str:
        return f"{LOCAL_SCHEME}{self.store}"

    @classmethod
    def from_host(cls, host: str, namespace: str = "", experiment: str = "skinlesion") -> Any:
        """Settings for ``local://<absolute folder>``; any other form is refused."""
        path = host[len(LOCAL_SCHEME) :] if host.startswith(LOCAL_SCHEME) else ""
        if not path or not Path(path).is_absolute():
            raise LocalKfpError(
                f"Invalid local KFP host {host!r}: expected {LOCAL_SCHEME}<absolute folder>, "
                f"e.g. {LOCAL_SCHEME}/tmp/loop/kfp."
            )
        return cls(store=Path(path), namespace=namespace, experiment=experiment)

    def ui_link(self, fragment: str) -> str:
        """Where a person reads the run: its record file (there is no UI)."""
        if fragment.startswith("runs/details/"):
            return str(self.store / "runs" / f"{fragment.rsplit('/', 1)[-1]}.json")
        return str(self.store)


def is_local_host(host: str) -> bool:
    """Whether ``host`` names a local store (``local://...``)."""
    return host.startswith(LOCAL_SCHEME)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class _Page:
    pipeline_versions: list[Any] = field(default_factory=list)
    next_page_token: str = ""


class LocalKfpClient:
    """The subset of :class:`~skinlesion.kubeflow.client.KubeflowClient` the trigger uses."""

    server_version = "local"

    def __init__(self, settings: LocalKubeflowSettings, *, python: str = sys.executable) -> None:
        self.settings = settings
        self.store = settings.store
        self.python = python
        # ``latest_version`` calls ``client.kfp.list_pipeline_versions`` as on kfp.Client.
        self.kfp = SimpleNamespace(list_pipeline_versions=self._list_pipeline_versions)

    # -- plumbing ---------------------------------------------------------------------------
    def call(self, what: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one call (the same shape as KubeflowClient.call; nothing to translate here)."""
        return function(*args, **kwargs)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # The trigger step and the loop both write the store; a file lock keeps records whole.
        self.store.mkdir(parents=True, exist_ok=True)
        with (self.store / ".lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _read(self, name: str, default: Any) -> Any:
        path = self.store / name
        return json.loads(path.read_text()) if path.is_file() else default

    def _write(self, name: str, value: Any) -> None:
        path = self.store / name
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(path.suffix + ".tmp")
        temporary.write_text(json.dumps(value, indent=2) + "\n")
        temporary.replace(path)

    # -- pipelines --------------------------------------------------------------------------
    def upload(self, pipeline_name: str, version_name: str, source: str) -> Any:
        """Add version ``version_name`` (``module:function``) of ``pipeline_name``; return its ref."""
        from skinlesion.kubeflow.client import PipelineVersionRef

        module, _, function = source.partition(":")
        if not module or not function:
            raise LocalKfpError(
                f"Invalid pipeline source {source!r}: expected module:function, e.g. "
                "pipelines.training:training_pipeline."
            )
        with self._locked():
            pipelines = self._read("pipelines.json", {})
            pipeline = pipelines.setdefault(
                pipeline_name, {"pipeline_id": f"local-{uuid.uuid4().hex[:8]}", "versions": []}
            )
            for version in pipeline["versions"]:
                if version["display_name"] == version_name:
                    return PipelineVersionRef(
                        pipeline["pipeline_id"],
                        version["pipeline_version_id"],
                        version_name,
                        created=False,
                    )
            version = {
                "pipeline_version_id": f"local-v-{uuid.uuid4().hex[:8]}",
                "display_name": version_name,
                "created_at": _now(),
                "source": source,
            }
            pipeline["versions"].append(version)
            self._write("pipelines.json", pipelines)
        log.info("local KFP: uploaded %s version %s (%s)", pipeline_name, version_name, source)
        return PipelineVersionRef(
            pipeline["pipeline_id"], version["pipeline_version_id"], version_name, created=True
        )

    def pipeline_id(self, name: str) -> str | None:
        """The id of pipeline ``name``, or None."""
        pipeline = self._read("pipelines.json", {}).get(name)
        return str(pipeline["pipeline_id"]) if pipeline else None

    def _list_pipeline_versions(
        self, pipeline_id: str, page_token: str = "", page_size: int = 100, sort_by: str = ""
    ) -> _Page:
        for pipeline in self._read("pipelines.json", {}).values():
            if pipeline["pipeline_id"] == pipeline_id:
                versions = [SimpleNamespace(**v) for v in pipeline["versions"]]
                if sort_by == "created_at desc":
                    versions.sort(key=lambda v: v.created_at, reverse=True)
                return _Page(pipeline_versions=versions)
        raise LocalKfpError(f"No pipeline with id {pipeline_id} in {self.store}.")

    def _version(self, version_id: str) -> dict[str, Any]:
        for pipeline in self._read("pipelines.json", {}).values():
            for version in pipeline["versions"]:
                if version["pipeline_version_id"] == version_id:
                    return dict(version)
        raise LocalKfpError(f"No pipeline version with id {version_id} in {self.store}.")

    # -- experiments and runs ---------------------------------------------------------------
    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created when missing."""
        with self._locked():
            experiments = self._read("experiments.json", {})
            if name not in experiments:
                experiments[name] = f"local-e-{uuid.uuid4().hex[:8]}"
                self._write("experiments.json", experiments)
            return str(experiments[name])

    def get_run(self, run_id: str) -> Any:
        """One run, as the API lists it (``state``, ``created_at``, ``error``, ...)."""
        path = self.store / "runs" / f"{run_id}.json"
        if not path.is_file():
            raise LocalKfpError(f"No run {run_id} in {self.store}.")
        return _as_run(json.loads(path.read_text()))

    def runs(self, experiment_id: str, *, filter: str = "", sort_by: str = "") -> list[Any]:
        """The runs of the experiment that match ``filter`` (a v2beta1 Filter as JSON)."""
        accept = _run_filter(filter)
        records = [
            json.loads(path.read_text()) for path in sorted((self.store / "runs").glob("*.json"))
        ]
        found = [_as_run(r) for r in records if r["experiment_id"] == experiment_id and accept(r)]
        if sort_by:
            if sort_by not in ("created_at desc", "created_at"):
                raise LocalKfpError(
                    f"Invalid sort_by {sort_by!r}: accepted 'created_at' or 'created_at desc'."
                )
            found.sort(key=lambda r: r.created_at, reverse=sort_by.endswith("desc"))
        return found

    def create_run(
        self,
        *,
        experiment_id: str,
        name: str,
        version: Any,
        arguments: dict[str, Any],
        pipeline_root: str,
        service_account: str,
    ) -> Any:
        """Record the run PENDING and start it detached; return it (as the API server does)."""
        source = self._version(version.version_id)["source"]
        run_id = f"local-run-{uuid.uuid4().hex[:12]}"
        record = {
            "run_id": run_id,
            "display_name": name,
            "experiment_id": experiment_id,
            "pipeline_version_reference": {
                "pipeline_id": version.pipeline_id,
                "pipeline_version_id": version.version_id,
            },
            "source": source,
            "arguments": arguments,
            "pipeline_root": pipeline_root or str(self.store / "pipeline-root"),
            "service_account": service_account,
            "state": "PENDING",
            "created_at": _now(),
            "finished_at": "",
            "error": "",
            "pid": 0,
        }
        with self._locked():
            self._write(f"runs/{run_id}.json", record)
        log_path = self.store / "runs" / f"{run_id}.log"
        with log_path.open("ab") as run_log:
            process = subprocess.Popen(
                [self.python, "-m", __name__, "execute", str(self.store), run_id],
                stdin=subprocess.DEVNULL,
                stdout=run_log,
                stderr=subprocess.STDOUT,
                # The run outlives the trigger step's process, as a KFP run outlives its caller.
                start_new_session=True,
                cwd=_source_root(source),
                env=_run_environment(source),
            )
        self._update(run_id, pid=process.pid)
        log.info("local KFP: run %s started (pid %d, log %s)", run_id, process.pid, log_path)
        return self.get_run(run_id)

    def wait(self, run_id: str, timeout: float, poll: float = 1.0) -> Any:
        """Wait until the run ends; return it. A run whose process died is marked FAILED."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.get_run(run_id)
            if run.state in FINAL_STATES:
                return run
            if run.pid and not _alive(run.pid):
                time.sleep(poll)  # the process may have written its end just now
                run = self.get_run(run_id)
                if run.state in FINAL_STATES:
                    return run
                self._update(
                    run_id,
                    state="FAILED",
                    finished_at=_now(),
                    error=f"the run's process {run.pid} ended without recording an end",
                )
                return self.get_run(run_id)
            if time.monotonic() > deadline:
                raise LocalKfpError(
                    f"Run {run_id} has not ended after {timeout:.0f} s (state {run.state}); "
                    f"its log: {self.store / 'runs' / f'{run_id}.log'}"
                )
            time.sleep(poll)

    def _update(self, run_id: str, **changes: Any) -> None:
        with self._locked():
            record = self._read(f"runs/{run_id}.json", None)
            if record is None:
                raise LocalKfpError(f"No run {run_id} in {self.store}.")
            record.update(changes)
            self._write(f"runs/{run_id}.json", record)


def _alive(pid: int) -> bool:
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)  # our child: reap it if it ended
        return finished == 0
    except ChildProcessError:
        pass  # not our child (another process started it): ask the kernel
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _as_run(record: dict[str, Any]) -> Any:
    run = SimpleNamespace(**record)
    run.created_at = _parse_time(record["created_at"])
    run.pipeline_version_reference = SimpleNamespace(**record["pipeline_version_reference"])
    return run


def _run_filter(filter_json: str) -> Callable[[dict[str, Any]], bool]:
    """A predicate for the filters the trigger sends; others are refused, naming the accepted."""
    if not filter_json:
        return lambda record: True
    try:
        predicates = json.loads(filter_json)["predicates"]
    except (ValueError, KeyError, TypeError):
        raise LocalKfpError(
            f"Invalid run filter {filter_json!r}: expected a v2beta1 Filter as JSON with "
            f"predicates; accepted: {ACCEPTED_FILTERS}."
        ) from None
    states: set[str] | None = None
    since: datetime | None = None
    for predicate in predicates:
        key, operation = predicate.get("key"), predicate.get("operation")
        if key == "state" and operation == "IN" and "string_values" in predicate:
            states = set(predicate["string_values"]["values"])
        elif key == "created_at" and operation == "GREATER_THAN" and "timestamp_value" in predicate:
            since = _parse_time(predicate["timestamp_value"])
        else:
            raise LocalKfpError(
                f"Unsupported run filter predicate {predicate!r}: the local store understands "
                f"{ACCEPTED_FILTERS}."
            )

    def accept(record: dict[str, Any]) -> bool:
        if states is not None and record["state"] not in states:
            return False
        return since is None or _parse_time(record["created_at"]) > since

    return accept


def _source_root(source: str) -> str:
    """The folder the pipeline's module is imported from (the repository root)."""
    import importlib.util

    module = source.partition(":")[0]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        raise LocalKfpError(f"Cannot find the pipeline module {module!r} of {source!r}.")
    # <root>/pipelines/training.py for pipelines.training: up one folder per dotted part.
    return str(Path(spec.origin).resolve().parents[len(module.split(".")) - 1])


def _run_environment(source: str) -> dict[str, str]:
    root = _source_root(source)
    environment = dict(os.environ)
    # A trigger step runs inside kfp's executor, which sets _KFP_RUNTIME=true: kfp.dsl then
    # leaves out the authoring API (PipelineTask, ...) that building a pipeline needs.
    environment.pop("_KFP_RUNTIME", None)
    paths = [root, *filter(None, environment.get("PYTHONPATH", "").split(os.pathsep))]
    environment["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return environment


def connect_local(settings: LocalKubeflowSettings) -> LocalKfpClient:
    """The client for a local store (the counterpart of :func:`skinlesion.kubeflow.client.connect`)."""
    return LocalKfpClient(settings)


def load_pipeline(source: str) -> Any:
    """The pipeline function ``module:function``, built without retries (a local job fails on
    its data, parameters or code, and would fail the same way again)."""
    from skinlesion.kubeflow.tasks import NO_RETRY, retry_policy

    module_name, _, function = source.partition(":")
    with retry_policy(NO_RETRY):
        module = importlib.import_module(module_name)
        # @dsl.pipeline builds the graph when the module executes: execute it under the policy.
        module = importlib.reload(module)
    return getattr(module, function)


def typed_arguments(pipeline: Any, arguments: dict[str, Any]) -> dict[str, Any]:
    """The run's arguments as the pipeline declares them: a whole number for a Float input
    becomes a float, as the API server reads runtime parameters by the spec's types (the
    trigger's arguments crossed a protobuf Struct, where every number is a double, and were
    made ints again when whole). Unknown names are refused, naming the accepted ones."""
    inputs = pipeline.component_spec.inputs or {}
    unknown = sorted(set(arguments) - set(inputs))
    if unknown:
        raise LocalKfpError(
            f"Unknown arguments {unknown} for pipeline {pipeline.name}. Accepted: "
            f"{', '.join(sorted(inputs))}."
        )
    typed = dict(arguments)
    for name, value in arguments.items():
        if inputs[name].type == "Float" and isinstance(value, int) and not isinstance(value, bool):
            typed[name] = float(value)
    return typed


def execute(store: Path, run_id: str) -> int:
    """Run one recorded run with kfp.local; record RUNNING, then SUCCEEDED or FAILED."""
    from kfp import local

    client = LocalKfpClient(LocalKubeflowSettings(store=store))
    run = client.get_run(run_id)
    client._update(run_id, state="RUNNING", started_at=_now())
    root = Path(run.pipeline_root)
    before = set(root.iterdir()) if root.is_dir() else set()
    try:
        pipeline = load_pipeline(run.source)
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
        pipeline(**typed_arguments(pipeline, run.arguments))
    except Exception as error:  # every failure ends the run FAILED, with why
        log.exception("local KFP run %s failed", run_id)
        client._update(
            run_id,
            state="FAILED",
            finished_at=_now(),
            error=str(error)[:2000],
            **_run_dir(root, before),
        )
        return 1
    client._update(run_id, state="SUCCEEDED", finished_at=_now(), **_run_dir(root, before))
    return 0


def _run_dir(root: Path, before: set[Path]) -> dict[str, str]:
    # kfp.local names the run's folder itself (<pipeline>-<timestamp>): the one that is new.
    new = sorted(set(root.iterdir()) - before if root.is_dir() else set(), key=os.path.getmtime)
    return {"run_dir": str(new[-1])} if new else {}


def main(argv: list[str] | None = None) -> int:
    """``python -m skinlesion.kubeflow.local_client execute <store> <run id>``."""
    parser = argparse.ArgumentParser(description="Execute one run of the local KFP store.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("execute", help="run a recorded run with kfp.local")
    run.add_argument("store", type=Path)
    run.add_argument("run_id")
    args = parser.parse_args(argv)
    from skinlesion.logs import configure_logging

    configure_logging()
    return execute(args.store, args.run_id)


if __name__ == "__main__":
    sys.exit(main())
