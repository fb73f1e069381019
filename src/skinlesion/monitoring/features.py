"""Per-image features that drift tests compare: colour, exposure, sharpness, texture, geometry.

Two kinds:

- pixel features (:data:`IMAGE_FEATURES`), computed on the square uint8 image that the model
  sees (:func:`skinlesion.data.images.prepare_image` at the baseline's size), so the baseline,
  computed from the preprocessed dataset, and a window of captured requests measure the same
  thing;
- encoding features (:data:`RAW_FEATURES`), read from the encoded bytes as the endpoint received
  them: width, height, aspect ratio and bits per pixel (JPEG quality and re-encoding show here).

Each feature targets a shift that happens in practice: a new camera or light (colour cast,
brightness), a focus problem (sharpness), compression (bits per pixel, high-frequency energy),
resizing (size, sharpness), and photographs that are not dermoscopy at all (dark rim fraction,
centre-surround contrast, saturation, entropy).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

IMAGE_FEATURES: tuple[str, ...] = (
    "brightness",  # mean luma
    "contrast",  # luma standard deviation
    "red_mean",
    "green_mean",
    "blue_mean",
    "red_green",  # opponent colour means: a colour cast moves these, not brightness
    "yellow_blue",
    "saturation",  # mean HSV saturation
    "colourfulness",  # Hasler and Suesstrunk (2003)
    "sharpness",  # log variance of the luma Laplacian: blur lowers it
    "gradient",  # mean absolute luma gradient
    "high_frequency",  # luma energy above a 3x3 box blur, relative to contrast
    "entropy",  # of the 32-bin luma histogram, bits
    "dark_fraction",  # luma < 40: a dermatoscope's dark rim
    "bright_fraction",  # luma > 220: glare, paper, screenshots
    "centre_surround",  # mean luma of the border ring minus the centre: lesions sit in the middle
)
RAW_FEATURES: tuple[str, ...] = ("width", "height", "aspect_ratio", "bits_per_pixel")
ALL_FEATURES: tuple[str, ...] = IMAGE_FEATURES + RAW_FEATURES

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_CHUNK = 128
_ENTROPY_BINS = 32


def _check(images: np.ndarray) -> None:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"Expected uint8 images shaped (N, H, W, 3); got {images.dtype} {images.shape}."
        )
    if images.shape[1] < 8 or images.shape[2] < 8:
        raise ValueError(f"Images of {images.shape[1]}x{images.shape[2]} are too small: >= 8 px.")


def _chunks(images: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    for start in range(0, len(images), _CHUNK):
        yield start, np.asarray(images[start : start + _CHUNK], dtype=np.float32)


def image_features(images: np.ndarray) -> np.ndarray:
    """Pixel features of uint8 (N, H, W, 3) RGB images: float64 (N, len(IMAGE_FEATURES))."""
    _check(images)
    out = np.empty((len(images), len(IMAGE_FEATURES)), dtype=np.float64)
    for start, chunk in _chunks(images):
        out[start : start + len(chunk)] = _chunk_features(chunk)
    return out


def _chunk_features(rgb: np.ndarray) -> np.ndarray:
    n, height, width, _ = rgb.shape
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    luma = rgb @ _LUMA
    flat = luma.reshape(n, -1)
    brightness = flat.mean(axis=1)
    contrast = flat.std(axis=1)

    rg = red - green
    yb = 0.5 * (red + green) - blue
    rg_mean = rg.reshape(n, -1).mean(axis=1)
    yb_mean = yb.reshape(n, -1).mean(axis=1)
    colourfulness = np.sqrt(rg.reshape(n, -1).var(axis=1) + yb.reshape(n, -1).var(axis=1))
    colourfulness += 0.3 * np.sqrt(rg_mean**2 + yb_mean**2)

    high = rgb.max(axis=-1)
    low = rgb.min(axis=-1)
    saturation = np.where(high > 0, (high - low) / np.maximum(high, 1e-6), 0.0)

    laplacian = (
        4 * luma[:, 1:-1, 1:-1]
        - luma[:, :-2, 1:-1]
        - luma[:, 2:, 1:-1]
        - luma[:, 1:-1, :-2]
        - luma[:, 1:-1, 2:]
    )
    sharpness = np.log1p(laplacian.reshape(n, -1).var(axis=1))
    dx = np.abs(np.diff(luma, axis=2)).reshape(n, -1).mean(axis=1)
    dy = np.abs(np.diff(luma, axis=1)).reshape(n, -1).mean(axis=1)
    gradient = 0.5 * (dx + dy)

    # A 3x3 box blur from a summed-area table: what is left above it is fine texture and noise.
    padded = np.pad(luma, ((0, 0), (1, 1), (1, 1)), mode="edge")
    table = padded.cumsum(axis=1).cumsum(axis=2)
    table = np.pad(table, ((0, 0), (1, 0), (1, 0)))
    box = (table[:, 3:, 3:] - table[:, :-3, 3:] - table[:, 3:, :-3] + table[:, :-3, :-3]) / 9.0
    high_frequency = np.abs(luma - box).reshape(n, -1).mean(axis=1) / (contrast + 1.0)

    levels = np.clip(luma, 0, 255).astype(np.int64) * _ENTROPY_BINS // 256
    offsets = (np.arange(n) * _ENTROPY_BINS)[:, None]
    counts = np.bincount(
        (levels.reshape(n, -1) + offsets).ravel(), minlength=n * _ENTROPY_BINS
    ).reshape(n, _ENTROPY_BINS)
    share = counts / counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(share > 0, share * np.log2(share), 0.0).sum(axis=1)

    dark = (flat < 40).mean(axis=1)
    bright = (flat > 220).mean(axis=1)
    ring_h, ring_w = max(height // 8, 1), max(width // 8, 1)
    border = np.ones((height, width), dtype=bool)
    border[ring_h:-ring_h, ring_w:-ring_w] = False
    centre = np.zeros((height, width), dtype=bool)
    centre[height // 4 : height - height // 4, width // 4 : width - width // 4] = True
    centre_surround = luma[:, border].mean(axis=1) - luma[:, centre].mean(axis=1)

    return np.stack(
        [
            brightness,
            contrast,
            red.reshape(n, -1).mean(axis=1),
            green.reshape(n, -1).mean(axis=1),
            blue.reshape(n, -1).mean(axis=1),
            rg_mean,
            yb_mean,
            saturation.reshape(n, -1).mean(axis=1),
            colourfulness,
            sharpness,
            gradient,
            high_frequency,
            entropy,
            dark,
            bright,
            centre_surround,
        ],
        axis=1,
    )


def raw_features(encoded: bytes) -> np.ndarray:
    """Encoding features of one encoded image (header only; no pixels are decoded).

    Returns float64 ``(width, height, aspect_ratio, bits_per_pixel)``; raises ``ValueError``
    when the bytes are not an image Pillow can open.
    """
    try:
        with Image.open(io.BytesIO(encoded)) as image:
            width, height = image.size
    except (OSError, SyntaxError) as error:
        raise ValueError(f"Not an image Pillow can open ({error}).") from None
    if width < 1 or height < 1:
        raise ValueError(f"An image of {width}x{height} pixels has no area.")
    return np.array(
        [width, height, width / height, 8.0 * len(encoded) / (width * height)], dtype=np.float64
    )
