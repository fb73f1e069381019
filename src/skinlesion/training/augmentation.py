"""Batched augmentation for dermoscopy on the training device: one affine resample per batch.

Dermoscopic images have no canonical orientation, so every flip and 90-degree rotation is a
valid view; a random resized crop adds scale; a mild colour jitter covers differences between
dermatoscopes and lighting. Flips, rotations and the crop fold into one affine matrix per image
and a single ``grid_sample`` call on the whole batch, which is far cheaper than per-image PIL or
torchvision transforms in loader workers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from skinlesion.models import resize


@dataclass(frozen=True)
class AugmentSettings:
    """Ranges of the random transforms."""

    scale: tuple[float, float] = (0.5, 1.0)  # crop area as a fraction of the image
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # crop aspect ratio
    brightness: float = 0.2  # multiply by U(1 - b, 1 + b)
    contrast: float = 0.2
    saturation: float = 0.2

    def __post_init__(self) -> None:
        low, high = self.scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"Invalid crop scale {self.scale}: need 0 < low <= high <= 1.")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"Invalid crop ratio {self.ratio}: need 0 < low <= high.")
        for name in ("brightness", "contrast", "saturation"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"Invalid {name} {getattr(self, name)}: must be in [0, 1).")


class BatchAugment:
    """Random dihedral view + resized crop + colour jitter, for float (N, 3, H, W) in [0, 1].

    Random parameters come from the module's own CPU generator, whose state the checkpoint keeps,
    so a resumed run draws the same augmentations as an uninterrupted one.
    """

    def __init__(self, output_size: int, settings: AugmentSettings | None = None, seed: int = 0):
        self.output_size = output_size
        self.settings = settings or AugmentSettings()
        self.generator = torch.Generator()
        self.generator.manual_seed(seed)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])

    def _uniform(self, n: int, low: float, high: float) -> torch.Tensor:
        return torch.rand(n, generator=self.generator) * (high - low) + low

    def affine(self, n: int) -> torch.Tensor:
        """(n, 2, 3) matrices mapping output to input coordinates (``affine_grid`` convention)."""
        s = self.settings
        area = self._uniform(n, *s.scale)
        log_ratio = self._uniform(n, math.log(s.ratio[0]), math.log(s.ratio[1]))
        # Half-extents of the crop in normalised [-1, 1] coordinates (1 = the whole side).
        width = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)
        height = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
        centre_x = (torch.rand(n, generator=self.generator) * 2 - 1) * (1 - width)
        centre_y = (torch.rand(n, generator=self.generator) * 2 - 1) * (1 - height)
        quarter_turns = torch.randint(0, 4, (n,), generator=self.generator)
        flip = torch.randint(0, 2, (n,), generator=self.generator) * 2 - 1  # -1 mirrors x
        angle = quarter_turns.double() * (math.pi / 2)
        cos, sin = torch.cos(angle).round(), torch.sin(angle).round()  # exact 0 / +-1
        # Dihedral part D = R(angle) @ diag(flip, 1), then scale rows by the crop half-extents.
        theta = torch.zeros(n, 2, 3, dtype=torch.float64)
        theta[:, 0, 0] = cos * flip
        theta[:, 0, 1] = -sin
        theta[:, 1, 0] = sin * flip
        theta[:, 1, 1] = cos
        theta[:, 0, :2] *= width.double()[:, None]
        theta[:, 1, :2] *= height.double()[:, None]
        theta[:, 0, 2] = centre_x.double()
        theta[:, 1, 2] = centre_y.double()
        return theta.float()

    def jitter_factors(self, n: int) -> torch.Tensor:
        """(n, 3): brightness, contrast and saturation factors."""
        s = self.settings
        return torch.stack(
            [
                self._uniform(n, 1 - s.brightness, 1 + s.brightness),
                self._uniform(n, 1 - s.contrast, 1 + s.contrast),
                self._uniform(n, 1 - s.saturation, 1 + s.saturation),
            ],
            dim=1,
        )

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        n = images.shape[0]
        theta = self.affine(n).to(images.device)
        factors = self.jitter_factors(n).to(images.device)
        if images.shape[-1] > self.output_size:
            # Crops only enlarge; shrinking a larger source first avoids aliasing.
            images = resize(images, self.output_size)
        grid = F.affine_grid(theta, [n, 3, self.output_size, self.output_size], align_corners=False)
        out = F.grid_sample(
            images, grid, mode="bilinear", padding_mode="reflection", align_corners=False
        )
        return color_jitter(out, factors)


def _gray(images: torch.Tensor) -> torch.Tensor:
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype, device=images.device)
    return (images * weights.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)


def color_jitter(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast, saturation by per-image factors (N, 3); clamps to [0, 1]."""
    brightness, contrast, saturation = (factors[:, i].view(-1, 1, 1, 1) for i in range(3))
    out = images * brightness
    mean = _gray(out).mean(dim=(2, 3), keepdim=True)
    out = (out - mean) * contrast + mean
    gray = _gray(out)
    out = (out - gray) * saturation + gray
    return out.clamp_(0.0, 1.0)
