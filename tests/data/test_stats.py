"""The drift baseline statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from skinlesion.data.stats import (
    HISTOGRAM_BINS,
    brightness_contrast,
    image_statistics,
    original_size_summary,
)


def test_constant_images_have_exact_statistics() -> None:
    images = np.zeros((3, 4, 4, 3), dtype=np.uint8)
    images[..., 0], images[..., 1], images[..., 2] = 200, 100, 8
    stats = image_statistics(images)
    assert stats["count"] == 3
    assert stats["channel_mean"] == [200.0, 100.0, 8.0]
    assert stats["channel_std"] == [0.0, 0.0, 0.0]
    for name, level in (("red", 200), ("green", 100), ("blue", 8)):
        histogram = stats["color_histograms"][name]
        assert len(histogram) == HISTOGRAM_BINS and sum(histogram) == pytest.approx(1.0)
        assert histogram[level // 8] == 1.0
    luma = 0.299 * 200 + 0.587 * 100 + 0.114 * 8
    assert stats["brightness"]["quantiles"]["0.5"] == pytest.approx(luma, abs=1e-3)
    assert stats["contrast"]["mean"] == pytest.approx(0.0, abs=1e-4)
    json.dumps(stats)  # plain JSON types only


def test_statistics_match_numpy_on_random_images() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (300, 8, 8, 3), dtype=np.uint8)  # more than one chunk
    stats = image_statistics(images)
    flat = images.reshape(-1, 3).astype(float)
    assert stats["channel_mean"] == pytest.approx(flat.mean(axis=0).tolist(), abs=1e-3)
    assert stats["channel_std"] == pytest.approx(flat.std(axis=0).tolist(), abs=1e-3)
    expected = np.histogram(flat[:, 1], bins=32, range=(0, 256))[0] / len(flat)
    assert stats["color_histograms"]["green"] == pytest.approx(expected.tolist(), abs=1e-6)
    brightness, contrast = brightness_contrast(images)
    luma = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    assert brightness == pytest.approx(luma.reshape(300, -1).mean(axis=1), rel=1e-5)
    assert contrast == pytest.approx(luma.reshape(300, -1).std(axis=1), rel=1e-4)
    assert sum(stats["brightness"]["histogram"]) == pytest.approx(1.0, abs=1e-5)


def test_wrong_input_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"uint8 images shaped \(N, H, W, 3\)"):
        image_statistics(np.zeros((2, 4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="uint8"):
        image_statistics(np.zeros((4, 4, 3), dtype=np.uint8))


def test_original_size_summary() -> None:
    sizes = np.array([[600, 450], [600, 450], [1024, 768], [0, 0]])
    summary = original_size_summary(sizes)
    assert summary["count"] == 3  # failures (0, 0) are left out
    assert summary["width"]["max"] == 1024 and summary["height"]["min"] == 450
    assert summary["aspect_ratio"]["median"] == pytest.approx(4 / 3, abs=1e-3)
    assert summary["most_common"] == {"600x450": 2, "1024x768": 1}
    assert original_size_summary(np.zeros((0, 2))) == {"count": 0}
