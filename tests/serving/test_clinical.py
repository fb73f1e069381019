"""Calibration, referral and OOD refusal in the served model: every runtime agrees with the
Predictor, and the endpoint answers ``refer`` or ``assessable: false`` over real HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from skinlesion.artifacts import ModelSpec
from skinlesion.capture import iter_capture_records
from skinlesion.data.store import read_split
from skinlesion.labels import CLASSES
from skinlesion.models import Predictor, load_model, save_model
from skinlesion.serving.runtime import build_runtime, split_output
from skinlesion.training.calibration import fit_clinical_settings

from .conftest import RunningServer, jpeg_bytes, start_server, stop_server

TOLERANCE = 1e-4  # float32 Mahalanobis distances of a few tens, across three runtimes


@pytest.fixture(scope="session")
def clinical_model(
    fitted_serving_model: Path, preprocessed_dataset: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The serving fixture model after the post-training fit, with its temperature forced to 2.5
    (the fitted one may land near 1, where a forgotten division would go unnoticed)."""
    model, spec = load_model(fitted_serving_model)
    train = read_split(preprocessed_dataset, "train", mmap=False)
    val = read_split(preprocessed_dataset, "val", mmap=False)
    fitted = fit_clinical_settings(
        model,
        spec,
        train_images=train.images,
        train_labels=train.labels,
        val_images=val.images,
        val_labels=val.labels,
    )
    assert fitted.operating_point and fitted.ood and fitted.temperature > 0
    return save_model(
        model, replace(fitted, temperature=2.5), tmp_path_factory.mktemp("clinical") / "model"
    )


def test_the_bundle_round_trips_its_clinical_settings(clinical_model: Path) -> None:
    spec = ModelSpec.read(clinical_model)
    assert spec.temperature == 2.5
    assert set(spec.operating_point["malignant_classes"]) == {"MEL", "BCC", "SCC"}
    assert (clinical_model / spec.ood["file"]).exists()
    model, _ = load_model(clinical_model)
    assert model.ood_stats is not None and model.ood_stats.threshold == spec.ood["threshold"]
    quality = model.ood_stats.quality
    assert quality is not None and quality.threshold == spec.ood["quality_threshold"]
    assert spec.ood["quality_statistics"][0] == "sharpness"


@pytest.mark.parametrize("kind", ["onnx", "torchscript", "torch"])
def test_every_runtime_applies_the_temperature_and_the_ood_score(
    clinical_model: Path, preprocessed_dataset: Path, kind: str, tmp_path: Path
) -> None:
    predictor = Predictor.load(clinical_model, precision="fp32")
    images = np.asarray(read_split(preprocessed_dataset, "test").images[:6])
    noise = np.random.default_rng(0).integers(0, 256, (2, *images.shape[1:]), dtype=np.uint8)
    batch = np.concatenate([images, noise])
    logits, features = predictor.logits_with_embeddings(batch)
    expected = np.exp(logits / 2.5 - (logits / 2.5).max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    _, runtime = build_runtime(predictor, kind, threads=1, cache_dir=tmp_path)
    probabilities, ood = split_output(runtime(batch))
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    uncalibrated = np.exp(logits - logits.max(axis=1, keepdims=True))
    uncalibrated /= uncalibrated.sum(axis=1, keepdims=True)
    assert np.abs(probabilities - uncalibrated).max() > 1e-2  # the temperature did something
    np.testing.assert_allclose(ood, predictor.ood_scores(features), rtol=TOLERANCE, atol=1e-3)
    assert ood.min() > 0


@pytest.fixture(scope="module")
def clinical_server(
    clinical_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    running = start_server(clinical_model, tmp_path_factory.mktemp("clinical-server"))
    try:
        yield running
    finally:
        stop_server(running)


def test_the_endpoint_refers_and_refuses(
    clinical_server: RunningServer, clinical_model: Path, preprocessed_dataset: Path
) -> None:
    spec = ModelSpec.read(clinical_model)
    threshold = spec.operating_point["threshold"]
    test = read_split(preprocessed_dataset, "test")
    images = [np.asarray(test.images[i]) for i in range(4)]
    blank = np.full_like(images[0], 128)
    import base64

    body = {
        "instances": [{"b64": base64.b64encode(jpeg_bytes(a)).decode()} for a in [*images, blank]]
    }
    with clinical_server.client() as client:
        response = client.post("/invocations", json=body)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    refused = predictions[-1]
    assert refused["assessable"] is False and "blank frame" in refused["reason"]
    assert "probabilities" not in refused and "refer" not in refused
    for prediction in predictions[:-1]:
        if not prediction["assessable"]:
            assert "unlike the training images" in prediction["reason"]
            continue
        malignancy = sum(prediction["probabilities"][c] for c in ("MEL", "BCC", "SCC"))
        assert prediction["malignancy_score"] == pytest.approx(malignancy, abs=1e-6)
        assert prediction["referral_threshold"] == threshold
        assert prediction["refer"] is (malignancy >= threshold)
    assert sum(p["assessable"] for p in predictions[:-1]) >= 3
    # Data capture keeps the answer, refusal included (the monitor counts refusals from it).
    event_id = response.headers["x-event-id"]
    records = {}
    for _ in range(100):  # the writer works off the request path; give it a moment
        if clinical_server.capture_dir.is_dir():  # made by the writer's first record
            records = {r.event_id: r for r in iter_capture_records(clinical_server.capture_dir)}
            if event_id in records:
                break
        time.sleep(0.1)
    assert records[event_id].output_json()["predictions"][-1]["assessable"] is False


def test_an_unlike_image_is_refused(clinical_server: RunningServer) -> None:
    """A photograph-like pattern (stripes): not blank or saturated, yet refused as unlike."""
    stripes = np.zeros((64, 64, 3), np.uint8)
    stripes[:, ::4] = (20, 200, 30)
    stripes[::3] = (250, 240, 10)
    with clinical_server.client() as client:
        response = client.post(
            "/invocations", content=jpeg_bytes(stripes), headers={"Content-Type": "image/jpeg"}
        )
    assert response.status_code == 200
    (prediction,) = response.json()["predictions"]
    assert prediction["assessable"] is False, prediction
    assert "unlike the training images" in prediction["reason"]
    assert CLASSES[0] not in json.dumps(prediction)
