"""Grad-CAM on EfficientNet-Lite0 and MobileNetV2 equals class activation mapping.

Every LesionClassifier ends in last feature map -> global average pooling -> linear head, so the gradient
of class c's logit with respect to feature map k is ``W[c, k] / (H * W)`` everywhere and
Grad-CAM reduces to CAM (Zhou et al., 2016): ``relu(sum_k W[c, k] A_k)``. Computing CAM straight
from the backbone's feature map and the head's weights is an independent check.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from skinlesion.labels import CLASSES
from skinlesion.models import Predictor, build_model, spec_for
from skinlesion.serving.gradcam import GradCam, find_target_layer, heatmap_png

SIZE = 96


@pytest.mark.parametrize(
    ("architecture", "pretrained", "layer"),
    [
        ("efficientnet_lite0", "imagenet", "trunk.net._swish"),
        ("mobilenet_v2", "none", "trunk.18.2"),
    ],
)
def test_gradcam_is_cam_on_the_last_feature_map(
    architecture: str, pretrained: str, layer: str
) -> None:
    torch.manual_seed(0)
    model = build_model(architecture, len(CLASSES), pretrained, SIZE)
    predictor = Predictor(model, spec_for(architecture, SIZE, CLASSES), precision="fp32")
    assert find_target_layer(predictor.model, SIZE)[0] == layer

    images = np.random.default_rng(0).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    inputs = predictor.preprocess(images)
    targets = [0, 3, 7]
    gradcam = GradCam(predictor.model, SIZE)
    maps = gradcam.heatmaps(inputs, targets)
    assert maps.shape == (3, SIZE, SIZE) and maps.dtype == np.float32

    with torch.no_grad():
        features = predictor.model.trunk(inputs.float())  # the last feature map, (N, K, h, w)
        weight = predictor.model.head.weight
        cam = torch.relu(torch.einsum("nkhw,nk->nhw", features, weight[targets]))
        cam = F.interpolate(cam[:, None], size=(SIZE, SIZE), mode="bilinear", align_corners=False)[
            :, 0
        ]
        cam = cam / cam.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1)
    np.testing.assert_allclose(maps, cam.numpy(), atol=1e-4)
    peaks = maps.reshape(3, -1).max(axis=1)
    assert np.all((peaks > 0.999) | (peaks == 0))  # scaled to peak at 1 (0: no positive evidence)
    assert np.any(peaks > 0.999)


def test_gradcam_leaves_the_served_model_alone() -> None:
    model = build_model("mobilenet_v2", len(CLASSES), "none", SIZE)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    predictor = Predictor(model, spec_for("mobilenet_v2", SIZE, CLASSES), precision="fp32")
    gradcam = GradCam(predictor.model, SIZE)
    gradcam.heatmaps(predictor.preprocess(np.zeros((1, SIZE, SIZE, 3), np.uint8)), [1])
    assert gradcam.model is not predictor.model
    assert not any(m._forward_hooks for m in predictor.model.modules())
    for key, value in predictor.model.state_dict().items():
        assert torch.equal(value, before[key])


def test_heatmap_png_is_an_8_bit_greyscale_image() -> None:
    heatmap = np.linspace(0, 1, SIZE * SIZE, dtype=np.float32).reshape(SIZE, SIZE)
    image = Image.open(io.BytesIO(heatmap_png(heatmap)))
    assert image.format == "PNG" and image.mode == "L" and image.size == (SIZE, SIZE)
    pixels = np.asarray(image)
    assert pixels[0, 0] == 0 and pixels[-1, -1] == 255
