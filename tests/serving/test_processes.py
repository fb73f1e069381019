"""The server as a process: several workers, and a model that cannot be loaded stops it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from tests.serving.conftest import free_port, start_server, stop_server


@pytest.mark.slow
def test_two_workers_share_the_port(
    packed_serving_model: Path, tmp_path: Path, sample_jpegs: list[Path]
) -> None:
    server = start_server(
        packed_serving_model, tmp_path, "--workers", "2", "--threads", "1", "--no-explain"
    )
    try:
        # A fresh connection per request, so that the kernel spreads them over both workers;
        # a worker accepts connections only once its model is loaded, so none gets a 503.
        for path in sample_jpegs * 2:
            response = httpx.post(
                f"{server.url}/invocations",
                content=path.read_bytes(),
                headers={"Content-Type": "image/jpeg", "Connection": "close"},
                timeout=60,
            )
            assert response.status_code == 200, response.text
        assert httpx.get(f"{server.url}/ping").json()["status"] == "ok"
    finally:
        stop_server(server)
    assert server.process.returncode == 0, server.log_tail()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_unloadable_model_stops_the_server(tmp_path: Path, workers: str) -> None:
    empty = tmp_path / "no-model"
    empty.mkdir()
    command = [
        sys.executable, "-m", "skinlesion.serving", "--model-dir", str(empty),
        "--host", "127.0.0.1", "--port", str(free_port()), "--workers", workers, "--threads", "1",
    ]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert finished.returncode == 3, finished.stderr[-2000:]
    assert "holds no model" in finished.stderr


def test_a_missing_model_directory_is_refused_at_once(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "skinlesion.serving", "--model-dir", str(tmp_path / "nothing")]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2
    assert "does not exist" in finished.stderr
