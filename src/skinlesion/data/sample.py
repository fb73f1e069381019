"""A generated dermoscopy-like dataset in the exact ISIC 2019 format, for demos and tests.

Each class gets its own colour scheme, border and dermoscopic structures, loosely after the
textbook patterns (melanoma: irregular, black and blue-grey blotches, streaks; nevus: regular
brown network; BCC: pearly pink with arborizing vessels and blue-grey nests; AK: fuzzy red
"strawberry" with white follicles; BKL: tan with milia-like cysts and comedo openings; DF: brown
ring around a white scar; VASC: red-purple lacunae; SCC: white-yellow keratin with dotted
vessels). Backgrounds, illumination, size, rotation and position vary from image to image, and
about two images show each lesion, as in HAM10000. Only numpy and Pillow are used.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from skinlesion.data.isic import GENERATED_MARKER
from skinlesion.labels import CLASSES, UNKNOWN

log = logging.getLogger(__name__)

LABELS_FILE = "labels.csv"
METADATA_FILE = "metadata.csv"
IMAGES_DIR = "images"
METADATA_COLUMNS = ("image", "lesion_id", "age_approx", "sex", "anatom_site")
SITES = ("trunk", "lower extremity", "upper extremity", "back", "head/neck", "abdomen")
# Mean patient age per class: plausible, and a cue that nothing here relies on.
AGE_BY_CLASS = {
    "MEL": 60,
    "NV": 40,
    "BCC": 67,
    "AK": 70,
    "BKL": 62,
    "DF": 45,
    "VASC": 50,
    "SCC": 72,
}

Rgb = tuple[float, float, float]
FloatImage = np.ndarray  # (H, W, 3) float32 in [0, 1]


@dataclass(frozen=True)
class SampleSummary:
    """What ``write_sample`` wrote."""

    root: Path
    images: int
    lesions: int
    class_counts: dict[str, int]


@dataclass(frozen=True)
class _Lesion:
    """Everything that stays the same between two photographs of one lesion."""

    label: str
    radius: float  # fraction of the image size
    harmonics: tuple[tuple[int, float, float], ...]  # (k, amplitude, phase) of the border
    edge: float  # border softness in lesion radii
    colour: Rgb
    seed: int


def _jitter(rng: np.random.Generator, colour: Rgb, amount: float) -> Rgb:
    values = np.clip(np.asarray(colour) + rng.uniform(-amount, amount, 3), 0, 1)
    return (float(values[0]), float(values[1]), float(values[2]))


def _make_lesion(rng: np.random.Generator, label: str) -> _Lesion:
    """Draw the per-lesion parameters of a class."""
    irregular = label in ("MEL", "AK", "BKL")
    radius = {
        "MEL": (0.27, 0.36),
        "NV": (0.18, 0.27),
        "BCC": (0.2, 0.3),
        "AK": (0.24, 0.33),
        "BKL": (0.2, 0.3),
        "DF": (0.15, 0.22),
        "VASC": (0.15, 0.24),
        "SCC": (0.2, 0.29),
    }[label]
    base = {
        "MEL": (0.33, 0.2, 0.13),
        "NV": (0.56, 0.37, 0.23),
        "BCC": (0.9, 0.74, 0.74),
        "AK": (0.86, 0.42, 0.4),
        "BKL": (0.74, 0.58, 0.34),
        "DF": (0.62, 0.44, 0.32),
        "VASC": (0.62, 0.12, 0.26),
        "SCC": (0.86, 0.55, 0.55),
    }[label]
    harmonics = [(2, float(rng.uniform(0.02, 0.12)), float(rng.uniform(0, 2 * math.pi)))]
    for k in range(3, 8):
        amplitude = rng.uniform(0.04, 0.11) if irregular else rng.uniform(0.0, 0.015)
        harmonics.append((k, float(amplitude), float(rng.uniform(0, 2 * math.pi))))
    edge = {"AK": 0.18, "BCC": 0.08, "MEL": 0.05}.get(label, 0.035)
    return _Lesion(
        label=label,
        radius=float(rng.uniform(*radius)),
        harmonics=tuple(harmonics),
        edge=edge,
        colour=_jitter(rng, base, 0.04),
        seed=int(rng.integers(0, 2**31 - 1)),
    )


class _Canvas:
    """One photograph: pixel grid, the lesion's local frame, and drawing helpers."""

    def __init__(self, size: int, centre: tuple[float, float], radius_px: float, angle: float):
        self.size = size
        self.cx, self.cy = centre
        self.r = radius_px
        self.cos, self.sin = math.cos(angle), math.sin(angle)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
        dx, dy = (xx - self.cx) / self.r, (yy - self.cy) / self.r
        self.u = dx * self.cos + dy * self.sin
        self.v = -dx * self.sin + dy * self.cos
        self.d = np.hypot(self.u, self.v)
        self.theta = np.arctan2(self.v, self.u)
        self.xx, self.yy = xx, yy

    def to_pixel(self, u: float, v: float) -> tuple[float, float]:
        """Lesion-local coordinates (units of the radius) to pixel coordinates."""
        return (
            self.cx + self.r * (u * self.cos - v * self.sin),
            self.cy + self.r * (u * self.sin + v * self.cos),
        )

    def layer(self, draw: Callable[[ImageDraw.ImageDraw], None], blur: float = 0.0) -> np.ndarray:
        """Render shapes onto a blank mask; returns (H, W) float32 in [0, 1]."""
        image = Image.new("L", (self.size, self.size), 0)
        draw(ImageDraw.Draw(image))
        if blur > 0:
            image = image.filter(ImageFilter.GaussianBlur(blur))
        return np.asarray(image, dtype=np.float32) / 255.0

    def dots(self, points: np.ndarray, radii: np.ndarray, blur: float = 0.4) -> np.ndarray:
        """Filled discs at lesion-local points with radii in lesion radii."""

        def draw(canvas: ImageDraw.ImageDraw) -> None:
            for (u, v), rad in zip(points, radii, strict=True):
                x, y = self.to_pixel(float(u), float(v))
                rp = max(0.6, float(rad) * self.r)
                canvas.ellipse((x - rp, y - rp, x + rp, y + rp), fill=255)

        return self.layer(draw, blur)

    def polylines(self, lines: list[np.ndarray], width_px: float, blur: float = 0.4) -> np.ndarray:
        """Polylines given as (K, 2) arrays of lesion-local points."""
        width = max(1, round(width_px))

        def draw(canvas: ImageDraw.ImageDraw) -> None:
            for line in lines:
                points = [self.to_pixel(float(u), float(v)) for u, v in line]
                canvas.line(points, fill=255, width=width, joint="curve")

        return self.layer(draw, blur)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a coarse random grid upsampled bicubically."""
    coarse = rng.random((cells, cells)).astype(np.float32)
    field = np.asarray(
        Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC)
    )
    lo, hi = float(field.min()), float(field.max())
    return (field - lo) / max(hi - lo, 1e-6)


def _blend(image: FloatImage, mask: np.ndarray, colour: Rgb, strength: float = 1.0) -> None:
    alpha = np.clip(mask * strength, 0, 1)[..., None]
    image *= 1 - alpha
    image += alpha * np.asarray(colour, dtype=np.float32)


def _points_in_disk(
    rng: np.random.Generator, n: int, r_max: float, r_min: float = 0.0
) -> np.ndarray:
    radius = np.sqrt(rng.uniform(r_min**2, r_max**2, n))
    angle = rng.uniform(0, 2 * math.pi, n)
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)


def _branch(
    rng: np.random.Generator, start: np.ndarray, heading: float, length: float
) -> np.ndarray:
    """A wandering line: a vessel, a streak or a hair, in lesion-local units."""
    steps = 8
    points = [start]
    for _ in range(steps):
        heading += rng.normal(0, 0.35)
        step = length / steps
        points.append(points[-1] + step * np.array([math.cos(heading), math.sin(heading)]))
    return np.asarray(points)


def _network(c: _Canvas, cells: float, warp: np.ndarray, thickness: float) -> np.ndarray:
    """A reticular pigment network: the lines of a warped grid."""
    u = c.u * cells + warp * 0.9
    v = c.v * cells - warp * 0.7
    distance = np.minimum(np.abs(np.sin(math.pi * u)), np.abs(np.sin(math.pi * v)))
    return np.clip((thickness - distance) / thickness, 0, 1)


def _paint_lesion(c: _Canvas, lesion: _Lesion, image: FloatImage) -> None:
    """Draw the lesion of ``lesion.label`` onto ``image`` in place."""
    border = np.ones_like(c.theta)
    for k, amplitude, phase in lesion.harmonics:
        border += amplitude * np.cos(k * c.theta + phase)
    inside = 1.0 / (1.0 + np.exp(-(border - c.d) / lesion.edge))
    core = np.clip(1 - c.d / np.maximum(border, 1e-3), 0, 1)  # 1 at the centre, 0 at the border
    # Structures are placed from the lesion's own seed, so both photographs show the same ones.
    local = np.random.default_rng(lesion.seed)
    warp = _smooth_noise(np.random.default_rng(lesion.seed + 1), c.size, 5) - 0.5
    blotch = _smooth_noise(np.random.default_rng(lesion.seed + 2), c.size, 4)
    label = lesion.label
    colour = lesion.colour

    if label == "MEL":
        _blend(image, inside, colour, 0.95)
        _blend(image, inside * (blotch > 0.68), (0.08, 0.06, 0.07), 0.9)
        _blend(image, inside * np.clip((0.35 - blotch) * 4, 0, 1), (0.46, 0.52, 0.64), 0.85)
        _blend(image, inside * _network(c, 3.0, warp * 3, 0.35), (0.12, 0.08, 0.06), 0.6)
        streaks = [
            _branch(local, np.array([0.75 * math.cos(a), 0.75 * math.sin(a)]), a, 0.3)
            for a in local.uniform(0, 2 * math.pi, 12)
        ]
        _blend(image, c.polylines(streaks, c.r * 0.045), (0.2, 0.12, 0.09), 0.7)
    elif label == "NV":
        shade = tuple(ch * 1.25 for ch in colour)
        _blend(image, inside, shade, 0.85)  # type: ignore[arg-type]
        _blend(image, inside * core**0.7, colour, 0.8)
        net = _network(c, 3.5, warp * 0.6, 0.3)
        _blend(image, inside * net * (0.4 + 0.6 * core), (0.3, 0.18, 0.1), 0.75)
    elif label == "BCC":
        _blend(image, inside, colour, 0.75)
        nests = _points_in_disk(local, int(local.integers(3, 6)), 0.7)
        _blend(
            image, c.dots(nests, local.uniform(0.1, 0.18, len(nests)), 1.0), (0.3, 0.34, 0.48), 0.85
        )
        vessels = []
        for a in local.uniform(0, 2 * math.pi, 5):
            trunk = _branch(local, np.array([0.1 * math.cos(a), 0.1 * math.sin(a)]), a, 0.85)
            vessels.append(trunk)
            for point in trunk[2::3]:
                vessels.append(_branch(local, point, a + local.choice([-1.0, 1.0]), 0.3))
        _blend(image, c.polylines(vessels, c.r * 0.045, 0.3) * inside, (0.72, 0.06, 0.12), 0.95)
    elif label == "AK":
        _blend(image, inside, colour, 0.8)
        follicles = _points_in_disk(local, 26, 0.95)
        _blend(image, c.dots(follicles, np.full(26, 0.07), 0.5) * inside, (0.97, 0.93, 0.86), 0.9)
        scale = _smooth_noise(np.random.default_rng(lesion.seed + 3), c.size, 12)
        _blend(image, inside * (scale > 0.7), (0.93, 0.88, 0.8), 0.55)
    elif label == "BKL":
        _blend(image, inside, colour, 0.92)
        ridges = np.abs(np.sin(math.pi * (c.u * 2.5 + warp * 3)))
        _blend(image, inside * (ridges < 0.3), (0.55, 0.4, 0.22), 0.7)
        cysts = _points_in_disk(local, 9, 0.8)
        _blend(image, c.dots(cysts, local.uniform(0.06, 0.1, 9)), (0.98, 0.96, 0.82), 0.95)
        comedos = _points_in_disk(local, 8, 0.8)
        _blend(image, c.dots(comedos, local.uniform(0.05, 0.08, 8)), (0.2, 0.13, 0.08), 0.95)
    elif label == "DF":
        _blend(image, inside, colour, 0.85)
        _blend(image, inside * _network(c, 4.0, warp * 0.5, 0.3), (0.42, 0.28, 0.18), 0.55)
        scar = 1.0 / (1.0 + np.exp(-(0.5 + 0.15 * warp - c.d) / 0.07))
        _blend(image, scar, (0.95, 0.92, 0.9), 0.95)
    elif label == "VASC":
        _blend(image, inside, (0.86, 0.55, 0.6), 0.8)
        lacunae = _points_in_disk(local, 10, 0.65)
        radii = local.uniform(0.17, 0.27, 10)
        _blend(image, c.dots(lacunae, radii * 1.15, 0.6) * inside, (0.35, 0.05, 0.18), 0.9)
        _blend(image, c.dots(lacunae, radii, 0.6) * inside, colour, 0.95)
    elif label == "SCC":
        _blend(image, inside, colour, 0.8)
        keratin = 1.0 / (1.0 + np.exp(-(0.55 + 0.25 * warp - c.d) / 0.08))
        _blend(image, keratin, (0.96, 0.93, 0.74), 0.95)
        dotted = _points_in_disk(local, 22, 0.95, 0.55)
        _blend(image, c.dots(dotted, np.full(22, 0.05), 0.3) * inside, (0.75, 0.05, 0.1), 0.95)
    else:
        raise ValueError(f"Unknown class {label!r}. Accepted: {', '.join(CLASSES)}.")


def _photograph(rng: np.random.Generator, lesion: _Lesion, size: int) -> np.ndarray:
    """One dermoscopy-like photograph of ``lesion`` as (size, size, 3) uint8."""
    tone = rng.uniform(0, 1)
    skin = np.array([0.93, 0.78, 0.68]) * (1 - tone) + np.array([0.74, 0.54, 0.42]) * tone
    skin = np.clip(skin + rng.uniform(-0.03, 0.03, 3), 0, 1).astype(np.float32)
    texture = _smooth_noise(rng, size, 10)[..., None] - 0.5
    image = np.empty((size, size, 3), dtype=np.float32)
    image[:] = skin
    image += 0.05 * texture

    radius_px = lesion.radius * size * rng.uniform(0.88, 1.12)
    offset = rng.uniform(-0.08, 0.08, 2) * size
    canvas = _Canvas(
        size, (size / 2 + offset[0], size / 2 + offset[1]), radius_px, rng.uniform(0, 2 * math.pi)
    )
    _paint_lesion(canvas, lesion, image)

    if rng.random() < 0.4:  # hairs cross lesion and skin alike
        hairs = [
            _branch(rng, rng.uniform(-2.5, 2.5, 2), rng.uniform(0, 2 * math.pi), rng.uniform(2, 4))
            for _ in range(int(rng.integers(1, 4)))
        ]
        _blend(image, canvas.polylines(hairs, max(1.0, size / 110), 0.3), (0.16, 0.11, 0.08), 0.8)

    # Illumination: a tilt, a gain, and the dermatoscope's vignette (sometimes its black rim).
    centre_x, centre_y = size / 2, size / 2
    rr = np.hypot(canvas.xx - centre_x, canvas.yy - centre_y) / (size / 2)
    angle = rng.uniform(0, 2 * math.pi)
    tilt = (
        (canvas.xx - centre_x) * math.cos(angle) + (canvas.yy - centre_y) * math.sin(angle)
    ) / size
    light = rng.uniform(0.82, 1.08) * (1 + rng.uniform(0, 0.18) * tilt)
    light = light * (1 - rng.uniform(0.15, 0.45) * np.clip(rr, 0, 1.5) ** 2.5)
    if rng.random() < 0.3:
        light = light * (1.0 / (1.0 + np.exp((rr - rng.uniform(1.0, 1.25)) / 0.02)))
    image *= light[..., None]
    image += rng.normal(0, 0.018, image.shape).astype(np.float32)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def _images_per_lesion(rng: np.random.Generator, n_images: int) -> list[int]:
    """Split ``n_images`` into lesions of 1 to 3 images, about 2 on average."""
    counts: list[int] = []
    remaining = n_images
    while remaining > 0:
        k = min(remaining, int(rng.choice([1, 2, 2, 2, 3])))
        counts.append(k)
        remaining -= k
    return counts


def render_lesion_image(label: str, size: int = 128, seed: int = 0) -> np.ndarray:
    """One generated image of class ``label`` as (size, size, 3) uint8 (handy in tests)."""
    if label not in CLASSES:
        raise ValueError(f"Unknown class {label!r}. Accepted: {', '.join(CLASSES)}.")
    rng = np.random.default_rng(seed)
    return _photograph(rng, _make_lesion(rng, label), size)


def write_sample(
    out_dir: Path,
    n_per_class: int = 60,
    image_size: int = 128,
    seed: int = 0,
    *,
    jpeg_quality: int = 92,
) -> SampleSummary:
    """Write a generated dataset in the ISIC 2019 layout: labels.csv, metadata.csv, images/*.jpg.

    ``labels.csv`` has the ground truth columns ``image,MEL,...,SCC,UNK`` as one-hot floats;
    ``metadata.csv`` has ``image,lesion_id,age_approx,sex,anatom_site`` with about two images
    per lesion. The output depends only on the arguments.
    """
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be >= 1; got {n_per_class}.")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16 pixels; got {image_size}.")
    out_dir = Path(out_dir)
    images_dir = out_dir / IMAGES_DIR
    images_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    rows: list[tuple[str, str, int]] = []  # (label, lesion_id, photo seed)
    lesion_seeds: dict[str, int] = {}
    for label in CLASSES:
        for count in _images_per_lesion(rng, n_per_class):
            lesion_id = f"SAMPLE_LESION_{len(lesion_seeds) + 1:05d}"
            lesion_seeds[lesion_id] = int(rng.integers(0, 2**31 - 1))
            rows.extend((label, lesion_id, int(rng.integers(0, 2**31 - 1))) for _ in range(count))
    order = rng.permutation(len(rows))

    lesion_params: dict[str, _Lesion] = {}
    lesion_meta: dict[str, tuple[str, str, str]] = {}
    label_rows: list[list[str]] = []
    meta_rows: list[list[str]] = []
    for number, position in enumerate(order):
        label, lesion_id, photo_seed = rows[int(position)]
        if lesion_id not in lesion_params:
            lesion_rng = np.random.default_rng(lesion_seeds[lesion_id])
            lesion_params[lesion_id] = _make_lesion(lesion_rng, label)
            age = int(np.clip(lesion_rng.normal(AGE_BY_CLASS[label], 12), 5, 90) // 5 * 5)
            lesion_meta[lesion_id] = (
                f"{age:.1f}",
                str(lesion_rng.choice(["male", "female"])),
                str(lesion_rng.choice(SITES)),
            )
        image_id = f"SAMPLE_{number:07d}"
        pixels = _photograph(
            np.random.default_rng(photo_seed), lesion_params[lesion_id], image_size
        )
        Image.fromarray(pixels).save(images_dir / f"{image_id}.jpg", quality=jpeg_quality)
        label_rows.append([image_id, *("1.0" if c == label else "0.0" for c in CLASSES), "0.0"])
        meta_rows.append([image_id, lesion_id, *lesion_meta[lesion_id]])

    with (out_dir / LABELS_FILE).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", *CLASSES, UNKNOWN])
        writer.writerows(label_rows)
    with (out_dir / METADATA_FILE).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(METADATA_COLUMNS)
        writer.writerows(meta_rows)
    # The mark that preprocess records in the manifest and training in model.json.
    marker = {"generator": "skinlesion.data.sample.write_sample", "seed": seed}
    (out_dir / GENERATED_MARKER).write_text(json.dumps(marker) + "\n")
    counts = {c: sum(1 for label, _, _ in rows if label == c) for c in CLASSES}
    log.info("Wrote %d generated images (%d lesions) to %s", len(rows), len(lesion_params), out_dir)
    return SampleSummary(
        root=out_dir, images=len(rows), lesions=len(lesion_params), class_counts=counts
    )
