"""Fixtures of the data tests: one small generated folder, copied before a test damages it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from skinlesion.data.sample import write_sample


@pytest.fixture(scope="session")
def tiny_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 classes x 10 images at 32 px; read-only for tests (copy it to change it)."""
    root = tmp_path_factory.mktemp("tiny_sample")
    write_sample(root, n_per_class=10, image_size=32, seed=3)
    return root


@pytest.fixture
def sample_copy(tiny_sample: Path, tmp_path: Path) -> Path:
    """A private copy of ``tiny_sample`` that a test may break."""
    return Path(shutil.copytree(tiny_sample, tmp_path / "data"))
