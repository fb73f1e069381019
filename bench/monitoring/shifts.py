"""Shifted traffic for the drift benchmark: what a new camera, a focus problem, compression,
resizing or a wrong photograph does to the JPEGs an endpoint receives.

Every shifted image is re-encoded as a JPEG at the source's quality (HAM10000's files are IJG
quality 75, 4:2:0), so a row measures its shift and not re-encoding; the ``identity`` variant
(decode, re-encode, nothing else) is the control that shows re-encoding alone is not drift.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SOURCE_QUALITY = 75


def encode(image: Image.Image, quality: int = SOURCE_QUALITY) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _open(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def identity(data: bytes, rng: np.random.Generator) -> bytes:
    return encode(_open(data))


def colour_cast(amount: float) -> Callable[[bytes, np.random.Generator], bytes]:
    """A warm cast: red up, blue down by ``amount`` levels (another camera's white balance)."""

    def shift(data: bytes, rng: np.random.Generator) -> bytes:
        array = np.asarray(_open(data), dtype=np.float32).copy()
        array[..., 0] += amount
        array[..., 2] -= amount
        return encode(Image.fromarray(np.clip(array, 0, 255).astype(np.uint8)))

    return shift


def blur(radius: float) -> Callable[[bytes, np.random.Generator], bytes]:
    """A Gaussian blur of ``radius`` pixels at the source's 200x150 (out of focus)."""

    def shift(data: bytes, rng: np.random.Generator) -> bytes:
        return encode(_open(data).filter(ImageFilter.GaussianBlur(radius)))

    return shift


def jpeg_quality(quality: int) -> Callable[[bytes, np.random.Generator], bytes]:
    """Re-encoded at a lower JPEG quality (a client that compresses harder)."""

    def shift(data: bytes, rng: np.random.Generator) -> bytes:
        return encode(_open(data), quality)

    return shift


def rescale(factor: float) -> Callable[[bytes, np.random.Generator], bytes]:
    """Resized by ``factor`` before sending (another device's resolution)."""

    def shift(data: bytes, rng: np.random.Generator) -> bytes:
        image = _open(data)
        size = (max(8, round(image.width * factor)), max(8, round(image.height * factor)))
        return encode(image.resize(size, Image.Resampling.BILINEAR))

    return shift


# --- photographs that are not dermoscopy ------------------------------------------------------


def _smooth_field(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Multi-scale smooth noise in [0, 1]: skies, walls, foliage, at a glance."""
    field = np.zeros((height, width), np.float32)
    for cells, weight in ((3, 1.0), (8, 0.5), (24, 0.25)):
        coarse = rng.random((cells, cells)).astype(np.float32)
        layer = Image.fromarray((coarse * 255).astype(np.uint8)).resize(
            (width, height), Image.Resampling.BICUBIC
        )
        field += weight * np.asarray(layer, np.float32) / 255
    field -= field.min()
    return field / max(float(field.max()), 1e-6)


def natural_scene(rng: np.random.Generator, size: tuple[int, int] = (200, 150)) -> Image.Image:
    """A smooth colour field with a few objects (shapes in other colours)."""
    width, height = size
    palette = rng.random((2, 3)) * 255
    t = _smooth_field(rng, height, width)[..., None]
    array = (1 - t) * palette[0] + t * palette[1]
    image = Image.fromarray(array.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 7))):
        x0, y0 = rng.integers(0, width - 20), rng.integers(0, height - 20)
        x1, y1 = x0 + rng.integers(10, 80), y0 + rng.integers(10, 60)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        box = (int(x0), int(y0), int(x1), int(y1))
        if rng.random() < 0.5:
            draw.ellipse(box, fill=colour)
        else:
            draw.rectangle(box, fill=colour)
    return image


def noise(rng: np.random.Generator, size: tuple[int, int] = (200, 150)) -> Image.Image:
    """Uniform RGB noise (a broken sensor, an encrypted blob rendered as pixels)."""
    width, height = size
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def text(rng: np.random.Generator, size: tuple[int, int] = (200, 150)) -> Image.Image:
    """Lines of text on paper (a referral letter photographed instead of the lesion)."""
    height = size[1]
    paper = int(rng.integers(220, 256))
    image = Image.new("RGB", size, (paper, paper, paper - int(rng.integers(0, 20))))
    draw = ImageDraw.Draw(image)
    letters = "abcdefghijklmnopqrstuvwxyz      ABCDEFG0123456789.,"
    for y in range(6, height - 10, int(rng.integers(11, 16))):
        line = "".join(rng.choice(list(letters), int(rng.integers(20, 34))))
        draw.text((int(rng.integers(2, 10)), y), line, fill=(int(rng.integers(0, 60)),) * 3)
    return image


def solid(rng: np.random.Generator, size: tuple[int, int] = (200, 150)) -> Image.Image:
    """One colour with a faint gradient (a lens cap, a wall)."""
    width, height = size
    colour = rng.random(3) * 255
    ramp = np.linspace(-10, 10, width, dtype=np.float32)[None, :, None]
    array = np.broadcast_to(colour, (height, width, 3)) + ramp
    return Image.fromarray(array.clip(0, 255).astype(np.uint8))


NON_DERMOSCOPY: tuple[Callable[[np.random.Generator], Image.Image], ...] = (
    natural_scene,
    noise,
    text,
    solid,
)


def non_dermoscopy(data: bytes, rng: np.random.Generator) -> bytes:
    """Replace the image by a non-dermoscopy one of the four kinds, in turn at random."""
    make = NON_DERMOSCOPY[int(rng.integers(len(NON_DERMOSCOPY)))]
    return encode(make(rng))


@dataclass(frozen=True)
class Shift:
    """One row of the benchmark: a name, what it does, and the share of a window it replaces."""

    name: str
    kind: str
    transform: Callable[[bytes, np.random.Generator], bytes]
    share: float = 1.0  # 0.25: a quarter of each window is shifted, the rest in-distribution


SHIFTS: tuple[Shift, ...] = (
    Shift("identity re-encode (control)", "control", identity),
    Shift("colour cast +8/-8 (R/B)", "colour cast", colour_cast(8)),
    Shift("colour cast +15/-15 (R/B)", "colour cast", colour_cast(15)),
    Shift("blur radius 1.0 px", "blur", blur(1.0)),
    Shift("blur radius 2.0 px", "blur", blur(2.0)),
    Shift("JPEG quality 40", "JPEG quality", jpeg_quality(40)),
    Shift("JPEG quality 15", "JPEG quality", jpeg_quality(15)),
    Shift("rescaled 0.5x", "rescaling", rescale(0.5)),
    Shift("rescaled 2x", "rescaling", rescale(2.0)),
    Shift("non-dermoscopy (all)", "non-dermoscopy", non_dermoscopy),
    Shift("non-dermoscopy (25% of window)", "non-dermoscopy", non_dermoscopy, share=0.25),
)
