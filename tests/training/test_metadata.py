"""Patient metadata in training: the network learns from it, and without it falls back to the
image alone (the synthetic images here carry no class signal, the anatomic site does)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from skinlesion import patient
from skinlesion.config import ConfigError, TrainConfig
from skinlesion.data.store import MANIFEST, SplitArrays, write_split, write_split_metadata
from skinlesion.labels import CLASSES
from skinlesion.models import Predictor, load_model, save_model
from skinlesion.training.loop import TrainResult, fit

# One site per class: the only signal in this dataset.
CLASS_SITE = ("back", "face", "foot", "scalp", "hand", "neck", "ear", "acral")


def write_metadata_only_dataset(path: Path, per_split: dict[str, int]) -> Path:
    """Grey noise images (no class signal); each class's images come from its own site."""
    import json

    rng = np.random.default_rng(3)
    for split, count in per_split.items():
        labels = np.repeat(np.arange(len(CLASSES)), count)
        images = rng.integers(90, 170, size=(len(labels), 32, 32, 3), dtype=np.uint8)
        ids = [f"ISIC_{split}_{i:05d}" for i in range(len(labels))]
        write_split(path, split, SplitArrays(images, labels.astype(np.int64), ids, ids))
        rows = {
            image: {"age_approx": "50", "sex": "female", "anatom_site": CLASS_SITE[label]}
            for image, label in zip(ids, labels, strict=True)
        }
        write_split_metadata(path, split, ids, rows)
    manifest = {
        "classes": list(CLASSES),
        "image_size": 32,
        "class_weights": [1.0] * len(CLASSES),
        "splits": {s: {"count": c * len(CLASSES)} for s, c in per_split.items()},
    }
    (path / MANIFEST).write_text(json.dumps(manifest))
    return path


def fit_metadata_only(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrainResult]:
    """The dataset above (32 px) and a network fitted on it with the metadata term, in seconds."""
    dataset = write_metadata_only_dataset(
        tmp_path_factory.mktemp("meta-dataset"), {"train": 16, "val": 6, "test": 4}
    )
    config = TrainConfig(
        architecture="efficientnet_lite0",
        pretrained="imagenet",
        epochs=6,
        batch_size=32,
        learning_rate=0.003,
        image_size=32,
        freeze_stages=8,  # every trunk stage: the images hold no signal here
        metadata=True,
        deterministic=True,
        balancing="none",
        patience=0,
    )
    return dataset, fit(config, dataset)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    dataset, result = fit_metadata_only(tmp_path_factory)
    model_dir = save_model(result.model, result.spec, tmp_path_factory.mktemp("meta-model"))
    return dataset, model_dir


def test_the_network_learns_from_metadata_and_falls_back_to_chance_without(
    trained: tuple[Path, Path],
) -> None:
    from skinlesion.data.store import read_split, read_split_metadata
    from skinlesion.metrics import balanced_accuracy

    dataset, model_dir = trained
    predictor = Predictor.load(model_dir, precision="fp32")
    assert predictor.spec.metadata["train_coverage"]["anatom_site"] == 1.0
    val = read_split(dataset, "val", mmap=False)
    rows = patient.encode_rows(val.image_ids, read_split_metadata(dataset, "val"))
    with_meta, _ = predictor.logits_with_embeddings(val.images, metadata=rows)
    without, _ = predictor.logits_with_embeddings(val.images)

    def softmax(z: np.ndarray) -> np.ndarray:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    assert balanced_accuracy(val.labels, softmax(with_meta)) > 0.9
    assert balanced_accuracy(val.labels, softmax(without)) < 0.4  # chance is 0.125

    # What the server does: the image-only probabilities, then the metadata offsets.
    t = 1.7
    adjusted = patient.adjust(softmax(without / t), predictor.metadata_offsets(rows), t)
    np.testing.assert_allclose(adjusted, softmax(with_meta / t), atol=1e-5)


def test_a_bundle_with_another_metadata_encoding_is_refused(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    import dataclasses

    _, model_dir = trained
    model, spec = load_model(model_dir)
    entry = dict(spec.metadata, sites=["trunk"])
    save_model(model, dataclasses.replace(spec, metadata=entry), tmp_path)
    with pytest.raises(ValueError, match="encodes patient metadata as"):
        load_model(tmp_path)


def test_image_only_networks_ignore_metadata_and_offsets_are_zero(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    from skinlesion.models import build_model, spec_for

    model = build_model("efficientnet_lite0", len(CLASSES), "none", 32)
    save_model(model, spec_for("efficientnet_lite0", 32, CLASSES), tmp_path)
    predictor = Predictor.load(tmp_path, precision="fp32")
    rows = np.stack([patient.encode({"sex": "male"})] * 2)
    assert not predictor.spec.metadata
    assert np.all(predictor.metadata_offsets(rows) == 0)


def test_metadata_dropout_is_a_share() -> None:
    with pytest.raises(ConfigError, match="metadata_dropout"):
        TrainConfig(metadata=True, metadata_dropout=1.0)


def test_evaluate_scores_with_metadata_and_reports_image_only_and_cross_validated(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    import json

    from skinlesion.jobs import evaluate

    dataset, model_dir = trained
    metrics = evaluate.run(dataset, model_dir, tmp_path, gradcam_examples=0)
    assert metrics["balanced_accuracy"] > 0.9
    assert metrics["balanced_accuracy_image_only"] < 0.4
    # The held-out cross-validation refits a head on features + metadata: the site decides.
    assert metrics["cv_balanced_accuracy"] > 0.9
    assert metrics["cv_balanced_accuracy_low"] <= metrics["cv_balanced_accuracy"]
    assert metrics["cv_balanced_accuracy"] <= metrics["cv_balanced_accuracy_high"]
    evaluation = json.loads((tmp_path / evaluate.EVALUATION_FILE).read_text())
    assert evaluation["clinical"]["cross_validation"]["n_images"] == 8 * (6 + 4)
    report = (tmp_path / evaluate.REPORT_FILE).read_text()
    assert "Test split and cross-validated estimate" in report
    assert "without the patient metadata" in report
    card = (tmp_path / evaluate.MODEL_CARD_MARKDOWN).read_text()
    assert "Cross-validated balanced accuracy" in card and "(image only)" in card
