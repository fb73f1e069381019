"""build_model, normalisation, precision choice, and the Predictor over a saved bundle."""

from __future__ import annotations

import logging
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from skinlesion.artifacts import WEIGHTS_FILE, ModelSpec
from skinlesion.config import ARCHITECTURES, TrainConfig
from skinlesion.labels import CLASSES
from skinlesion.models import (
    IMAGENET_MEAN,
    LITE_MEAN,
    Predictor,
    autocast_dtype,
    build_model,
    cpu_has_fast_bf16,
    efficientnet_lite0_weights_file,
    model_input,
    normalization,
    save_model,
    spec_for,
)


@pytest.fixture(autouse=True)
def _one_thread():
    # Two cores shared with other test processes: one intra-op thread avoids spin-wait stalls.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_architecture_gives_logits_and_features(architecture: str) -> None:
    torch.manual_seed(0)
    model = build_model(architecture, len(CLASSES), "none", image_size=32).eval()
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        logits, features = model.forward_with_features(images)
        plain = model(images)
    assert logits.shape == (2, 8)
    assert features.shape == (2, model.feature_dim)
    assert torch.equal(logits, plain)


def test_efficientnet_lite0_loads_the_wheel_weights() -> None:
    model = build_model("efficientnet_lite0", 8, "imagenet", image_size=64)
    state = torch.load(efficientnet_lite0_weights_file(), map_location="cpu", weights_only=True)
    assert torch.equal(model.trunk.net._conv_stem.weight, state["_conv_stem.weight"])
    assert torch.equal(
        model.trunk.net._blocks[3]._depthwise_conv.weight, state["_blocks.3._depthwise_conv.weight"]
    )
    assert model.head.out_features == 8
    # The static "same" padding follows image_size: a 64 px input keeps 2 px after 5 halvings.
    assert model.trunk(torch.rand(1, 3, 64, 64)).shape[-1] == 2


def test_auto_falls_back_to_random_weights_when_the_download_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A proxy on a closed port makes the download fail the same way on any machine.
    for name in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    urllib.request.install_opener(None)  # rebuild the default opener from the patched env
    try:
        with caplog.at_level(logging.WARNING, logger="skinlesion.models"):
            model = build_model("mobilenet_v2", 8, "auto", image_size=32)
        assert model.head.out_features == 8
        assert "random initialisation" in caplog.text
        with pytest.raises(RuntimeError, match="pretrained=auto"):
            build_model("mobilenet_v2", 8, "imagenet", image_size=32)
    finally:
        urllib.request.install_opener(None)


def test_invalid_choices_name_the_accepted_values() -> None:
    with pytest.raises(ValueError, match="Accepted: efficientnet_lite0, mobilenet_v2"):
        build_model("vgg16", 8)
    with pytest.raises(ValueError, match="Accepted: auto, imagenet, none"):
        build_model("mobilenet_v2", 8, "yes")
    with pytest.raises(ValueError, match="Accepted on CPU: auto, fp32, bf16"):
        autocast_dtype("fp16", "cpu")


def test_normalization_and_precision() -> None:
    assert normalization("efficientnet_lite0") == (LITE_MEAN, (0.5, 0.5, 0.5))
    assert normalization("resnet50")[0] == IMAGENET_MEAN
    assert autocast_dtype("fp32", "cpu") is None
    assert autocast_dtype("bf16", "cpu") is torch.bfloat16
    assert autocast_dtype("auto", "cpu") is (torch.bfloat16 if cpu_has_fast_bf16() else None)


def test_model_input_resizes_normalises_and_is_channels_last() -> None:
    images = torch.full((2, 40, 40, 3), 255, dtype=torch.uint8)
    x = model_input(images, image_size=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    assert x.shape == (2, 3, 32, 32)
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(x, torch.ones_like(x))


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(1)
    model = build_model("mobilenet_v2", len(CLASSES), "none", image_size=32)
    model.train()
    with torch.no_grad():  # give the batch-norm running statistics non-trivial values
        model(torch.rand(8, 3, 32, 32))
    directory = tmp_path_factory.mktemp("model")
    save_model(model, spec_for("mobilenet_v2", 32, CLASSES, val_balanced_accuracy=0.5), directory)
    return directory


def test_predictor_probabilities_match_the_saved_network(saved_model: Path) -> None:
    predictor = Predictor.load(saved_model, precision="fp32")
    assert predictor.spec == ModelSpec.read(saved_model)
    assert predictor.spec.metrics == {"val_balanced_accuracy": 0.5}
    images = np.random.default_rng(0).integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)
    probabilities = predictor.predict_proba(images, batch_size=2)
    assert probabilities.shape == (5, 8) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)

    reference = build_model("mobilenet_v2", 8, "none", 32).eval()
    reference.load_state_dict(torch.load(saved_model / WEIGHTS_FILE, weights_only=True))
    with torch.no_grad():
        x = model_input(
            torch.from_numpy(images), image_size=32, mean=IMAGENET_MEAN, std=predictor.spec.std
        )
        expected = torch.softmax(reference(x), dim=1).numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)

    embeddings = predictor.embed(images)
    assert embeddings.shape == (5, predictor.model.feature_dim)
    # A single HWC image of another size is resized and treated as a batch of one.
    single = predictor.predict_proba(np.zeros((50, 60, 3), np.uint8))
    assert single.shape == (1, 8)
    empty = predictor.predict_proba(np.zeros((0, 32, 32, 3), np.uint8))
    assert empty.shape == (0, 8)


