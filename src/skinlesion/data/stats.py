"""Image statistics: the drift baseline written by preprocessing and recomputed by the monitor.

:func:`image_statistics` summarises a batch of uint8 RGB images; the monitor calls it on the
images it sees and compares the result with the training split's ``stats.json``. Everything is
on the 0-255 scale and computed in chunks, so a large memory-mapped split fits in little memory.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

HISTOGRAM_BINS = 32
CHANNELS = ("red", "green", "blue")
QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as Pillow's "L"
_CHUNK = 256


def brightness_contrast(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image: mean luma (brightness) and its standard deviation (RMS contrast), 0-255."""
    _check_images(images)
    brightness = np.empty(len(images), dtype=np.float64)
    contrast = np.empty(len(images), dtype=np.float64)
    for start in range(0, len(images), _CHUNK):
        chunk = np.asarray(images[start : start + _CHUNK], dtype=np.float32)
        luma = chunk @ LUMA  # (n, H, W)
        flat = luma.reshape(len(chunk), -1)
        brightness[start : start + len(chunk)] = flat.mean(axis=1)
        contrast[start : start + len(chunk)] = flat.std(axis=1)
    return brightness, contrast


def distribution(
    values: np.ndarray, bins: int = HISTOGRAM_BINS, value_range: tuple[float, float] = (0, 255)
) -> dict[str, Any]:
    """A histogram (normalised to sum 1) with its edges, plus mean, std and quantiles."""
    values = np.asarray(values, dtype=np.float64)
    counts, edges = np.histogram(values, bins=bins, range=value_range)
    total = max(int(counts.sum()), 1)
    return {
        "histogram": [round(float(c) / total, 6) for c in counts],
        "bin_edges": [round(float(e), 4) for e in edges],
        "mean": round(float(values.mean()), 4) if len(values) else 0.0,
        "std": round(float(values.std()), 4) if len(values) else 0.0,
        "quantiles": {
            f"{q:g}": round(float(v), 4)
            for q, v in zip(
                QUANTILES,
                np.quantile(values, QUANTILES) if len(values) else [0.0] * len(QUANTILES),
                strict=True,
            )
        },
    }


def _check_images(images: np.ndarray) -> None:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"Expected uint8 images shaped (N, H, W, 3); got {images.dtype} {images.shape}."
        )


def image_statistics(images: np.ndarray) -> dict[str, Any]:
    """Summarise uint8 (N, H, W, 3) RGB images (0-255 scale).

    Returns ``count``, ``channel_mean`` and ``channel_std`` (per RGB channel, over all pixels),
    ``color_histograms`` (32 bins per channel, each normalised to sum 1), and the distributions
    of per-image ``brightness`` (mean luma) and ``contrast`` (luma standard deviation).
    """
    _check_images(images)
    n = len(images)
    histograms = np.zeros((3, HISTOGRAM_BINS), dtype=np.int64)
    sums = np.zeros(3, dtype=np.float64)
    squares = np.zeros(3, dtype=np.float64)
    for start in range(0, n, _CHUNK):
        chunk = np.asarray(images[start : start + _CHUNK])
        pixels = chunk.reshape(-1, 3)
        for channel in range(3):
            values = pixels[:, channel]
            # 256 levels into 32 bins of 8 levels each: exact and much faster than np.histogram.
            histograms[channel] += np.bincount(values >> 3, minlength=HISTOGRAM_BINS)
            as_float = values.astype(np.float64)
            sums[channel] += as_float.sum()
            squares[channel] += np.square(as_float).sum()
    pixel_count = max(n * images.shape[1] * images.shape[2], 1)
    mean = sums / pixel_count
    std = np.sqrt(np.maximum(squares / pixel_count - mean**2, 0.0))
    brightness, contrast = brightness_contrast(images)
    return {
        "count": n,
        "channel_mean": [round(float(v), 4) for v in mean],
        "channel_std": [round(float(v), 4) for v in std],
        "color_histograms": {
            name: [round(float(c) / max(int(histograms[i].sum()), 1), 6) for c in histograms[i]]
            for i, name in enumerate(CHANNELS)
        },
        "histogram_bins": HISTOGRAM_BINS,
        "brightness": distribution(brightness),
        "contrast": distribution(contrast, value_range=(0, 128)),
    }


def original_size_summary(sizes: np.ndarray) -> dict[str, Any]:
    """Summary of the source images' (width, height) before resizing."""
    sizes = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
    sizes = sizes[(sizes > 0).all(axis=1)]
    if len(sizes) == 0:
        return {"count": 0}
    width, height = sizes[:, 0], sizes[:, 1]
    aspect = width / height
    common = Counter(f"{w}x{h}" for w, h in sizes.tolist()).most_common(5)

    def summary(values: np.ndarray) -> dict[str, float]:
        return {
            "min": round(float(values.min()), 4),
            "median": round(float(np.median(values)), 4),
            "mean": round(float(values.mean()), 4),
            "max": round(float(values.max()), 4),
        }

    return {
        "count": len(sizes),
        "width": summary(width),
        "height": summary(height),
        "aspect_ratio": summary(aspect),
        "most_common": {size: count for size, count in common},
    }
