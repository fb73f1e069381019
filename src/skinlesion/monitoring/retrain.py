"""Retraining after an alarm: start the training pipeline through the KFP API, and keep a record.

On Kubeflow the monitoring pipeline's pod signs in with its service-account token
(``kfp_host="in-cluster"``: the in-cluster API, the pod's namespace, auth ``sa-token``, the
token the ``access-ml-pipeline`` PodDefault projects onto pods labelled
``access-ml-pipeline: "true"``) and starts a run of the newest retraining version of the
training pipeline: ``<version>-retrain``, which ``make submit`` / ``make schedule`` upload
compiled with caching off (the KFP v2beta1 API has no per-run cache switch, so a cached
preprocess would otherwise reuse the old split of a ``data_uri`` whose content changed), with
``data_uri`` set to the current data and the other arguments as given. Any other host works the
same with the credentials of :mod:`skinlesion.kubeflow.settings`.

An alarm fires every hour while drift lasts, so before creating a run the trigger lists the
training pipeline's runs in the experiment and skips (status ``skipped``, with the reason) when
one is PENDING or RUNNING, or when the newest was created inside the cooldown (24 h by default).

On this machine, ``kfp_host="local://<folder>"`` makes the same code start the run through
:class:`skinlesion.kubeflow.local_client.LocalKfpClient`: versions, experiments and runs kept in
that folder, the run executed by kfp.local in a process of its own; the in-flight and cooldown
checks are the ones above (``make demo-loop`` shows it, docs/monitoring.md "The whole loop").

With no host at all nothing is started: the request is recorded in
``<local root>/monitoring/retraining_requests.jsonl`` (and returned), which is what a person
(``make demo DATA=<the current data>``) or a test acts on.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

IN_CLUSTER = "in-cluster"
SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_PIPELINE = "skinlesion-training"
REQUESTS_FILE = "retraining_requests.jsonl"
# The suffix of the training pipeline's versions compiled with caching off, which `make submit`
# and `make schedule` upload (skinlesion.kubeflow.submit) and retraining starts. Defined here, in a
# module a running component can import without kfp's compiler.
RETRAIN_SUFFIX = "-retrain"
DEFAULT_COOLDOWN_HOURS = 24.0
# KFP v2beta1 RuntimeState values of a run that has not ended yet and may still train.
IN_FLIGHT_STATES = ("PENDING", "RUNNING")


class RetrainingError(RuntimeError):
    """The training pipeline could not be started; the message says what to fix."""


@dataclass(frozen=True)
class RetrainingRequest:
    """A request to retrain, and what came of it."""

    reason: str
    pipeline: str
    arguments: dict[str, Any]
    requested_at: str
    # "submitted" (a run was created), "skipped" (a training run is in flight or inside the
    # cooldown; skip_reason says which) or "recorded" (no KFP host configured)
    status: str
    kfp_host: str = ""
    run_id: str = ""
    run_url: str = ""
    pipeline_version: str = ""
    skip_reason: str = ""
    blocking_run_id: str = ""  # the training run that caused the skip

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def kubeflow_settings(
    kfp_host: str,
    namespace: str = "",
    experiment: str = "skinlesion",
    *,
    namespace_file: Path = SA_NAMESPACE_FILE,
    environ: Mapping[str, str] | None = None,
) -> Any:
    """KubeflowSettings for ``kfp_host``: None for "", the in-cluster API for "in-cluster",
    a local store (:class:`~skinlesion.kubeflow.local_client.LocalKubeflowSettings`) for
    ``local://<folder>``.

    In the cluster the run is started with the trigger pod's own service account (the pipeline
    sets ``SKINLESION_RUN_SERVICE_ACCOUNT`` from ``spec.serviceAccountName``), so a retraining
    run has the AWS role of the monitoring run that asked for it.
    """
    from skinlesion.kubeflow.local_client import LocalKubeflowSettings, is_local_host
    from skinlesion.kubeflow.settings import RUN_SERVICE_ACCOUNT_ENV, KubeflowSettings

    if not kfp_host:
        return None
    if is_local_host(kfp_host):
        return LocalKubeflowSettings.from_host(kfp_host, namespace, experiment)
    if kfp_host == IN_CLUSTER:
        if not namespace and namespace_file.is_file():
            namespace = namespace_file.read_text().strip()
        environ = os.environ if environ is None else environ
        return KubeflowSettings.in_cluster(
            namespace, experiment, service_account=environ.get(RUN_SERVICE_ACCOUNT_ENV, "")
        )
    return KubeflowSettings(host=kfp_host, namespace=namespace, experiment=experiment)


def training_arguments(data_uri: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The run's arguments: ``extra`` with ``data_uri`` on top (when given).

    KFP passes a dict parameter as a protobuf Struct, which turns every number into a float;
    whole floats go back to ints so that integer inputs (epochs, batch_size) type-check.
    """
    arguments: dict[str, Any] = {}
    for name, value in (extra or {}).items():
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        arguments[str(name)] = value
    if data_uri:
        arguments["data_uri"] = data_uri
    if "data_uri" not in arguments:
        raise RetrainingError(
            "No data_uri to retrain on: pass the training data's URI (data_uri) to the "
            "monitoring pipeline or in training_arguments."
        )
    return arguments


