"""Decoding and resizing: modes, EXIF orientation, the centre crop, parallel loading."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skinlesion.data.images import (
    centre_box,
    decode_image_bytes,
    load_image,
    load_images,
    prepare_image,
)


def _stripes(width: int, height: int) -> np.ndarray:
    """Red left quarter, blue right quarter, green middle: what survives a centre crop shows."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[:, :] = (0, 200, 0)
    array[:, : width // 4] = (200, 0, 0)
    array[:, width - width // 4 :] = (0, 0, 200)
    return array


def test_centre_crop_keeps_the_middle_square() -> None:
    assert centre_box(600, 450) == (75, 0, 525, 450)
    assert centre_box(450, 600) == (0, 75, 450, 525)
    # 4:3 with quarter-wide coloured sides: the crop cuts 1/8 per side, so the sides shrink.
    out = prepare_image(Image.fromarray(_stripes(400, 300)), 30)
    assert out.shape == (30, 30, 3) and out.dtype == np.uint8
    assert out[:, 15, 1].min() > 150  # the centre stays green
    assert out[:, 0, 0].min() > 150 and out[:, -1, 2].min() > 150  # both sides still visible
    red_columns = int((out[15, :, 0] > 100).sum())
    assert red_columns == pytest.approx(30 * (100 - 50) / 300, abs=1)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "I;16", "1"])
def test_every_mode_becomes_rgb_uint8(mode: str) -> None:
    rgb = Image.fromarray(_stripes(40, 40))
    if mode == "I;16":
        image = Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)
        assert image.mode == "I;16"
    else:
        image = rgb.convert(mode)
    out = prepare_image(image, 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert out.max() > 0


def test_transparent_pixels_become_black() -> None:
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., :3] = 255
    rgba[:, 4:, 3] = 255  # left half transparent white, right half opaque white
    out = prepare_image(Image.fromarray(rgba, "RGBA"), 8)
    assert out[:, :3].max() == 0 and out[:, 5:].min() == 255


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # Stored landscape, red on the left; orientation 6 means "rotate 90 degrees clockwise to
    # display", which puts red at the top and makes it portrait.
    image = Image.fromarray(_stripes(60, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=95)
    out, original = load_image(path, 20)
    assert original == (60, 40)
    assert out[0, :, 0].mean() > 150 and out[-1, :, 2].mean() > 150  # red top, blue bottom


def test_draft_decode_matches_a_full_decode(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    smooth = np.asarray(
        Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).resize(
            (640, 480), Image.Resampling.BICUBIC
        )
    )
    path = tmp_path / "big.jpg"
    Image.fromarray(smooth).save(path, quality=95)
    fast, original = load_image(path, 64)
    with Image.open(path) as full:
        reference = np.asarray(
            full.convert("RGB")
            .crop(centre_box(*full.size))
            .resize((64, 64), Image.Resampling.LANCZOS)
        )
    assert original == (640, 480)
    assert np.abs(fast.astype(int) - reference.astype(int)).mean() < 3.0
    assert np.array_equal(decode_image_bytes(path.read_bytes(), 64), fast)


def test_png_bytes_decode() -> None:
    buffer = io.BytesIO()
    Image.fromarray(_stripes(20, 10)).save(buffer, format="PNG")
    assert decode_image_bytes(buffer.getvalue(), 10).shape == (10, 10, 3)


def test_parallel_and_sequential_loading_agree_and_report_failures(
    tiny_sample: Path, tmp_path: Path
) -> None:
    paths = sorted((tiny_sample / "images").glob("*.jpg"))[:70]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(paths[0].read_bytes()[:300])
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not an image")
    paths = [*paths, broken, tmp_path / "absent.jpg", garbage]
    parallel = load_images(paths, 24, workers=2, progress=False)
    sequential = load_images(paths, 24, workers=1, progress=False)
    assert np.array_equal(parallel.images, sequential.images)
    # 73 paths on 2 workers: forked workers wrote in place into shared memory, not the parent.
    assert isinstance(parallel.images.base, np.ndarray) and sequential.images.base is None
    assert set(parallel.errors) == set(sequential.errors) == {70, 71, 72}
    assert "runcated" in parallel.errors[70]
    assert "UnidentifiedImageError" in parallel.errors[72]
    assert parallel.ok.sum() == 70 and not parallel.images[70:].any()
    assert (parallel.original_sizes[:70] == 32).all()
    with pytest.raises(ValueError, match="workers must be >= 0"):
        load_images(paths, 24, workers=-1)
