"""A model registry on a local folder with the semantics of a SageMaker Model Package Group.

Each group is a folder; each version a JSON document numbered from 1, as SageMaker numbers model
packages. Version numbers are taken under a file lock, so parallel registrations never collide.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from skinlesion.backends.base import ApprovalStatus, ModelVersion

log = logging.getLogger(__name__)

LOCAL_ACCOUNT = "000000000000"
LOCAL_REGION = "local"


class RegistryError(LookupError):
    """A model group or version that does not exist, or an invalid status change."""


class LocalModelRegistry:
    """Model package groups under ``root/<group>/<version>.json``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _group_dir(self, group: str) -> Path:
        if not group or "/" in group or group.startswith("."):
            raise RegistryError(f"Invalid model group name {group!r}: use letters, digits and '-'.")
        return self.root / group

    @contextmanager
    def _locked(self, group: str) -> Iterator[Path]:
        folder = self._group_dir(group)
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield folder
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def arn(self, group: str, version: int) -> str:
        return f"arn:aws:sagemaker:{LOCAL_REGION}:{LOCAL_ACCOUNT}:model-package/{group}/{version}"

    def create_version(
        self,
        group: str,
        *,
        model_data_uri: str,
        metrics: dict[str, float],
        metadata: dict[str, str],
        approval_status: ApprovalStatus,
    ) -> ModelVersion:
        """Add the next version of ``group`` (created on first use)."""
        with self._locked(group) as folder:
            numbers = [int(p.stem) for p in folder.glob("*.json") if p.stem.isdigit()]
            number = max(numbers, default=0) + 1
            version = ModelVersion(
                group=group,
                version=number,
                arn=self.arn(group, number),
                model_data_uri=model_data_uri,
                approval_status=approval_status,
                metrics=dict(metrics),
                metadata=dict(metadata),
                created=datetime.now(UTC).isoformat(timespec="seconds"),
            )
            self._write(folder / f"{number}.json", version)
        log.info("registered %s (%s)", version.arn, approval_status.value)
        return version

    def list_versions(self, group: str) -> list[ModelVersion]:
        """All versions of ``group``, oldest first; empty when the group does not exist."""
        folder = self._group_dir(group)
        if not folder.is_dir():
            return []
        paths = sorted(
            (p for p in folder.glob("*.json") if p.stem.isdigit()), key=lambda p: int(p.stem)
        )
        return [self._read(p) for p in paths]

    def get(self, arn: str) -> ModelVersion:
        """The version named by its ARN."""
        try:
            group, number = arn.rsplit("/", 2)[-2:]
            path = self._group_dir(group) / f"{int(number)}.json"
        except ValueError:
            raise RegistryError(
                f"Invalid model package ARN {arn!r}: expected .../model-package/<group>/<version>."
            ) from None
        if not path.exists():
            raise RegistryError(f"No model package {arn} in the registry at {self.root}.")
        return self._read(path)

    def update_status(self, arn: str, status: ApprovalStatus) -> ModelVersion:
        """Change a version's approval status, as UpdateModelPackage does."""
        current = self.get(arn)
        with self._locked(current.group) as folder:
            updated = dataclasses.replace(current, approval_status=status)
            self._write(folder / f"{current.version}.json", updated)
        return updated

    @staticmethod
    def _write(path: Path, version: ModelVersion) -> None:
        payload = dataclasses.asdict(version)
        payload["approval_status"] = version.approval_status.value
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
        tmp.replace(path)

    @staticmethod
    def _read(path: Path) -> ModelVersion:
        raw = json.loads(path.read_text())
        raw["approval_status"] = ApprovalStatus(raw["approval_status"])
        return ModelVersion(**raw)
