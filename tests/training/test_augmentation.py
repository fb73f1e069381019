"""Batched augmentation: exact dihedral views, value range, reproducibility from the state."""

from __future__ import annotations

import pytest
import torch

from skinlesion.training.augmentation import AugmentSettings, BatchAugment, color_jitter


def _dihedral_views(image: torch.Tensor) -> list[torch.Tensor]:
    views = []
    for flipped in (image, image.flip(-1)):
        views += [torch.rot90(flipped, k, dims=(-2, -1)) for k in range(4)]
    return views


def test_without_crop_or_jitter_every_output_is_an_exact_dihedral_view() -> None:
    settings = AugmentSettings(scale=(1, 1), ratio=(1, 1), brightness=0, contrast=0, saturation=0)
    augment = BatchAugment(16, settings, seed=3)
    images = torch.rand(32, 3, 16, 16)
    out = augment(images)
    seen = set()
    for original, augmented in zip(images, out, strict=True):
        matches = [
            i
            for i, v in enumerate(_dihedral_views(original))
            if torch.allclose(v, augmented, atol=1e-5)
        ]
        assert matches, "an augmented image is not a flip/rotation of its input"
        seen.add(matches[0])
    assert len(seen) >= 6  # the views are actually drawn at random


def test_output_size_range_and_reproducibility() -> None:
    images = torch.rand(8, 3, 48, 48)
    first = BatchAugment(32, seed=7)
    state = first.state_dict()
    out = first(images)
    assert out.shape == (8, 3, 32, 32)
    assert out.min() >= 0 and out.max() <= 1
    second = BatchAugment(32, seed=99)
    second.load_state_dict(state)
    assert torch.equal(second(images), out)
    assert not torch.equal(first(images), out)  # the generator moved on


def test_color_jitter_identity_and_brightness() -> None:
    images = torch.rand(2, 3, 8, 8) * 0.5
    assert torch.allclose(color_jitter(images.clone(), torch.ones(2, 3)), images, atol=1e-6)
    brighter = color_jitter(images.clone(), torch.tensor([[1.5, 1.0, 1.0], [1.0, 1.0, 1.0]]))
    assert torch.allclose(brighter[0], images[0] * 1.5, atol=1e-6)


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="crop scale"):
        AugmentSettings(scale=(0, 1))
    with pytest.raises(ValueError, match="brightness"):
        AugmentSettings(brightness=1.5)
