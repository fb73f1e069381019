"""Shared test settings. Area fixtures live in each tests/<area>/conftest.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _private_state_folders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep what the code remembers between runs inside the test session's temp folder.

    The local backend keeps its root in $XDG_STATE_HOME (else under $HOME), and the ONNX runtime
    caches exported graphs in $SKINLESION_ONNX_CACHE (else the system temp dir, where a full run
    of the suite used to leave over a gigabyte). Subprocesses inherit both.
    """
    folders = {"XDG_STATE_HOME": "xdg-state", "SKINLESION_ONNX_CACHE": "onnx-cache"}
    previous = {name: os.environ.get(name) for name in folders}
    for name, folder in folders.items():
        os.environ[name] = str(tmp_path_factory.mktemp(folder))
    yield
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """``SKINLESION_REAL_DATA`` (../shared/data/ham10000); skips with a reason when absent."""
    value = os.environ.get("SKINLESION_REAL_DATA")
    if not value:
        pytest.skip("SKINLESION_REAL_DATA is not set (point it at ../shared/data/ham10000)")
    path = Path(value)
    if not (path / "labels.csv").exists():
        pytest.skip(f"SKINLESION_REAL_DATA={value} holds no labels.csv")
    return path


@pytest.fixture(scope="session")
def sample_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated ISIC-format folder (labels.csv, metadata.csv, images/): 8 classes x 24, 64 px."""
    from skinlesion.data.sample import write_sample

    root = tmp_path_factory.mktemp("sample_data")
    write_sample(root, n_per_class=24, image_size=64, seed=0)
    return root


@pytest.fixture(scope="session")
def preprocessed_dataset(sample_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``sample_data_dir`` after the preprocess job at image size 64 (a dataset folder)."""
    from skinlesion.config import PreprocessConfig
    from skinlesion.jobs.preprocess import run

    output = tmp_path_factory.mktemp("preprocessed") / "dataset"
    run(sample_data_dir, output, PreprocessConfig(image_size=64, workers=1), progress=False)
    return output


# --- AWS emulator (tests/aws/moto_server.py): shared by the aws tests and the pipeline tests ---
@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A moto server on a free loopback port for the whole session; yields its endpoint URL.

    Fake credentials go into os.environ for the session, so no test can reach real AWS. Reset
    it between tests with the ``moto_endpoint`` fixture.
    """
    from tests.aws.moto_server import MotoServer, fake_credentials

    server = MotoServer()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in fake_credentials().items():
            patch.setenv(name, value)
        for name in (
            "AWS_PROFILE",
            "AWS_ENDPOINT_URL",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
        ):
            patch.delenv(name, raising=False)
        server.start()
        try:
            yield server.url
        finally:
            server.stop()


@pytest.fixture
def moto_endpoint(moto_server: str) -> str:
    """The moto server's URL, emptied of every resource before the test."""
    from tests.aws.moto_server import MotoServer

    server = MotoServer(port=int(moto_server.rsplit(":", 1)[1]))
    server.reset()
    return moto_server
