"""Grad-CAM heatmaps (Selvaraju et al., 2017) for the top class, on the network's last feature map.

The target layer is found, not named: the last module (in execution order) whose output is a
spatial feature map wider than 1x1, i.e. the activation right before global pooling. That is
``trunk.net._swish`` after ``_conv_head`` in EfficientNet-Lite0, ``trunk.18.2`` (ReLU6) in
MobileNetV2, the last block's ReLU in ResNet-50: every architecture works unchanged.
"""

from __future__ import annotations

import copy
import io
import logging
import threading
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def find_target_layer(model: torch.nn.Module, image_size: int) -> tuple[str, torch.nn.Module]:
    """The last leaf module whose output is a feature map (N, C, H, W) with H, W > 1."""
    import torch

    seen: list[tuple[str, torch.nn.Module, tuple[int, ...]]] = []
    handles = []
    for name, module in model.named_modules():
        if next(module.children(), None) is not None:
            continue

        def hook(mod: torch.nn.Module, _: object, output: object, name: str = name) -> None:
            if isinstance(output, torch.Tensor) and output.ndim == 4:
                seen.append((name, mod, tuple(output.shape)))

        handles.append(module.register_forward_hook(hook))
    # The probe goes where the weights are: the evaluate job runs Grad-CAM on its GPU.
    device = next(model.parameters()).device
    try:
        with torch.inference_mode():
            model(torch.zeros(1, 3, image_size, image_size, device=device))
    finally:
        for handle in handles:
            handle.remove()
    spatial = [entry for entry in seen if entry[2][2] > 1 and entry[2][3] > 1]
    if not (spatial or seen):
        raise ValueError(f"{type(model).__name__} has no convolutional feature map for Grad-CAM.")
    name, module, shape = (spatial or seen)[-1]
    log.info("Grad-CAM target layer: %s, feature map %s", name, shape)
    return name, module


class GradCam:
    """Grad-CAM on a private fp32 copy of a network (so it never races the serving runtime)."""

    def __init__(self, model: torch.nn.Module, image_size: int):
        import torch

        self.model = copy.deepcopy(model).float().to(memory_format=torch.contiguous_format).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.image_size = image_size
        self.layer_name, self.layer = find_target_layer(self.model, image_size)
        self._lock = threading.Lock()  # forward hooks are per module: one explanation at a time

    def heatmaps(self, inputs: torch.Tensor, class_indices: list[int]) -> np.ndarray:
        """(N, S, S) float32 in [0, 1]: where the evidence for each image's class lies."""
        import torch
        import torch.nn.functional as F

        captured: list[torch.Tensor] = []

        def keep(_: torch.nn.Module, __: object, output: torch.Tensor) -> None:
            captured.append(output)

        with self._lock:
            handle = self.layer.register_forward_hook(keep)
            try:
                with torch.enable_grad():
                    x = inputs.detach().float().contiguous().requires_grad_(True)
                    logits = self.model(x)
                    activation = captured[-1]
                    index = torch.as_tensor(class_indices, dtype=torch.long).view(-1, 1)
                    score = logits.gather(1, index).sum()
                    (gradient,) = torch.autograd.grad(score, activation)
            finally:
                handle.remove()
        with torch.no_grad():
            weights = gradient.mean(dim=(2, 3), keepdim=True)
            cam = torch.relu((weights * activation.detach()).sum(dim=1, keepdim=True))
            cam = F.interpolate(
                cam, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
            )[:, 0]
            peak = cam.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1)
            return (cam / peak).clamp(0, 1).cpu().numpy().astype(np.float32)


def heatmap_png(heatmap: np.ndarray) -> bytes:
    """A (S, S) map in [0, 1] as an 8-bit greyscale PNG (255: strongest evidence)."""
    image = Image.fromarray(np.round(np.clip(heatmap, 0, 1) * 255).astype(np.uint8), "L")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
