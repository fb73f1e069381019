"""Authentication: the Dex login flow against a loopback fake, auth selection, secret masking.

The Dex side of tests/kubeflow/fake_kfp.py stands in for Kubeflow's oauth2-proxy and Dex
(redirect to Dex, connector choice, login form, approval, callback setting the session cookie),
which cannot run here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.kubeflow.fake_kfp import SESSION_COOKIE, DexUser, FakeKfp

from skinlesion.kubeflow.auth import AuthenticationError, dex_login
from skinlesion.kubeflow.secrets import MASK, Secret, mask
from skinlesion.kubeflow.settings import (
    AuthMode,
    Credentials,
    KubeflowSettings,
    SettingsError,
    resolve_auth,
)

PASSWORD = "dex-password-8c1b5e2f90"


@pytest.fixture
def dex_user(fake_kfp: FakeKfp) -> DexUser:
    user = DexUser("user@example.com", PASSWORD)
    fake_kfp.state.dex_user = user
    fake_kfp.state.redirect_unauthenticated = True
    return user


@pytest.mark.parametrize("approval", [True, False])
def test_dex_login_follows_the_documented_flow_and_returns_the_session_cookie(
    fake_kfp: FakeKfp, dex_user: DexUser, approval: bool
) -> None:
    dex_user.require_approval = approval
    cookies = dex_login(f"{fake_kfp.url}/pipeline", dex_user.username, Secret(PASSWORD))
    name, _, value = cookies.reveal().partition("=")
    assert name == SESSION_COOKIE
    assert value in fake_kfp.state.dex_sessions
    paths = [(r.method, r.path) for r in fake_kfp.state.requests]
    assert ("POST", "/dex/auth/local/login") in paths
    assert (("POST", "/dex/approval") in paths) is approval
    [login] = [
        r
        for r in fake_kfp.state.requests
        if r.path == "/dex/auth/local/login" and r.method == "POST"
    ]
    assert b"login=user%40example.com" in login.body


def test_dex_login_with_a_wrong_password_says_so(fake_kfp: FakeKfp, dex_user: DexUser) -> None:
    with pytest.raises(AuthenticationError, match="did not accept the credentials"):
        dex_login(f"{fake_kfp.url}/pipeline", dex_user.username, Secret("wrong-password"))
    assert not fake_kfp.state.dex_sessions


def test_dex_login_on_a_host_without_login_says_it_needs_none(fake_kfp: FakeKfp) -> None:
    fake_kfp.state.dex_sessions.add("already")
    with pytest.raises(AuthenticationError, match="needs no Dex login"):
        dex_login(
            f"{fake_kfp.url}/pipeline/apis/v2beta1/healthz", "user@example.com", Secret(PASSWORD)
        )


def test_submit_with_dex_sends_the_session_cookie_and_logs_no_secret(
    fake_kfp: FakeKfp,
    dex_user: DexUser,
    cli: Callable[..., tuple[int, str]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("KFP_USERNAME", dex_user.username)
    monkeypatch.setenv("KFP_PASSWORD", PASSWORD)
    monkeypatch.setenv("KFP_AUTH", "dex")
    caplog.set_level(logging.DEBUG)  # ours and kfp's, all of it
    caplog.set_level(logging.DEBUG, logger="urllib3")  # the Dex login's requests too
    status, out = cli("submit")
    assert status == 0, out
    [session] = fake_kfp.state.dex_sessions
    api = fake_kfp.state.api_requests()
    assert api and all(f"{SESSION_COOKIE}={session}" in r.headers["cookie"] for r in api)
    assert fake_kfp.state.runs
    everything = caplog.text + out + capsys.readouterr().err
    assert PASSWORD not in everything
    assert session not in everything
    assert "signed in" in caplog.text


def test_auto_picks_the_first_credentials_that_apply(tmp_path: Path) -> None:
    sa_token = tmp_path / "token"
    base = Credentials(sa_token_path=sa_token)
    assert resolve_auth(AuthMode.AUTO, base) == AuthMode.NONE
    cookies = Credentials(cookies=Secret("AWSELBAuthSessionCookie-0=abcd"), sa_token_path=sa_token)
    assert resolve_auth(AuthMode.AUTO, cookies) == AuthMode.COOKIES
    dex = Credentials(username="u", password=Secret("pass-word"), sa_token_path=sa_token)
    assert resolve_auth(AuthMode.AUTO, dex) == AuthMode.DEX
    token = Credentials(token=Secret("tok-en-1234"), username="u", password=Secret("pass-word"))
    assert resolve_auth(AuthMode.AUTO, token) == AuthMode.TOKEN
    sa_token.write_text("in-cluster")
    assert resolve_auth(AuthMode.AUTO, Credentials(sa_token_path=sa_token)) == AuthMode.SA_TOKEN


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (AuthMode.TOKEN, "KFP_TOKEN"),
        (AuthMode.DEX, "KFP_USERNAME and KFP_PASSWORD"),
        (AuthMode.COOKIES, "KFP_COOKIES"),
        (AuthMode.SA_TOKEN, "no service-account token"),
    ],
)
def test_a_chosen_mode_without_its_credentials_names_what_to_set(
    mode: AuthMode, expected: str, tmp_path: Path
) -> None:
    with pytest.raises(SettingsError, match=expected):
        resolve_auth(mode, Credentials(sa_token_path=tmp_path / "none"))


def test_credentials_come_from_variables_or_files(tmp_path: Path) -> None:
    (tmp_path / "password").write_text("from-a-file-123\n")
    credentials = Credentials.from_environment(
        {
            "KFP_USERNAME": "user@example.com",
            "KFP_PASSWORD_FILE": str(tmp_path / "password"),
            "KFP_COOKIES": "authservice_session=cookie-value-1",
            "KF_PIPELINES_SA_TOKEN_PATH": str(tmp_path / "sa"),
        }
    )
    assert credentials.password is not None
    assert credentials.password.reveal() == "from-a-file-123"
    assert credentials.cookies is not None
    assert credentials.token is None
    assert credentials.sa_token_path == tmp_path / "sa"
    with pytest.raises(SettingsError, match="cannot read it"):
        Credentials.from_environment({"KFP_TOKEN_FILE": str(tmp_path / "missing")})


def test_a_params_file_may_not_hold_credentials() -> None:
    with pytest.raises(SettingsError, match="does not belong in a params file"):
        KubeflowSettings.from_mapping({"host": "https://kf.example.com/pipeline", "password": "x"})
    with pytest.raises(SettingsError, match="unknown setting 'hots'"):
        KubeflowSettings.from_mapping({"host": "https://kf.example.com/pipeline", "hots": "x"})
    with pytest.raises(SettingsError, match="Invalid auth 'oauth'"):
        KubeflowSettings.from_mapping({"host": "https://kf.example.com/pipeline", "auth": "oauth"})
    with pytest.raises(SettingsError, match="http:// or https://"):
        KubeflowSettings(host="kf.example.com")


# -- secret masking ----------------------------------------------------------------------------
def test_a_secret_never_prints_its_value() -> None:
    secret = Secret("s3cr3t-value-0001")
    assert str(secret) == MASK
    assert repr(secret) == f"Secret({MASK!r})"
    assert f"{secret}" == MASK
    assert "s3cr3t-value-0001" not in repr(Credentials(token=secret))
    assert secret.reveal() == "s3cr3t-value-0001"


def test_log_records_are_masked_whichever_logger_and_handler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    Secret("AWSELBAuthSessionCookie-0=cookie-part-zero; AWSELBAuthSessionCookie-1=cookie-part-one")
    Secret("bearer-token-a8b7c6d5")
    caplog.set_level(logging.DEBUG)
    # kfp_server_api's configuration turns these two down to WARNING; turn them up again.
    caplog.set_level(logging.DEBUG, logger="urllib3")
    caplog.set_level(logging.DEBUG, logger="kfp_server_api")
    logging.getLogger("urllib3.connectionpool").debug("Cookie: %s", "x=cookie-part-one")
    logging.getLogger("kfp_server_api.rest").info("token bearer-token-a8b7c6d5 in %s", "a header")
    try:
        raise RuntimeError("rejected bearer-token-a8b7c6d5")
    except RuntimeError:
        logging.getLogger("skinlesion").exception("call failed")
    assert "cookie-part-one" not in caplog.text
    assert "bearer-token-a8b7c6d5" not in caplog.text
    assert caplog.text.count(MASK) >= 3
    assert mask("a cookie-part-zero b") == f"a {MASK} b"


def test_short_values_are_not_treated_as_secrets(caplog: pytest.LogCaptureFixture) -> None:
    Secret("abc")  # too short to mask without masking ordinary words
    caplog.set_level(logging.INFO)
    logging.getLogger("skinlesion").info("abc def")
    assert "abc def" in caplog.text
