"""Where Kubeflow is and how to sign in: connection settings and credentials.

Connection settings (host, namespace, experiment, service account, pipeline root, auth mode)
are not secret: they live in ``pipelines/params/<env>.yaml`` and can be overridden on the
command line. Credentials are secret: they are read only from the environment (or files the
environment names), held as :class:`~skinlesion.kubeflow.secrets.Secret`, and never written
to a params file or a log.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from skinlesion.kubeflow.secrets import Secret

# kfp.client.KF_PIPELINES_SA_TOKEN_ENV / _PATH: the projected token of the pod's service account
# (the PodDefault "access-ml-pipeline" mounts it in notebooks and pipeline pods).
SA_TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"
DEFAULT_SA_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"
IN_CLUSTER_HOST = "http://ml-pipeline.kubeflow.svc.cluster.local:8888"
# The service account the pipelines run as in a profile namespace (manifests/base/
# serviceaccount.yaml): annotated with the IRSA role, bound to kubeflow-edit.
PIPELINE_SERVICE_ACCOUNT = "skinlesion-pipeline-runner"
# Set on the retraining trigger's pod from its own spec.serviceAccountName (skinlesion.kubeflow.
# tasks.kfp_api_step), so the run it starts uses the service account of the run it is part of.
RUN_SERVICE_ACCOUNT_ENV = "SKINLESION_RUN_SERVICE_ACCOUNT"

# The environment variables that hold credentials.
TOKEN_ENV = "KFP_TOKEN"
TOKEN_FILE_ENV = "KFP_TOKEN_FILE"
USERNAME_ENV = "KFP_USERNAME"
PASSWORD_ENV = "KFP_PASSWORD"
PASSWORD_FILE_ENV = "KFP_PASSWORD_FILE"
COOKIES_ENV = "KFP_COOKIES"
COOKIES_FILE_ENV = "KFP_COOKIES_FILE"

# Keys a params file must not hold: credentials come from the environment only.
SECRET_KEYS = ("token", "password", "cookies", "cookie", "username", "secret")


class SettingsError(ValueError):
    """A Kubeflow setting is missing or invalid; the message says what is accepted."""


class AuthMode(enum.StrEnum):
    """How the client authenticates to the KFP API."""

    AUTO = "auto"  # the first that applies: sa-token, token, dex, cookies, none
    NONE = "none"  # a port-forward or a standalone KFP without auth
    SA_TOKEN = "sa-token"  # in a cluster pod: the projected service-account token
    TOKEN = "token"  # a bearer token (KFP_TOKEN or KFP_TOKEN_FILE)
    DEX = "dex"  # Kubeflow's Dex login with KFP_USERNAME / KFP_PASSWORD
    COOKIES = "cookies"  # session cookies from a browser, e.g. the ALB's Cognito cookies


@dataclass(frozen=True)
class KubeflowSettings:
    """Where the KFP API is and where runs go."""

    host: str  # the KFP API, e.g. https://kubeflow.example.com/pipeline
    namespace: str = ""  # the profile namespace (empty: standalone KFP, single user)
    experiment: str = "skinlesion"
    # The runs' service account: PIPELINE_SERVICE_ACCOUNT on Kubeflow (the params files say so);
    # empty: the server's default (default-editor in a profile, a standalone KFP's runner).
    service_account: str = ""
    pipeline_root: str = ""  # s3://<bucket>/<prefix>; empty: the KFP default
    ui_url: str = ""  # the KFP UI for links; empty: the host
    auth: AuthMode = AuthMode.AUTO
    dex_auth_type: str = "local"  # Dex connector: local (static users), ldap, ...
    verify_tls: bool = True
    ca_cert: str = ""  # a CA bundle for a private certificate authority

    def __post_init__(self) -> None:
        if not self.host.startswith(("http://", "https://")):
            raise SettingsError(
                f"Invalid Kubeflow host {self.host!r}: expected an http:// or https:// URL of "
                "the KFP API, e.g. https://kubeflow.example.com/pipeline."
            )
        try:
            AuthMode(self.auth)
        except ValueError:
            accepted = ", ".join(m.value for m in AuthMode)
            raise SettingsError(f"Invalid auth {self.auth!r}. Accepted: {accepted}.") from None
        object.__setattr__(self, "auth", AuthMode(self.auth))
        object.__setattr__(self, "host", self.host.rstrip("/"))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str = "settings") -> KubeflowSettings:
        """Build from a params file's ``kubeflow:`` section (unknown or secret keys rejected)."""
        known = {f.name for f in fields(cls)}
        for key in values:
            if key in SECRET_KEYS:
                raise SettingsError(
                    f"{where}: {key!r} does not belong in a params file. Credentials come from "
                    f"the environment: {TOKEN_ENV}, {USERNAME_ENV}/{PASSWORD_ENV}, {COOKIES_ENV} "
                    "(or their *_FILE variants)."
                )
            if key not in known:
                raise SettingsError(
                    f"{where}: unknown setting {key!r}. Accepted: {', '.join(sorted(known))}."
                )
        if not values.get("host"):
            raise SettingsError(f"{where}: 'host' is required (the KFP API URL).")
        kwargs = {k: v for k, v in values.items() if v is not None}
        for key in ("host", "namespace", "experiment", "service_account", "pipeline_root"):
            if key in kwargs and not isinstance(kwargs[key], str):
                raise SettingsError(f"{where}: {key} must be a string, got {kwargs[key]!r}.")
        if "verify_tls" in kwargs and not isinstance(kwargs["verify_tls"], bool):
            raise SettingsError(f"{where}: verify_tls must be true or false.")
        return cls(**kwargs)

    @classmethod
    def in_cluster(
        cls, namespace: str, experiment: str = "skinlesion", service_account: str = ""
    ) -> KubeflowSettings:
        """Settings for a pod in the cluster: the in-cluster API and the service-account token."""
        return cls(
            host=IN_CLUSTER_HOST,
            namespace=namespace,
            experiment=experiment,
            service_account=service_account,
            auth=AuthMode.SA_TOKEN,
        )

    def with_overrides(self, **overrides: Any) -> KubeflowSettings:
        """A copy with the given (non-None) settings replaced."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def ui_link(self, fragment: str) -> str:
        """A link into the KFP UI, e.g. ``ui_link("runs/details/<id>")``."""
        base = self.ui_url or self.host
        if "?" in base or base.endswith("/"):
            return f"{base}#/{fragment}"
        return f"{base}/#/{fragment}"


def _read_secret_file(path: str, variable: str) -> Secret:
    try:
        value = Path(path).read_text().strip()
    except OSError as error:
        raise SettingsError(f"{variable}={path}: cannot read it ({error.strerror}).") from None
    if not value:
        raise SettingsError(f"{variable}={path}: the file is empty.")
    return Secret(value)


def _secret(env: Mapping[str, str], variable: str, file_variable: str | None) -> Secret | None:
    if env.get(variable):
        return Secret(env[variable])
    if file_variable and env.get(file_variable):
        return _read_secret_file(env[file_variable], file_variable)
    return None


@dataclass(frozen=True)
class Credentials:
    """What the client may sign in with; each secret prints as ``********``."""

    token: Secret | None = None
    username: str = ""
    password: Secret | None = None
    cookies: Secret | None = None
    sa_token_path: Path = field(default=Path(DEFAULT_SA_TOKEN_PATH))

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> Credentials:
        """Read ``KFP_TOKEN[_FILE]``, ``KFP_USERNAME``, ``KFP_PASSWORD[_FILE]``,
        ``KFP_COOKIES[_FILE]`` and ``KF_PIPELINES_SA_TOKEN_PATH`` (now, not at import)."""
        env = os.environ if env is None else env
        return cls(
            token=_secret(env, TOKEN_ENV, TOKEN_FILE_ENV),
            username=env.get(USERNAME_ENV, ""),
            password=_secret(env, PASSWORD_ENV, PASSWORD_FILE_ENV),
            cookies=_secret(env, COOKIES_ENV, COOKIES_FILE_ENV),
            sa_token_path=Path(env.get(SA_TOKEN_PATH_ENV) or DEFAULT_SA_TOKEN_PATH),
        )


def resolve_auth(mode: AuthMode, credentials: Credentials) -> AuthMode:
    """The mode to use: ``mode`` itself, checked, or for ``auto`` the first that applies."""
    if mode == AuthMode.AUTO:
        if credentials.sa_token_path.is_file():
            return AuthMode.SA_TOKEN
        if credentials.token is not None:
            return AuthMode.TOKEN
        if credentials.username and credentials.password is not None:
            return AuthMode.DEX
        if credentials.cookies is not None:
            return AuthMode.COOKIES
        return AuthMode.NONE
    missing = {
        AuthMode.SA_TOKEN: None
        if credentials.sa_token_path.is_file()
        else f"no service-account token at {credentials.sa_token_path} (set {SA_TOKEN_PATH_ENV} "
        "or add the access-ml-pipeline PodDefault to the pod)",
        AuthMode.TOKEN: None
        if credentials.token is not None
        else f"set {TOKEN_ENV} or {TOKEN_FILE_ENV}",
        AuthMode.DEX: None
        if credentials.username and credentials.password is not None
        else f"set {USERNAME_ENV} and {PASSWORD_ENV} (or {PASSWORD_FILE_ENV})",
        AuthMode.COOKIES: None
        if credentials.cookies is not None
        else f"set {COOKIES_ENV} or {COOKIES_FILE_ENV} to 'name=value; name2=value2'",
    }.get(mode)
    if missing:
        raise SettingsError(f"auth {mode.value} needs credentials: {missing}.")
    return mode
