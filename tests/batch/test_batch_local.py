"""The batch pipeline under kfp.local on the local backend: real HAM10000 JPEGs through the
serving app (as Batch Transform would send them), one JSON line per image."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from skinlesion.artifacts import MODEL_ARCHIVE, pack_model
from skinlesion.backends.base import ApprovalStatus
from skinlesion.batch import BatchInputError, score_folder
from skinlesion.models import Predictor
from skinlesion.serving.requests import ImageLimits, decode_image

pytestmark = pytest.mark.slow

HAM_IMAGES = Path("/work/shared/data/ham10000/images")
IMAGES = ("ISIC_0024306.jpg", "ISIC_0024307.jpg", "ISIC_0024308.jpg", "ISIC_0024309.jpg")


@pytest.fixture
def images(tmp_path: Path) -> Path:
    if not HAM_IMAGES.is_dir():
        pytest.skip(f"{HAM_IMAGES} is not on this machine")
    folder = tmp_path / "images"
    folder.mkdir()
    for name in IMAGES:  # a symlink, never a copy of the data into the repository
        (folder / name).symlink_to(HAM_IMAGES / name)
    return folder


def test_the_batch_pipeline_scores_each_image_as_the_endpoint_would(
    tmp_path: Path,
    images: Path,
    fitted_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kfp import local

    from pipelines.batch import batch_pipeline
    from skinlesion.backends.local import LocalBackend

    monkeypatch.setenv("SKINLESION_LOCAL_ROOT", str(tmp_path / "root"))
    archive = pack_model(fitted_model_dir, tmp_path / "artifact" / MODEL_ARCHIVE)
    version = LocalBackend.from_environment().registry.create_version(
        "batch-test",
        model_data_uri=str(archive),
        metrics={"balanced_accuracy": 0.5},
        metadata={},
        approval_status=ApprovalStatus.APPROVED,
    )
    pipeline_root = tmp_path / "pipeline-root"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root))
    batch_pipeline(model_version_arn=version.arn, images_uri=str(images), backend="local")

    [predictions] = list(pipeline_root.rglob("predictions.jsonl"))
    lines = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert [line["image"] for line in lines] == sorted(IMAGES)
    predictor = Predictor.load(fitted_model_dir, precision="fp32")  # ONNX serves fp32
    classes = list(predictor.spec.classes)
    limits = ImageLimits(16, 36_000_000, 20_000)
    for line in lines:
        assert set(line) <= {
            "image", "probabilities", "predicted_class", "model_version", "refer", "metadata_used"
        }  # fmt: skip
        assert line["model_version"] == version.arn
        assert list(line["probabilities"]) == classes
        assert sum(line["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        # The predictor itself on the image as the endpoint decodes it: the same answer.
        pixels = decode_image(
            (images / line["image"]).read_bytes(), predictor.spec.image_size, limits
        )
        expected = predictor.predict_proba(pixels[None])[0]
        got = np.array([line["probabilities"][c] for c in classes])
        np.testing.assert_allclose(got, expected, atol=2e-3)
        assert line["predicted_class"] == classes[int(np.argmax(expected))]


def test_a_folder_with_a_non_jpeg_is_refused_naming_it(
    tmp_path: Path,
    images: Path,
    fitted_model_dir: Path,
) -> None:
    shutil.copyfile(Path(__file__), images / "notes.txt")
    with pytest.raises(BatchInputError, match=r"notes.txt.*accepts only .jpg, .jpeg"):
        score_folder(fitted_model_dir, images, tmp_path / "out.jsonl", "v1")
    with pytest.raises(BatchInputError, match=r"No images under .*empty"):
        (tmp_path / "empty").mkdir()
        score_folder(fitted_model_dir, tmp_path / "empty", tmp_path / "out.jsonl", "v1")
