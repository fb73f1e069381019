"""Fixtures of the Terraform tests: make targets in an isolated build folder, a moto server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.terraform.helpers import DEFAULT_MIRROR, REPO_ROOT, Make


@pytest.fixture(scope="session")
def terraform_bin() -> str:
    """Path of the terraform binary; skips when it is not installed."""
    path = shutil.which("terraform")
    if path is None:
        pytest.skip("terraform is not on PATH (https://developer.hashicorp.com/terraform/install)")
    if shutil.which("make") is None:
        pytest.skip("make is not on PATH")
    return path


@pytest.fixture(scope="session")
def make(terraform_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Make:
    """make with TF_BUILD under a session tmp dir and every root run from a copy.

    With a provider mirror the plugin cache holds only links to it, so a fresh one costs
    nothing; without one, the repository's build/terraform/plugin-cache keeps the downloads.
    """
    build = tmp_path_factory.mktemp("terraform-build")
    env = dict(os.environ)
    # POSIX shells export ENV (their start-up file); make would take it for the environment.
    env.pop("ENV", None)
    env.update({"TF_RUN_COPY": "1", "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"})
    mirror = Path(env.get("TF_MIRROR", DEFAULT_MIRROR))
    if not mirror.is_dir():
        env["TF_PLUGIN_CACHE"] = str(REPO_ROOT / "build" / "terraform" / "plugin-cache")
    return Make(env=env, build=build)


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server of this module's own on a loopback port, stopped when its tests are done.

    The server binds port 0 and reports the port the kernel gave it. Picking a free port here and
    handing it to the server (as this fixture once did) leaves a window in which another process
    can take the port: on a machine where several test sessions run at once, the health check
    then finds *their* moto server, and this session's Terraform state lock, lock table and
    resources meet theirs (a lock already held, a table that exists, buckets that are not ours).
    """
    pytest.importorskip(
        "moto.server", reason="moto[server] is not installed (pip install -e .[dev])"
    )
    work = tmp_path_factory.mktemp("moto")
    log_path = work / "moto.log"
    port_file = work / "port"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("moto_launcher.py")), str(port_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"moto server did not start:\n{log_path.read_text()}")
            time.sleep(0.1)
        url = f"http://127.0.0.1:{int(port_file.read_text())}"
        # The port is bound before it is written, so this answer comes from our server.
        with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=10):
            pass
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
