"""Request parsing and decoding: every image mode is converted properly, bad input is a 4xx."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image
from tests.serving.conftest import jpeg_bytes, png_bomb, png_bytes

from skinlesion.data.images import load_image
from skinlesion.data.sample import render_lesion_image
from skinlesion.serving.requests import (
    ImageLimits,
    RequestError,
    check_accept,
    check_content_type,
    decode_image,
    parse_explain,
    split_images,
)

LIMITS = ImageLimits()
SIZE = 64


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    """A 96 x 72 RGB picture (not square, not symmetric)."""
    return np.ascontiguousarray(render_lesion_image("BCC", size=96, seed=1)[:72])


def decoded(image: Image.Image, **save: object) -> np.ndarray:
    return decode_image(png_bytes(image, **save), SIZE, LIMITS)


def test_jpeg_decodes_like_the_preprocess_job(tmp_path, rgb: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    big = np.asarray(Image.fromarray(rgb).resize((600, 450)))
    data = jpeg_bytes(big)
    (tmp_path / "x.jpg").write_bytes(data)
    expected, original = load_image(tmp_path / "x.jpg", SIZE)
    assert original == (600, 450)
    assert np.array_equal(decode_image(data, SIZE, LIMITS), expected)


def test_modes_are_converted_to_rgb(rgb: np.ndarray) -> None:
    reference = decoded(Image.fromarray(rgb))
    assert reference.shape == (SIZE, SIZE, 3) and reference.dtype == np.uint8

    cmyk = Image.fromarray(rgb).convert("CMYK")
    buffer = io.BytesIO()
    cmyk.save(buffer, format="JPEG", quality=95)
    from_cmyk = decode_image(buffer.getvalue(), SIZE, LIMITS).astype(int)
    assert np.abs(from_cmyk - reference).mean() < 6

    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    assert np.abs(decoded(palette).astype(int) - reference).mean() < 6

    opaque = Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]), "RGBA")
    assert np.array_equal(decoded(opaque), reference)

    grey = Image.fromarray(rgb).convert("L")
    grey_out = decoded(grey)
    assert np.array_equal(grey_out[..., 0], grey_out[..., 1])
    la = grey.convert("LA")
    assert np.array_equal(decoded(la), grey_out)


def test_transparency_is_flattened_onto_black(rgb: np.ndarray) -> None:
    alpha = np.zeros(rgb.shape[:2], np.uint8)
    rgba = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    assert decoded(rgba).max() == 0
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    index = int(np.asarray(palette)[0, 0])
    out = decoded(palette, transparency=index)
    assert out.shape == (SIZE, SIZE, 3)


def test_sixteen_bit_images_are_scaled_to_eight_bits() -> None:
    ramp = (np.linspace(0, 65535, 80 * 80).reshape(80, 80)).astype(np.uint16)
    image = Image.fromarray(ramp)
    assert image.mode.startswith("I;16")
    out = decoded(image)
    assert out.shape == (SIZE, SIZE, 3)
    assert out.max() >= 250 and out.min() <= 5


def test_exif_orientation_is_honoured(rgb: np.ndarray) -> None:
    upright = decode_image(png_bytes(Image.fromarray(rgb)), SIZE, LIMITS)
    # Stored turned 90 degrees clockwise; EXIF orientation 6 says "rotate 90 CW to display"
    # after a counter-clockwise storage, i.e. the viewer turns it back.
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(rgb, k=1)))
    exif = Image.Exif()
    exif[0x0112] = 6
    turned = decode_image(png_bytes(stored, exif=exif), SIZE, LIMITS)
    assert np.array_equal(turned, upright)
    ignored = decode_image(png_bytes(stored), SIZE, LIMITS)
    assert not np.array_equal(ignored, upright)


def test_dimensions_over_the_limit_are_refused() -> None:
    wide = Image.new("L", (9000, 4001))  # 36,009,000 pixels: just over
    with pytest.raises(RequestError, match="9000 x 4001"):
        decode_image(png_bytes(wide), SIZE, LIMITS)
    tall = Image.new("L", (1, 20_001))
    with pytest.raises(RequestError, match="1 x 20001"):
        decode_image(png_bytes(tall), SIZE, LIMITS)


def test_bombs_are_refused_from_the_header_alone() -> None:
    data = png_bomb(8_000, 8_000)  # 64 MP of zeros in about 70 kB
    assert len(data) < 1_000_000
    assert Image.open(io.BytesIO(data)).size == (8_000, 8_000)
    with pytest.raises(RequestError, match="8000 x 8000") as error:
        decode_image(data, SIZE, LIMITS)
    assert error.value.status == 400
    assert "at most 36,000,000 pixels" in error.value.accepted
    with pytest.raises(RequestError, match="too many pixels"):
        # Past Pillow's own limit, which it enforces on opening.
        decode_image(png_bomb(20_000, 20_000, pixels=False), SIZE, LIMITS)


def test_a_jpeg_header_with_absurd_dimensions_is_refused(rgb: np.ndarray) -> None:
    data = bytearray(jpeg_bytes(rgb))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (65000).to_bytes(2, "big") + (65000).to_bytes(2, "big")
    with pytest.raises(RequestError, match="too many pixels"):
        decode_image(bytes(data), SIZE, LIMITS)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"%PDF-1.4 not an image", "neither JPEG nor PNG"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 100, "could not be decoded"),
        (b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, "could not be decoded"),
    ],
)
def test_undecodable_bytes_are_a_400(data: bytes, message: str) -> None:
    with pytest.raises(RequestError, match=message) as error:
        decode_image(data, SIZE, LIMITS)
    assert error.value.status == 400 and "JPEG or PNG" in error.value.accepted


def test_a_truncated_jpeg_is_a_400(rgb: np.ndarray) -> None:
    data = jpeg_bytes(rgb)
    with pytest.raises(RequestError, match="could not be decoded"):
        decode_image(data[: len(data) // 2], SIZE, LIMITS)


def test_json_shapes() -> None:
    one = base64.b64encode(b"abc").decode()
    assert split_images(json.dumps({"image": one}).encode(), "application/json", LIMITS) == [b"abc"]
    body = json.dumps({"instances": [{"b64": one}, {"b64": f"data:image/png;base64,{one}"}]})
    assert split_images(body.encode(), "application/json", LIMITS) == [b"abc", b"abc"]
    assert split_images(b"raw", "image/jpeg", LIMITS) == [b"raw"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "neither"),
        (b'{"instances": {}}', "must be a list"),
        (b'{"instances": []}', "no image"),
        (b'{"instances": ["abc"]}', "instances\\[0\\]"),
        (b'{"image": 3}', "base64 string"),
        (b'{"image": "***"}', "not valid base64"),
        (b"\xff\xfe{}", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON|neither"),
    ],
)
def test_bad_json_is_a_400(body: bytes, message: str) -> None:
    with pytest.raises(RequestError, match=message) as error:
        split_images(body, "application/json", LIMITS)
    assert error.value.status == 400


def test_too_many_images_is_a_400() -> None:
    body = json.dumps({"instances": [{"b64": "YQ=="}] * 17}).encode()
    with pytest.raises(RequestError, match="17 images") as error:
        split_images(body, "application/json", LIMITS)
    assert "at most 16" in error.value.accepted


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "*/*",
        "application/json",
        "text/html, application/*;q=0.5",
        "APPLICATION/JSON; charset=utf-8",
    ],
)
def test_accept_admitting_json(header: str | None) -> None:
    check_accept(header)


@pytest.mark.parametrize(
    "header", ["text/csv", "application/json;q=0", "image/png, text/*", "application/json;q=x"]
)
def test_accept_refusing_json(header: str) -> None:
    with pytest.raises(RequestError) as error:
        check_accept(header)
    assert error.value.status == 406


def test_content_types() -> None:
    assert check_content_type("Image/JPEG; foo=bar") == "image/jpeg"
    assert check_content_type("application/x-image") == "application/x-image"
    for bad in (None, "", "text/plain", "image/gif"):
        with pytest.raises(RequestError) as error:
            check_content_type(bad)
        assert error.value.status == 415 and "image/jpeg" in error.value.accepted


def test_explain_parameter() -> None:
    assert parse_explain(b"") == ""
    assert parse_explain(b"explain=gradcam") == "gradcam"
    assert parse_explain(b"explain=none&x=1") == ""
    with pytest.raises(RequestError, match="Unknown explanation"):
        parse_explain(b"explain=shap")
