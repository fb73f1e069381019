"""Runs a moto server on a loopback port that the kernel picks and reports that port in a file.

The server binds port 0 itself, so no other process can take the port between choosing it and
listening on it (see conftest.moto_endpoint). Usage: python moto_launcher.py <port file>.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from types import FrameType

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server


def main(port_file: Path) -> None:
    """Bind 127.0.0.1:0, write the bound port to ``port_file`` atomically, serve until SIGTERM."""
    server = make_server(
        "127.0.0.1",
        0,
        DomainDispatcherApplication(create_backend_app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )
    port = int(server.server_address[1])
    # moto builds some URLs (e.g. SQS queue URLs) from MOTO_PORT, as `moto_server -p` sets it.
    os.environ["MOTO_PORT"] = str(port)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    partial = port_file.with_name(port_file.name + ".partial")
    partial.write_text(str(port))
    partial.replace(port_file)  # the reader never sees a half-written port
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: moto_launcher.py <port file>")
    main(Path(sys.argv[1]))
