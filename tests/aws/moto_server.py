"""A moto server on a free loopback port for tests: every AWS service, no account, no internet.

Used by the session fixture ``moto_server`` (tests/conftest.py). Other areas' tests (the pipeline
on the SageMaker backend) point ``SKINLESION_ENDPOINT_URL`` at ``MotoServer.url`` and put
``fake_credentials()`` in the environment of any subprocess they start.
"""

from __future__ import annotations

import logging
import socket
import urllib.request

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
}
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account id


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class MotoServer:
    """moto's ThreadedMotoServer, started on a loopback port and reset on demand."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._server: object | None = None

    @property
    def url(self) -> str:
        """The endpoint URL every client points at."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        """Start serving; returns the URL."""
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
        server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        server.start()
        self._server = server
        return self.url

    def reset(self) -> None:
        """Forget every resource (moto's POST /moto-api/reset)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.stop()  # type: ignore[attr-defined]
            self._server = None


def fake_credentials() -> dict[str, str]:
    """Credentials moto accepts and AWS rejects, for os.environ or a subprocess."""
    return dict(FAKE_CREDENTIALS)