def latest_version(client: Any, pipeline_name: str, version_name: str = "") -> Any:
    """The pipeline version to run: ``version_name``, else the newest ``*-retrain`` version."""
    from skinlesion.kubeflow.client import PipelineVersionRef

    pipeline_id = client.pipeline_id(pipeline_name)
    if pipeline_id is None:
        raise RetrainingError(
            f"No pipeline named {pipeline_name} is visible in namespace "
            f"{client.settings.namespace or '(none)'}: upload it first (make submit or make "
            "schedule)."
        )
    versions: list[Any] = []
    token = ""
    while True:
        page = client.call(
            f"list versions of {pipeline_name}",
            client.kfp.list_pipeline_versions,
            pipeline_id=pipeline_id,
            page_token=token,
            page_size=100,
            sort_by="created_at desc",
        )
        versions.extend(page.pipeline_versions or [])
        token = page.next_page_token or ""
        if not token:
            break
    if version_name:
        versions = [v for v in versions if v.display_name == version_name]
    else:
        versions = [v for v in versions if str(v.display_name).endswith(RETRAIN_SUFFIX)]
    if not versions:
        wanted = (
            f"version {version_name}"
            if version_name
            else f"retraining version (<version>{RETRAIN_SUFFIX}, compiled with caching off)"
        )
        raise RetrainingError(
            f"Pipeline {pipeline_name} has no {wanted} to run: upload one with make submit "
            "or make schedule."
        )
    # Newest by creation time; of equal times the last listed (the most recent upload).
    newest = max(enumerate(versions), key=lambda item: (str(item[1].created_at), item[0]))[1]
    return PipelineVersionRef(
        pipeline_id, str(newest.pipeline_version_id), str(newest.display_name), created=False
    )


def _created(run: Any) -> datetime:
    created = getattr(run, "created_at", None)
    if isinstance(created, datetime):
        return created if created.tzinfo else created.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(created).replace("Z", "+00:00"))


def _pipeline_of(run: Any) -> str:
    reference = getattr(run, "pipeline_version_reference", None)
    return str(getattr(reference, "pipeline_id", "") or "")


def blocking_run(
    client: Any,
    *,
    experiment_id: str,
    pipeline_id: str,
    cooldown: timedelta,
    now: datetime,
) -> tuple[str, str] | None:
    """A training run that forbids a new one, as (run id, reason); None when one may start.

    Two list calls filtered by the server (state IN PENDING/RUNNING; created_at after the
    cooldown's start), each narrowed here to the training pipeline's runs: the v2beta1 API
    cannot filter runs by pipeline (backend/src/apiserver/model/run.go, the run filter keys).
    """
    in_flight = [
        run
        for run in client.runs(
            experiment_id,
            filter=_filter("state", "IN", {"string_values": {"values": list(IN_FLIGHT_STATES)}}),
            sort_by="created_at desc",
        )
        if _pipeline_of(run) == pipeline_id
    ]
    if in_flight:
        run = in_flight[0]
        return str(run.run_id), (
            f"training run {run.run_id} is {run.state} (created {_created(run).isoformat()}); "
            "not starting a second one"
        )
    if cooldown <= timedelta(0):
        return None
    since = now - cooldown
    recent = [
        run
        for run in client.runs(
            experiment_id,
            filter=_filter(
                "created_at",
                "GREATER_THAN",
                {"timestamp_value": since.strftime("%Y-%m-%dT%H:%M:%SZ")},
            ),
            sort_by="created_at desc",
        )
        if _pipeline_of(run) == pipeline_id
    ]
    if recent:
        run = max(recent, key=_created)
        created = _created(run)
        hours = cooldown.total_seconds() / 3600
        return str(run.run_id), (
            f"training run {run.run_id} was created at {created.isoformat()}, inside the "
            f"{hours:g} h cooldown (a new one may start after "
            f"{(created + cooldown).isoformat(timespec='seconds')})"
        )
    return None


