"""Sign in to Kubeflow: the Dex login flow, and the ``kfp.Client`` arguments for each mode.

The Dex flow is the one Kubeflow documents for its SDK client manager ("Connect the SDK to the
API", ``KFPClientManager``): GET the host, follow the redirects of oauth2-proxy (or the older
oidc-authservice) to Dex, pick the connector, POST the login form, approve if Dex asks, and keep
the session cookies (``oauth2_proxy_kubeflow`` or ``authservice_session``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from skinlesion.kubeflow.secrets import Secret
from skinlesion.kubeflow.settings import (
    AuthMode,
    Credentials,
    KubeflowSettings,
    SettingsError,
    resolve_auth,
)

log = logging.getLogger(__name__)

SESSION_COOKIES = ("oauth2_proxy_kubeflow", "authservice_session")
ALB_COOKIE_PREFIX = "AWSELBAuthSessionCookie"
HTTP_TIMEOUT_SECONDS = 30


class AuthenticationError(RuntimeError):
    """Signing in failed; the message says at which step and what to check."""


def dex_login(
    host: str,
    username: str,
    password: Secret,
    *,
    auth_type: str = "local",
    verify: bool | str = True,
) -> Secret:
    """Log in through Dex; return the session cookies as a ``Cookie`` header value.

    Returns an empty-valued result only when the host needs no login (no redirect at all); that
    case raises, since a Dex login was asked for.
    """
    import requests

    session = requests.Session()
    session.verify = verify

    def get(url: str) -> requests.Response:
        return session.get(url, allow_redirects=True, timeout=HTTP_TIMEOUT_SECONDS)

    try:
        response = get(host)
        if response.status_code == 403:
            # oauth2-proxy's sign-in page: start the flow explicitly at /oauth2/start.
            parts = urlsplit(response.url)
            start = parts._replace(path="/oauth2/start", query=urlencode({"rd": parts.path}))
            response = get(urlunsplit(start))
        if response.status_code != 200:
            raise AuthenticationError(
                f"GET {host} answered HTTP {response.status_code}; expected the Dex login page "
                "after redirects. Check the host and that Kubeflow uses Dex."
            )
        if not response.history:
            raise AuthenticationError(
                f"GET {host} was not redirected to a login page: the endpoint needs no Dex login "
                "(use auth: none or token)."
            )
        parts = urlsplit(response.url)
        if re.search(r"/auth$", parts.path):
            # Dex lists its connectors: choose one.
            parts = parts._replace(path=re.sub(r"/auth$", f"/auth/{auth_type}", parts.path))
        if re.search(r"/auth/.*/login$", parts.path):
            login_url = urlunsplit(parts)
        else:
            response = get(urlunsplit(parts))
            if response.status_code != 200:
                raise AuthenticationError(
                    f"The Dex connector page answered HTTP {response.status_code}; check "
                    f"dex_auth_type ({auth_type!r})."
                )
            login_url = response.url
        response = session.post(
            login_url,
            data={"login": username, "password": password.reveal()},
            allow_redirects=True,
            timeout=HTTP_TIMEOUT_SECONDS,
        )
        if response.status_code != 200:
            raise AuthenticationError(
                f"The Dex login form answered HTTP {response.status_code}; expected a redirect "
                "back to Kubeflow."
            )
        if not response.history:
            raise AuthenticationError(
                f"Dex did not accept the credentials of {username!r} (no redirect after the login "
                "form): check KFP_USERNAME and KFP_PASSWORD."
            )
        if re.search(r"/approval$", urlsplit(response.url).path):
            response = session.post(
                response.url,
                data={"approval": "approve"},
                allow_redirects=True,
                timeout=HTTP_TIMEOUT_SECONDS,
            )
            if response.status_code != 200:
                raise AuthenticationError(
                    f"The Dex approval page answered HTTP {response.status_code}."
                )
    except requests.RequestException as error:
        raise AuthenticationError(f"Dex login at {host} failed: {type(error).__name__}.") from None
    cookies = {cookie.name: cookie.value for cookie in session.cookies}
    if not cookies:
        raise AuthenticationError("The Dex login set no session cookie.")
    if not any(name.startswith(SESSION_COOKIES) for name in cookies):
        log.warning(
            "the Dex login set cookies %s, none of them a known session cookie (%s)",
            sorted(cookies),
            ", ".join(SESSION_COOKIES),
        )
    header = "; ".join(f"{name}={value}" for name, value in sorted(cookies.items()))
    log.info("signed in to %s through Dex as %s", host, username)
    return Secret(header)


@dataclass(frozen=True)
class SignIn:
    """How to call the KFP API: ``kfp.Client`` arguments and the equivalent HTTP headers."""

    mode: AuthMode
    kfp_arguments: dict[str, Any]
    headers: dict[str, str]  # for requests made without kfp (the connection check)
    verify: bool | str


def sign_in(settings: KubeflowSettings, credentials: Credentials) -> SignIn:
    """Resolve the auth mode and sign in (the Dex login happens here)."""
    from kfp.client import ServiceAccountTokenVolumeCredentials

    mode = resolve_auth(settings.auth, credentials)
    log.info("KFP API %s, auth %s", settings.host, mode.value)
    verify: bool | str = settings.ca_cert or settings.verify_tls
    arguments: dict[str, Any] = {
        "host": settings.host,
        "namespace": settings.namespace,
        "ui_host": settings.ui_url or settings.host,
        "verify_ssl": settings.verify_tls,
    }
    if settings.ca_cert:
        arguments["ssl_ca_cert"] = settings.ca_cert
    headers: dict[str, str] = {}
    if mode == AuthMode.SA_TOKEN:
        # kfp re-reads the file before each request: the kubelet rotates the token.
        arguments["credentials"] = ServiceAccountTokenVolumeCredentials(
            path=str(credentials.sa_token_path)
        )
        token = Secret(credentials.sa_token_path.read_text().strip())
        headers["Authorization"] = f"Bearer {token.reveal()}"
    elif mode == AuthMode.TOKEN:
        if credentials.token is None:
            raise SettingsError("auth token needs KFP_TOKEN or KFP_TOKEN_FILE.")
        arguments["existing_token"] = credentials.token.reveal()
        headers["Authorization"] = f"Bearer {credentials.token.reveal()}"
    elif mode == AuthMode.DEX:
        if credentials.password is None:
            raise SettingsError("auth dex needs KFP_USERNAME and KFP_PASSWORD.")
        cookies = dex_login(
            settings.host,
            credentials.username,
            credentials.password,
            auth_type=settings.dex_auth_type,
            verify=verify,
        )
        arguments["cookies"] = headers["Cookie"] = cookies.reveal()
    elif mode == AuthMode.COOKIES:
        if credentials.cookies is None:
            raise SettingsError("auth cookies needs KFP_COOKIES or KFP_COOKIES_FILE.")
        header = credentials.cookies.reveal()
        if ALB_COOKIE_PREFIX not in header and not any(n in header for n in SESSION_COOKIES):
            log.warning(
                "KFP_COOKIES holds no %s-0/1 (ALB with Cognito) nor %s cookie",
                ALB_COOKIE_PREFIX,
                " / ".join(SESSION_COOKIES),
            )
        arguments["cookies"] = headers["Cookie"] = header
    return SignIn(mode=mode, kfp_arguments=arguments, headers=headers, verify=verify)
