"""The KFP API, as the submit and schedule commands use it: ``kfp.Client`` behind a small facade.

The facade adds what the commands need and ``kfp.Client`` lacks: lookups by display name within
a namespace, pagination, errors that say what failed (the HTTP status and, for 401/403 or a
login page, which credentials to check) and no ``print`` (kfp prints links itself; the commands
print their own).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from skinlesion.kubeflow.auth import AuthenticationError, SignIn, sign_in
from skinlesion.kubeflow.secrets import mask
from skinlesion.kubeflow.settings import Credentials, KubeflowSettings

log = logging.getLogger(__name__)

T = TypeVar("T")
PAGE_SIZE = 100


class KubeflowApiError(RuntimeError):
    """A KFP API call failed; the message names the call and the server's answer."""


@dataclass(frozen=True)
class PipelineVersionRef:
    """A pipeline version on the server."""

    pipeline_id: str
    version_id: str
    version_name: str
    created: bool  # uploaded now (False: it was there already)


def _filter_equals(key: str, value: str) -> str:
    return json.dumps(
        {"predicates": [{"operation": "EQUALS", "key": key, "string_value": value}]},
        sort_keys=True,
    )


class KubeflowClient:
    """The KFP API calls of the ``skinlesion kubeflow`` commands."""

    server_version = "unknown"  # healthz's tag_name; "unknown" where the server is not told

    def __init__(self, kfp_client: Any, settings: KubeflowSettings) -> None:
        self.kfp = kfp_client
        self.settings = settings

    # -- plumbing ---------------------------------------------------------------------------
    def call(self, what: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one ``kfp.Client`` call; kfp's prints go to the debug log, errors are explained."""
        import kfp_server_api

        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                result = function(*args, **kwargs)
        except kfp_server_api.ApiException as error:
            raise KubeflowApiError(
                self._explain(what, error.status, error.reason, error.body)
            ) from None
        except ValueError as error:
            # kfp_server_api raises ValueError when the answer is not the JSON it expects,
            # typically an HTML login page served with 200 after redirects.
            raise KubeflowApiError(
                f"{what}: the server's answer was not KFP JSON ({mask(str(error))[:200]}). "
                "An HTML login page means the request was not authenticated: check the auth "
                "settings and credentials."
            ) from None
        finally:
            if printed.getvalue().strip():
                log.debug("kfp: %s", printed.getvalue().strip())
        return result

    def _explain(self, what: str, status: int | None, reason: str | None, body: Any) -> str:
        detail = ""
        if body:
            text = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
            try:
                detail = str(json.loads(text).get("message") or text)
            except (ValueError, AttributeError):
                detail = text
            detail = f": {mask(detail)[:500]}"
        hint = ""
        if status in (401, 403):
            hint = (
                f" The KFP API refused the credentials (auth {self.settings.auth.value}); check "
                "KFP_TOKEN / KFP_USERNAME+KFP_PASSWORD / KFP_COOKIES, and that the namespace "
                f"{self.settings.namespace or '(none)'} is one your user may use."
            )
        return f"{what} failed: HTTP {status} {reason or ''}{detail}.{hint}"

    def _pages(
        self, what: str, function: Callable[..., Any], field: str, **kwargs: Any
    ) -> Iterator[Any]:
        token = ""
        while True:
            response = self.call(what, function, page_token=token, page_size=PAGE_SIZE, **kwargs)
            yield from getattr(response, field) or []
            token = response.next_page_token or ""
            if not token:
                return

    # -- experiments and pipelines ----------------------------------------------------------
    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name`` in the namespace, created when missing."""
        experiment = self.call(
            f"get or create experiment {name}",
            self.kfp.create_experiment,
            name,
            description="skin lesion classifier runs (skinlesion kubeflow submit/schedule)",
            namespace=self.settings.namespace or None,
        )
        return str(experiment.experiment_id)

    def pipeline_id(self, name: str) -> str | None:
        """The id of the pipeline ``name`` visible in the namespace, or None."""
        found = [
            p
            for p in self._pages(
                f"list pipelines named {name}",
                self.kfp.list_pipelines,
                "pipelines",
                namespace=self.settings.namespace or None,
                filter=_filter_equals("display_name", name),
            )
            if p.display_name == name
        ]
        if len(found) > 1:
            raise KubeflowApiError(
                f"{len(found)} pipelines are named {name}; delete the extra ones in the KFP UI."
            )
        return str(found[0].pipeline_id) if found else None

    def version_id(self, pipeline_id: str, version_name: str) -> str | None:
        for version in self._pages(
            f"list versions of pipeline {pipeline_id}",
            self.kfp.list_pipeline_versions,
            "pipeline_versions",
            pipeline_id=pipeline_id,
            filter=_filter_equals("display_name", version_name),
        ):
            if version.display_name == version_name:
                return str(version.pipeline_version_id)
        return None

    def ensure_pipeline_version(
        self, package_path: str, pipeline_name: str, version_name: str, description: str
    ) -> PipelineVersionRef:
        """Upload the package as version ``version_name`` of ``pipeline_name``, unless there."""
        pipeline_id = self.pipeline_id(pipeline_name)
        if pipeline_id is None:
            pipeline = self.call(
                f"upload pipeline {pipeline_name}",
                self.kfp.upload_pipeline,
                package_path,
                pipeline_name=pipeline_name,
                description=description,
                namespace=self.settings.namespace or None,
            )
            pipeline_id = str(pipeline.pipeline_id)
            log.info("uploaded pipeline %s (%s)", pipeline_name, pipeline_id)
        existing = self.version_id(pipeline_id, version_name)
        if existing is not None:
            log.info("pipeline version %s exists already (%s)", version_name, existing)
            return PipelineVersionRef(pipeline_id, existing, version_name, created=False)
        version = self.call(
            f"upload version {version_name} of pipeline {pipeline_name}",
            self.kfp.upload_pipeline_version,
            package_path,
            pipeline_version_name=version_name,
            pipeline_id=pipeline_id,
            description=description,
        )
        log.info("uploaded pipeline version %s (%s)", version_name, version.pipeline_version_id)
        return PipelineVersionRef(
            pipeline_id, str(version.pipeline_version_id), version_name, created=True
        )

    def latest_version(self, pipeline_name: str) -> PipelineVersionRef:
        """The most recently uploaded version of ``pipeline_name`` (e.g. to start it from a step)."""
        pipeline_id = self.pipeline_id(pipeline_name)
        if pipeline_id is None:
            raise KubeflowApiError(
                f"No pipeline {pipeline_name} in namespace {self.settings.namespace or '(none)'}: "
                "submit or schedule it first."
            )
        response = self.call(
            f"list versions of pipeline {pipeline_name}",
            self.kfp.list_pipeline_versions,
            pipeline_id=pipeline_id,
            page_size=1,
            sort_by="created_at desc",
        )
        versions = response.pipeline_versions or []
        if not versions:
            raise KubeflowApiError(f"Pipeline {pipeline_name} has no version.")
        version = versions[0]
        return PipelineVersionRef(
            pipeline_id, str(version.pipeline_version_id), str(version.display_name), created=False
        )

    # -- runs -------------------------------------------------------------------------------
    def create_run(
        self,
        *,
        experiment_id: str,
        name: str,
        version: PipelineVersionRef,
        arguments: dict[str, Any],
        pipeline_root: str,
        service_account: str,
    ) -> Any:
        return self.call(
            f"create run {name}",
            self.kfp.run_pipeline,
            experiment_id=experiment_id,
            job_name=name,
            params=arguments,
            pipeline_id=version.pipeline_id,
            version_id=version.version_id,
            pipeline_root=pipeline_root or None,
            service_account=service_account or None,
        )

    def runs(self, experiment_id: str, *, filter: str = "", sort_by: str = "") -> list[Any]:
        """The runs of the experiment that match ``filter`` (a v2beta1 Filter as JSON)."""
        return list(
            self._pages(
                "list runs",
                self.kfp.list_runs,
                "runs",
                experiment_id=experiment_id,
                filter=filter or None,
                sort_by=sort_by,
            )
        )

    def get_run(self, run_id: str) -> Any:
        return self.call(f"get run {run_id}", self.kfp.get_run, run_id)

    # -- recurring runs ---------------------------------------------------------------------
    def recurring_runs(self, experiment_id: str) -> list[Any]:
        """Every recurring run of the experiment."""
        return list(
            self._pages(
                "list recurring runs",
                self.kfp.list_recurring_runs,
                "recurring_runs",
                experiment_id=experiment_id,
            )
        )

    def create_recurring_run(self, **kwargs: Any) -> Any:
        return self.call(
            f"create recurring run {kwargs.get('job_name')}",
            self.kfp.create_recurring_run,
            **kwargs,
        )

    def delete_recurring_run(self, recurring_run_id: str) -> None:
        self.call(
            f"delete recurring run {recurring_run_id}",
            self.kfp.delete_recurring_run,
            recurring_run_id,
        )

    def pause_recurring_run(self, recurring_run_id: str) -> None:
        self.call(
            f"disable recurring run {recurring_run_id}",
            self.kfp.disable_recurring_run,
            recurring_run_id,
        )

    def resume_recurring_run(self, recurring_run_id: str) -> None:
        self.call(
            f"enable recurring run {recurring_run_id}",
            self.kfp.enable_recurring_run,
            recurring_run_id,
        )


def check_connection(settings: KubeflowSettings, sign: SignIn) -> dict[str, Any]:
    """GET healthz with the credentials, redirects not followed, to fail early and clearly.

    In front of KFP, Kubeflow's gateway redirects an unauthenticated request to the login page
    and answers it with HTML and status 200; kfp_server_api would read that as an empty answer.
    """
    import requests

    url = f"{settings.host}/apis/v2beta1/healthz"
    try:
        response = requests.get(
            url, headers=sign.headers, allow_redirects=False, timeout=30, verify=sign.verify
        )
    except requests.RequestException as error:
        raise KubeflowApiError(
            f"Cannot reach the KFP API at {settings.host} ({type(error).__name__}); check "
            "kubeflow.host (e.g. https://kubeflow.example.com/pipeline) and the network."
        ) from None
    credentials_hint = (
        f"check the credentials of auth {sign.mode.value} (KFP_TOKEN, KFP_USERNAME + "
        "KFP_PASSWORD, KFP_COOKIES, or the service-account token)"
    )
    if response.is_redirect:
        location = response.headers.get("Location", "")
        raise AuthenticationError(
            f"The KFP API redirected to {location.split('?')[0] or 'a login page'}: the request "
            f"was not authenticated; {credentials_hint}."
        )
    if response.status_code in (401, 403):
        raise AuthenticationError(
            f"The KFP API answered HTTP {response.status_code}; {credentials_hint}."
        )
    if response.status_code != 200 or "json" not in response.headers.get("Content-Type", ""):
        raise KubeflowApiError(
            f"GET {url} answered HTTP {response.status_code} "
            f"({response.headers.get('Content-Type', 'no content type')}), not the KFP API; "
            "check kubeflow.host (it ends with /pipeline on Kubeflow)."
        )
    # The API server's main.go writes commit_sha, tag_name (its release) and multi_user here.
    health = response.json()
    return health if isinstance(health, dict) else {}


def connect(settings: KubeflowSettings, credentials: Credentials | None = None) -> KubeflowClient:
    """Sign in as the settings say, check the connection, return the facade over kfp.Client.

    Works inside a running KFP component too: there (``_KFP_RUNTIME=true``) ``kfp`` binds no
    ``Client`` and importing ``kfp.client`` first trips over a circular import of
    ``kfp.dsl.pipeline_context``; importing ``kfp.dsl.component_factory`` first breaks the cycle.
    """
    import kfp.dsl.component_factory  # noqa: F401  (import order: see the docstring)
    from kfp.client import Client

    credentials = credentials or Credentials.from_environment()
    sign = sign_in(settings, credentials)
    health = check_connection(settings, sign)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        # kfp warns that it needs KFP >= 2.0.0-beta.2 on every construction.
        warnings.simplefilter("ignore", FutureWarning)
        kfp_client = Client(**sign.kfp_arguments)
    client = KubeflowClient(kfp_client, settings)
    client.server_version = str(health.get("tag_name") or "unknown")
    return client
