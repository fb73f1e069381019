"""Retraining after an alarm: start the training pipeline through the KFP API, and keep a record.

On Kubeflow the monitoring pipeline's pod signs in with its service-account token
(``kfp_host="in-cluster"``: the in-cluster API, the pod's namespace, auth ``sa-token``, the
token the ``access-ml-pipeline`` PodDefault projects) and starts a run of the newest uploaded
version of the training pipeline (the one ``make submit`` / ``make schedule`` uploaded), with
``data_uri`` set to the current data and the other arguments as given. Any other host works the
same with the credentials of :mod:`skinlesion.kubeflow.settings`.

Locally (no host) nothing is started: the request is recorded in
``<local root>/monitoring/retraining_requests.jsonl`` (and returned), which is what a person
(``make demo DATA=<the current data>``) or a test acts on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

IN_CLUSTER = "in-cluster"
SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_PIPELINE = "skinlesion-training"
REQUESTS_FILE = "retraining_requests.jsonl"


class RetrainingError(RuntimeError):
    """The training pipeline could not be started; the message says what to fix."""


@dataclass(frozen=True)
class RetrainingRequest:
    """A request to retrain, and what came of it."""

    reason: str
    pipeline: str
    arguments: dict[str, Any]
    requested_at: str
    status: str  # "submitted" (a run was created) or "recorded" (no KFP host configured)
    kfp_host: str = ""
    run_id: str = ""
    run_url: str = ""
    pipeline_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def kubeflow_settings(
    kfp_host: str,
    namespace: str = "",
    experiment: str = "skinlesion",
    *,
    namespace_file: Path = SA_NAMESPACE_FILE,
) -> Any:
    """KubeflowSettings for ``kfp_host``: None for "", the in-cluster API for "in-cluster"."""
    from skinlesion.kubeflow.settings import KubeflowSettings

    if not kfp_host:
        return None
    if kfp_host == IN_CLUSTER:
        if not namespace and namespace_file.is_file():
            namespace = namespace_file.read_text().strip()
        return KubeflowSettings.in_cluster(namespace, experiment)
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
    """The pipeline version to run: ``version_name``, else the newest one uploaded."""
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
    if not versions:
        wanted = f"version {version_name}" if version_name else "versions"
        raise RetrainingError(f"Pipeline {pipeline_name} has no {wanted} to run.")
    # Newest by creation time; of equal times the last listed (the most recent upload).
    newest = max(enumerate(versions), key=lambda item: (str(item[1].created_at), item[0]))[1]
    return PipelineVersionRef(
        pipeline_id, str(newest.pipeline_version_id), str(newest.display_name), created=False
    )


def start_training_run(
    client: Any,
    settings: Any,
    *,
    pipeline_name: str,
    arguments: dict[str, Any],
    run_name: str,
    version_name: str = "",
) -> tuple[str, str, str]:
    """Create a run of the training pipeline; return (run id, UI link, version name)."""
    version = latest_version(client, pipeline_name, version_name)
    experiment_id = client.experiment_id(settings.experiment)
    run = client.create_run(
        experiment_id=experiment_id,
        name=run_name,
        version=version,
        arguments=arguments,
        pipeline_root=settings.pipeline_root,
        service_account=settings.service_account,
    )
    run_id = str(run.run_id)
    return run_id, settings.ui_link(f"runs/details/{run_id}"), version.version_name


def request_retraining(
    *,
    reason: str,
    data_uri: str,
    arguments: Mapping[str, Any] | None = None,
    kubeflow: Any = None,
    record_dir: Path | None = None,
    pipeline_name: str = DEFAULT_PIPELINE,
    version_name: str = "",
    connect: Callable[[Any], Any] | None = None,
) -> RetrainingRequest:
    """Start the training pipeline (when ``kubeflow`` settings are given) and record it.

    ``record_dir``: append the request to ``retraining_requests.jsonl`` there (None: no
    record file). ``connect``: builds the KFP client from the settings (default
    :func:`skinlesion.kubeflow.client.connect`).
    """
    run_arguments = training_arguments(data_uri, arguments)
    now = datetime.now(UTC)
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

            connect = kfp_connect
        client = connect(kubeflow)
        run_name = f"{pipeline_name} retrain {now.strftime('%Y-%m-%d %H:%M:%S UTC')}"
        run_id, url, version = start_training_run(
            client,
            kubeflow,
            pipeline_name=pipeline_name,
            arguments=run_arguments,
            run_name=run_name,
            version_name=version_name,
        )
        request = RetrainingRequest(
            **(
                request.to_dict()
                | {
                    "status": "submitted",
                    "kfp_host": kubeflow.host,
                    "run_id": run_id,
                    "run_url": url,
                    "pipeline_version": version,
                }
            )
        )
        log.warning("Retraining started: run %s of %s (%s): %s", run_id, pipeline_name, url, reason)
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


def local_record_dir() -> Path:
    """``<local root>/monitoring``: where local notifications and retraining requests go."""
    from skinlesion.backends.local import LocalSettings

    return LocalSettings.from_environment().root / "monitoring"