def test_predictor_bf16_agrees_with_fp32(saved_model: Path) -> None:
    images = np.random.default_rng(1).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    fp32 = Predictor.load(saved_model, precision="fp32").predict_proba(images)
    bf16 = Predictor.load(saved_model, precision="bf16").predict_proba(images)
    np.testing.assert_allclose(bf16.sum(axis=1), 1.0, rtol=1e-5)
    assert np.abs(bf16 - fp32).max() < 0.05


@pytest.mark.parametrize(
    ("architecture", "count"),
    [
        ("efficientnet_lite0", 8),
        ("mobilenet_v2", 7),
        ("efficientnet_b0", 8),
        ("resnet50", 5),
        ("densenet121", 5),
    ],
)
def test_stages_partition_the_trunk_stem_first(architecture: str, count: int) -> None:
    model = build_model(architecture, len(CLASSES), "none", image_size=32)
    stages = model.stages()
    assert len(stages) == count
    modules = [module for stage in stages for module in stage]
    assert len({id(m) for m in modules}) == len(modules)  # no module in two stages
    trunk_modules = {id(m) for m in model.trunk.modules()}
    assert all(id(m) in trunk_modules for m in modules)
    first_conv = next(m for m in model.trunk.modules() if isinstance(m, torch.nn.Conv2d))
    assert any(first_conv is m for m in stages[0][0].modules())  # the stem comes first


def test_frozen_stages_keep_weights_and_statistics_through_training() -> None:
    torch.manual_seed(0)
    model = build_model("efficientnet_lite0", len(CLASSES), "imagenet", image_size=32)
    model.freeze_stages(4)
    frozen = [m for stage in model.stages()[:4] for m in stage]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.01)
    model.train()
    assert all(not m.training for f in frozen for m in f.modules())  # BN keeps running stats
    loss = model(torch.rand(4, 3, 32, 32)).logsumexp(dim=1).mean()
    loss.backward()
    optimizer.step()
    after = model.state_dict()
    frozen_keys = {
        key
        for key in before
        if any(
            key.startswith(prefix)
            for prefix in (
                "trunk.net._conv_stem",
                "trunk.net._bn0",
                *(f"trunk.net._blocks.{i}." for i in range(5)),
            )
        )
    }
    assert frozen_keys
    assert all(torch.equal(before[k], after[k]) for k in frozen_keys)
    assert not torch.equal(before["head.weight"], after["head.weight"])
    assert not torch.equal(
        before["trunk.net._blocks.5._bn1.running_mean"],
        after["trunk.net._blocks.5._bn1.running_mean"],
    )


def test_freeze_stages_out_of_range_names_the_accepted_range() -> None:
    model = build_model("resnet50", len(CLASSES), "none")
    with pytest.raises(ValueError, match="accepted 0 to 5"):
        model.freeze_stages(6)


def test_dihedral_tta_is_invariant_to_flips_and_transposes() -> None:
    torch.manual_seed(0)
    model = build_model("efficientnet_lite0", len(CLASSES), "imagenet", image_size=32).eval()
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        plain = model.features(images)
        model.tta = "dihedral"
        averaged = model(images)
        for view in (images.flip(3), images.flip(2), images.transpose(2, 3).flip(3)):
            torch.testing.assert_close(model(view), averaged, atol=1e-5, rtol=1e-5)
        # The average of the eight views' logits, one forward pass per view.
        model.tta = "none"
        views = [images, images.flip(3), images.flip(2), images.flip((2, 3))]
        views += [v.transpose(2, 3) for v in views]
        expected = torch.stack([model(v) for v in views]).mean(dim=0)
        assert not torch.allclose(
            model.features(images.flip(3)), plain, atol=1e-3
        )  # the net is not
    torch.testing.assert_close(averaged, expected, atol=1e-5, rtol=1e-5)
    model.train()
    model.tta = "flips"
    assert model(images).shape == (2, 8)  # training passes see one view


def test_tta_travels_with_the_saved_model(tmp_path: Path) -> None:
    from dataclasses import replace

    torch.manual_seed(0)
    model = build_model("mobilenet_v2", len(CLASSES), "none", image_size=32)
    spec = replace(spec_for("mobilenet_v2", 32, CLASSES), tta="flips")
    save_model(model, spec, tmp_path)
    predictor = Predictor.load(tmp_path, precision="fp32")
    assert predictor.spec.tta == "flips" and predictor.model.tta == "flips"
    image = np.random.default_rng(0).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    mirrored = np.ascontiguousarray(image[:, ::-1])
    np.testing.assert_allclose(
        predictor.predict_proba(image), predictor.predict_proba(mirrored), atol=1e-6
    )
    with pytest.raises(ValueError, match="Accepted: none, flips, dihedral"):
        TrainConfig(tta="rotations")
