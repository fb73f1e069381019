"""The one boto3 client factory: standard retries, our user agent, region, assumed role, endpoint URL."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import RefreshableCredentials

from skinlesion import __version__
from skinlesion.settings import Settings

log = logging.getLogger(__name__)

USER_AGENT = f"skinlesion/{__version__}"
ROLE_SESSION_NAME = "skinlesion"


class AwsClients:
    """Builds and caches one client per service; nothing is created until a client is asked for.

    Every client gets botocore's ``standard`` retry mode (throttling and transient errors are
    retried with backoff), a user agent suffix ``skinlesion/<version>``, the region, and the
    endpoint URL when one is set (a local emulator). With ``role_arn`` the credentials come from
    STS AssumeRole and are refreshed before they expire, so a job longer than the role's session
    keeps working.
    """

    def __init__(
        self,
        region: str,
        *,
        role_arn: str = "",
        endpoint_url: str = "",
        max_attempts: int = 10,
        session: boto3.Session | None = None,
        role_session_name: str = ROLE_SESSION_NAME,
    ) -> None:
        if not region:
            raise ValueError(
                "No AWS region: set SKINLESION_REGION (or AWS_REGION), or the Terraform output region."
            )
        self.region = region
        self.role_arn = role_arn
        self.endpoint_url = endpoint_url
        self.max_attempts = max_attempts
        self.role_session_name = role_session_name
        self._base_session = session
        self._session: boto3.Session | None = None
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, settings: Settings, *, session: boto3.Session | None = None
    ) -> AwsClients:
        """The factory that the settings describe (``session``: a base session to reuse)."""
        return cls(
            settings.region,
            role_arn=settings.assume_role_arn,
            endpoint_url=settings.endpoint_url,
            max_attempts=settings.max_api_attempts,
            session=session,
        )

    @property
    def config(self) -> Config:
        """The botocore configuration every client shares."""
        return Config(
            region_name=self.region,
            user_agent_extra=USER_AGENT,
            retries={"mode": "standard", "total_max_attempts": self.max_attempts},
        )

    def client(self, service: str) -> Any:
        """The cached client of ``service`` (``sagemaker``, ``s3``, ``logs``, ...)."""
        with self._lock:
            if service not in self._clients:
                self._clients[service] = self._session_locked().client(
                    service,  # type: ignore[call-overload]
                    endpoint_url=self.endpoint_url or None,
                    config=self.config,
                )
            return self._clients[service]

    def _session_locked(self) -> boto3.Session:
        if self._session is None:
            base = self._base_session or boto3.Session(region_name=self.region)
            self._session = self._assume_role(base) if self.role_arn else base
        return self._session

    def _assume_role(self, base: boto3.Session) -> boto3.Session:
        sts = base.client("sts", endpoint_url=self.endpoint_url or None, config=self.config)

        def refresh() -> dict[str, str]:
            log.info("Assuming role %s", self.role_arn)
            response = sts.assume_role(
                RoleArn=self.role_arn, RoleSessionName=self.role_session_name
            )
            creds = response["Credentials"]
            expiry = creds["Expiration"]
            if isinstance(expiry, datetime) and expiry.tzinfo is None:
                expiry = expiry.replace(tzinfo=UTC)
            return {
                "access_key": creds["AccessKeyId"],
                "secret_key": creds["SecretAccessKey"],
                "token": creds["SessionToken"],
                "expiry_time": expiry.isoformat() if isinstance(expiry, datetime) else str(expiry),
            }

        credentials = RefreshableCredentials.create_from_metadata(
            metadata=refresh(), refresh_using=refresh, method="sts-assume-role"
        )
        core = botocore.session.get_session()
        # botocore has no public setter for refreshable credentials; this is the usual recipe.
        core._credentials = credentials  # type: ignore[attr-defined]
        core.set_config_variable("region", self.region)
        return boto3.Session(botocore_session=core)


def client_factory_from_environment(env: Mapping[str, str] | None = None) -> AwsClients:
    """The factory described by ``Settings.from_environment()`` (read now, not at import)."""
    return AwsClients.from_settings(Settings.from_environment(env))
