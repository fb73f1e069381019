"""The server's predictions equal the Predictor's and the evaluation job's for the same images."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import httpx
import numpy as np
import pytest

from skinlesion.data.images import load_image
from skinlesion.labels import CLASSES
from skinlesion.models import Predictor, autocast_dtype
from skinlesion.serving.runtime import build_runtime, split_output

FP32_TOLERANCE = 1e-5  # ONNX Runtime vs PyTorch, both float32


def served(client: httpx.Client, data: bytes) -> np.ndarray:
    response = client.post("/invocations", content=data, headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 200, response.text
    probabilities = response.json()["predictions"][0]["probabilities"]
    return np.array([probabilities[c] for c in CLASSES])


def full_resolution_jpegs() -> list[Path]:
    real = os.environ.get("SKINLESION_REAL_DATA")
    folder = Path(real).parent / "ham10000-fullres" / "images" if real else None
    return sorted(folder.glob("*.jpg"))[:6] if folder and folder.is_dir() else []


def test_server_equals_the_predictor(
    client: httpx.Client,
    fitted_serving_model: Path,
    sample_jpegs: list[Path],
    large_jpeg: bytes,
    tmp_path: Path,
) -> None:
    """Same decoding as the preprocess job (draft mode, centre crop), same network, fp32."""
    (tmp_path / "large.jpg").write_bytes(large_jpeg)
    paths = [*sample_jpegs, tmp_path / "large.jpg", *full_resolution_jpegs()]
    predictor = Predictor.load(fitted_serving_model, precision="fp32")
    size = predictor.spec.image_size
    expected = predictor.predict_proba(np.stack([load_image(p, size)[0] for p in paths]))
    got = np.stack([served(client, p.read_bytes()) for p in paths])
    np.testing.assert_allclose(got, expected, atol=FP32_TOLERANCE)
    assert np.array_equal(got.argmax(axis=1), expected.argmax(axis=1))


def test_server_equals_the_evaluation_job(
    client: httpx.Client,
    fitted_serving_model: Path,
    preprocessed_dataset: Path,
    sample_data_dir: Path,
    tmp_path: Path,
) -> None:
    """predictions.csv of ``skinlesion.jobs.evaluate`` vs the server on the original JPEGs."""
    from skinlesion.jobs.evaluate import PREDICTIONS_FILE, run

    run(preprocessed_dataset, fitted_serving_model, tmp_path, split="test", device="cpu")
    with (tmp_path / PREDICTIONS_FILE).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) >= 20
    evaluated = np.array([[float(row[c]) for c in CLASSES] for row in rows])
    got = np.stack(
        [
            served(client, (sample_data_dir / "images" / f"{r['image']}.jpg").read_bytes())
            for r in rows
        ]
    )
    # The evaluation job runs the Predictor at precision "auto": fp32, or bf16 autocast on CPUs
    # with native bf16, whose rounding moves probabilities by up to about 1e-2.
    bf16 = autocast_dtype("auto", "cpu") is not None
    tolerance = 3e-2 if bf16 else FP32_TOLERANCE + 1e-6  # predictions.csv keeps 6 digits
    np.testing.assert_allclose(got, evaluated, atol=tolerance)
    ordered = np.sort(got, axis=1)
    clear = ordered[:, -1] - ordered[:, -2] > 2 * tolerance
    assert clear.sum() >= len(rows) // 2
    assert np.array_equal(got.argmax(axis=1)[clear], evaluated.argmax(axis=1)[clear])
    assert [CLASSES[i] for i in got.argmax(axis=1)[clear]] == [
        row["predicted_label"] for row, keep in zip(rows, clear, strict=True) if keep
    ]


@pytest.mark.parametrize("kind", ["onnx", "torchscript", "torch"])
def test_every_runtime_computes_the_predictor(
    fitted_serving_model: Path, kind: str, tmp_path: Path
) -> None:
    predictor = Predictor.load(fitted_serving_model, precision="fp32")
    size = predictor.spec.image_size
    images = np.random.default_rng(0).integers(0, 256, (5, size, size, 3), dtype=np.uint8)
    name, runtime = build_runtime(predictor, kind, threads=1, cache_dir=tmp_path)
    assert name == kind
    probabilities, ood = split_output(runtime(images))
    np.testing.assert_allclose(probabilities, predictor.predict_proba(images), atol=FP32_TOLERANCE)
    assert np.all(ood == 0.0)  # this bundle has no OOD fit
    np.testing.assert_allclose(
        split_output(runtime(images[:1]))[0],
        predictor.predict_proba(images[:1]),
        atol=FP32_TOLERANCE,
    )


@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
def test_runtimes_average_the_test_time_views_of_a_tta_model(
    fitted_serving_model: Path, kind: str, tmp_path: Path
) -> None:
    """A bundle saved with tta=dihedral is served with its eight views, like the Predictor."""
    import json
    import shutil

    bundle = tmp_path / "model"
    shutil.copytree(fitted_serving_model, bundle)
    spec = json.loads((bundle / "model.json").read_text())
    (bundle / "model.json").write_text(json.dumps({**spec, "tta": "dihedral"}))
    predictor = Predictor.load(bundle, precision="fp32")
    plain = Predictor.load(fitted_serving_model, precision="fp32")
    size = predictor.spec.image_size
    images = np.random.default_rng(0).integers(0, 256, (3, size, size, 3), dtype=np.uint8)
    expected = predictor.predict_proba(images)
    assert np.abs(expected - plain.predict_proba(images)).max() > 1e-3  # the views matter
    _, runtime = build_runtime(predictor, kind, threads=1, cache_dir=tmp_path)
    np.testing.assert_allclose(split_output(runtime(images))[0], expected, atol=FP32_TOLERANCE)
    mirrored = np.ascontiguousarray(images[:, :, ::-1])
    np.testing.assert_allclose(split_output(runtime(mirrored))[0], expected, atol=FP32_TOLERANCE)