def _filter(key: str, operation: str, value: dict[str, Any]) -> str:
    # The v2beta1 Filter proto as JSON (backend/api/v2beta1/filter.proto), which the server
    # parses with jsonpb (backend/src/apiserver/server/list_request_util.go, parseAPIFilter).
    return json.dumps({"predicates": [{"key": key, "operation": operation, **value}]})


def request_retraining(
    *,
    reason: str,
    data_uri: str,
    arguments: Mapping[str, Any] | None = None,
    kubeflow: Any = None,
    record_dir: Path | None = None,
    pipeline_name: str = DEFAULT_PIPELINE,
    version_name: str = "",
    cooldown_hours: float = DEFAULT_COOLDOWN_HOURS,
    connect: Callable[[Any], Any] | None = None,
    now: datetime | None = None,
) -> RetrainingRequest:
    """Start the training pipeline (when ``kubeflow`` settings are given) and record it.

    No run is started (status ``skipped``) while a training run of the experiment is PENDING or
    RUNNING, or when the newest was created less than ``cooldown_hours`` ago (0: no cooldown).
    ``record_dir``: append the request to ``retraining_requests.jsonl`` there (None: no
    record file). ``connect``: builds the KFP client from the settings (default
    :func:`skinlesion.kubeflow.client.connect`, or the local store's client for
    :class:`~skinlesion.kubeflow.local_client.LocalKubeflowSettings`).
    """
    if cooldown_hours < 0:
        raise RetrainingError(
            f"Invalid cooldown_hours {cooldown_hours}: hours >= 0 (0 turns the cooldown off)."
        )
    run_arguments = training_arguments(data_uri, arguments)
    now = now or datetime.now(UTC)
    request = RetrainingRequest(
        reason=reason,
        pipeline=pipeline_name,
        arguments=run_arguments,
        requested_at=now.isoformat(timespec="seconds"),
        status="recorded",
    )
    if kubeflow is not None:
        if connect is None:
            from skinlesion.kubeflow.client import connect as kfp_connect
            from skinlesion.kubeflow.local_client import LocalKubeflowSettings, connect_local

            local = isinstance(kubeflow, LocalKubeflowSettings)
            connect = connect_local if local else kfp_connect
        client = connect(kubeflow)
        request = _submit_unless_blocked(
            client,
            kubeflow,
            request,
            version_name=version_name,
            cooldown=timedelta(hours=cooldown_hours),
            now=now,
        )
    else:
        log.warning(
            "Retraining requested (no KFP host configured, recorded only): %s on %s",
            reason,
            run_arguments["data_uri"],
        )
    if record_dir is not None:
        record_dir.mkdir(parents=True, exist_ok=True)
        with (record_dir / REQUESTS_FILE).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(request.to_dict()) + "\n")
    return request


def _submit_unless_blocked(
    client: Any,
    settings: Any,
    request: RetrainingRequest,
    *,
    version_name: str,
    cooldown: timedelta,
    now: datetime,
) -> RetrainingRequest:
    pipeline_name = request.pipeline
    version = latest_version(client, pipeline_name, version_name)
    experiment_id = client.experiment_id(settings.experiment)
    blocked = blocking_run(
        client,
        experiment_id=experiment_id,
        pipeline_id=version.pipeline_id,
        cooldown=cooldown,
        now=now,
    )
    if blocked is not None:
        blocking_id, why = blocked
        log.warning("Retraining skipped (%s): %s", why, request.reason)
        return replace(
            request,
            status="skipped",
            kfp_host=settings.host,
            skip_reason=why,
            blocking_run_id=blocking_id,
            run_url=settings.ui_link(f"runs/details/{blocking_id}"),
        )
    run_name = f"{pipeline_name} retrain {now.strftime('%Y-%m-%d %H:%M:%S UTC')}"
    run = client.create_run(
        experiment_id=experiment_id,
        name=run_name,
        version=version,
        arguments=request.arguments,
        pipeline_root=settings.pipeline_root,
        service_account=settings.service_account,
    )
    run_id = str(run.run_id)
    url = settings.ui_link(f"runs/details/{run_id}")
    log.warning(
        "Retraining started: run %s of %s (%s): %s", run_id, pipeline_name, url, request.reason
    )
    return replace(
        request,
        status="submitted",
        kfp_host=settings.host,
        run_id=run_id,
        run_url=url,
        pipeline_version=version.version_name,
    )
