"""model.tar.gz packing, unpacking and resolution, as SageMaker lays it out."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from skinlesion.artifacts import ModelSpec, pack_model, resolve_model_dir, unpack_model


def _model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    ModelSpec("mobilenet_v2", 64, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), version="3").write(folder)
    (folder / "model.pt").write_bytes(b"weights")
    return folder


def test_pack_puts_files_at_the_archive_root(tmp_path: Path) -> None:
    archive = pack_model(_model_dir(tmp_path), tmp_path / "out" / "model.tar.gz")
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["model.json", "model.pt"]
    unpacked = unpack_model(archive, tmp_path / "unpacked")
    assert ModelSpec.read(unpacked).version == "3"


def test_resolve_accepts_folder_archive_and_parent(tmp_path: Path) -> None:
    folder = _model_dir(tmp_path)
    archive = pack_model(folder, tmp_path / "artifact" / "model.tar.gz")
    assert resolve_model_dir(folder, tmp_path / "s1") == folder
    assert (resolve_model_dir(archive, tmp_path / "s2") / "model.pt").read_bytes() == b"weights"
    assert (resolve_model_dir(archive.parent, tmp_path / "s3") / "model.json").exists()
    with pytest.raises(FileNotFoundError, match="holds no model"):
        resolve_model_dir(tmp_path / "empty", tmp_path / "s4")


def test_unpack_refuses_path_escapes(tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar.gz"
    payload = tmp_path / "payload"
    payload.write_text("x")
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(payload, arcname="../escaped")
    with pytest.raises(tarfile.TarError):
        unpack_model(evil, tmp_path / "dest")
    assert not (tmp_path / "escaped").exists()
