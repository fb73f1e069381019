"""Shared test settings. Area fixtures live in each tests/<area>/conftest.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


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
