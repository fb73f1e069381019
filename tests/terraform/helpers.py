"""Shared pieces of the Terraform tests: paths, the make runner."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = REPO_ROOT / "terraform"
ENV_ROOTS = sorted(p.name for p in (TERRAFORM_DIR / "envs").iterdir() if p.is_dir())
MODULES = sorted(p.name for p in (TERRAFORM_DIR / "modules").iterdir() if p.is_dir())
DEFAULT_MIRROR = Path("/opt/tf-plugins")


@dataclass(frozen=True)
class Make:
    """Runs this repository's make targets with the Terraform build folder under a tmp dir."""

    env: dict[str, str]
    build: Path

    def __call__(
        self, target: str, *variables: str, timeout: float = 600, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``make <target> VAR=value ...``; a failure shows make's whole output."""
        command = ["make", "--no-print-directory", target, f"TF_BUILD={self.build}", *variables]
        result = subprocess.run(
            command,
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"{' '.join(command)} exited {result.returncode}\n"
                f"--- stdout ---\n{result.stdout[-8000:]}\n--- stderr ---\n{result.stderr[-8000:]}"
            )
        return result
