"""The model bundle: what training writes to ``SM_MODEL_DIR`` and SageMaker tars to model.tar.gz.

Packing and unpacking live here and nowhere else.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from skinlesion.labels import CLASSES

MODEL_ARCHIVE = "model.tar.gz"
WEIGHTS_FILE = "model.pt"
SPEC_FILE = "model.json"


@dataclass(frozen=True)
class ModelSpec:
    """Everything a consumer needs to rebuild and feed the network, stored as ``model.json``."""

    architecture: str
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    classes: tuple[str, ...] = CLASSES
    version: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    tta: str = "none"  # test-time views averaged: none, flips (4) or dihedral (8)
    # True when the training data was generated (skinlesion sample-data), not photographs:
    # the serving page warns that such a model means nothing on real lesions.
    generated_data: bool = False
    # Fitted on the validation split after training (skinlesion.clinical): logits are divided
    # by ``temperature``; ``operating_point`` is OperatingPoint.to_dict() (refer when the
    # malignancy score >= its threshold), empty when none was fitted; ``ood`` holds the
    # out-of-distribution threshold ({"method", "threshold", "percentile", "file"}), its arrays
    # in ``ood.npz`` next to this file, empty when none was fitted.
    temperature: float = 1.0
    operating_point: dict[str, Any] = field(default_factory=dict)
    ood: dict[str, Any] = field(default_factory=dict)
    # Empty for an image-only network; else what its patient-metadata term reads
    # (skinlesion.patient: fields, vocabularies, and the training split's coverage).
    metadata: dict[str, Any] = field(default_factory=dict)

    def write(self, model_dir: Path) -> None:
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / SPEC_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def read(cls, model_dir: Path) -> ModelSpec:
        path = Path(model_dir) / SPEC_FILE
        if not path.exists():
            raise FileNotFoundError(f"No {SPEC_FILE} in {model_dir}: not a model directory.")
        raw = json.loads(path.read_text())
        raw["mean"] = tuple(raw["mean"])
        raw["std"] = tuple(raw["std"])
        raw["classes"] = tuple(raw["classes"])
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(
                f"{path} has unknown fields {unknown}; accepted: {sorted(known)}. "
                "Was it written by a newer skinlesion?"
            )
        return cls(**raw)


def pack_model(model_dir: Path, archive: Path) -> Path:
    """Tar ``model_dir``'s contents (not the folder itself), as SageMaker does."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for child in sorted(Path(model_dir).iterdir()):
            tar.add(child, arcname=child.name)
    return archive


def unpack_model(archive: Path, destination: Path) -> Path:
    """Extract a model.tar.gz safely (no absolute paths, no escapes) into ``destination``."""
    destination.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(destination, filter="data")
    return destination


def resolve_model_dir(path: Path, scratch: Path) -> Path:
    """Accept a model directory, a directory holding model.tar.gz, or the archive itself."""
    path = Path(path)
    if path.is_file() and path.name.endswith(".tar.gz"):
        return unpack_model(path, scratch)
    if (path / SPEC_FILE).exists():
        return path
    archives = sorted(path.rglob(MODEL_ARCHIVE)) if path.is_dir() else []
    if archives:
        return unpack_model(archives[0], scratch)
    raise FileNotFoundError(
        f"{path} holds no model: expected {SPEC_FILE} + {WEIGHTS_FILE}, or a {MODEL_ARCHIVE}."
    )
