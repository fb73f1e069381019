"""The HTML report kit shared by the evaluation and monitoring reports: formatting, escaping,
tables, the page skeleton and embedded PNGs."""

from __future__ import annotations

import base64
import io
import math

import numpy as np
import pytest
from PIL import Image

from skinlesion import html_report


def _decode(png_base64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(png_base64)))


def test_format_value_dashes_what_is_undefined_and_escapes_text() -> None:
    assert html_report.format_value(0.123456) == "0.1235"
    assert html_report.format_value(0.000123456, 3, style="g") == "0.000123"
    assert html_report.format_value(np.float32(0.5)) == "0.5000"
    for undefined in (None, math.nan, math.inf, np.float64("nan")):
        assert html_report.format_value(undefined) == html_report.DASH
    assert html_report.format_value(12) == "12"
    assert html_report.format_value("<a & b>") == "&lt;a &amp; b&gt;"
    with pytest.raises(ValueError, match=r"Invalid number style 'e'\. Accepted: f, g\."):
        html_report.format_value(1.0, style="e")


def test_table_escapes_headers_aligns_numbers_and_flags_rows() -> None:
    text = html_report.table(
        [["alpha", "0.5", "-1"], ["beta", "&mdash;", "x"]],
        header=["name <i>", "p", "delta"],
        bad=[False, True],
    )
    assert "<th>name &lt;i&gt;</th>" in text
    assert '<tr><td>alpha</td><td class="num">0.5</td><td class="num">-1</td></tr>' in text
    assert '<tr class="bad"><td>beta</td><td>&mdash;</td><td>x</td></tr>' in text
    pinned = html_report.table([["n", "&mdash;"]], row_headers=True, numeric=[False, True])
    assert '<tr><th>n</th><td class="num">&mdash;</td></tr>' in pinned


def test_page_is_one_self_contained_document() -> None:
    text = html_report.page(
        "A & B",
        "meta <b>bold</b>",
        html_report.section("one", "First <1>", "<p>x</p>"),
        css=".extra { color: red; }\n",
    )
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert "<title>A &amp; B</title>" in text and "<h1>A &amp; B</h1>" in text
    assert '<p class="meta">meta <b>bold</b></p>' in text  # markup arguments are trusted
    assert '<section id="one">\n<h2>First &lt;1&gt;</h2>' in text
    assert html_report.BASE_CSS in text and ".extra { color: red; }" in text
    assert "http" not in text and "<script" not in text and "<link" not in text


def test_images_are_embedded_as_png() -> None:
    image = np.random.default_rng(0).integers(0, 256, (60, 30, 3), dtype=np.uint8)
    full = _decode(html_report.image_png(image))
    assert full.format == "PNG" and full.size == (30, 60)
    np.testing.assert_array_equal(np.asarray(full.convert("RGB")), image)
    assert _decode(html_report.image_png(image, max_side=20)).size == (10, 20)
    with pytest.raises(ValueError, match=r"uint8 RGB image of shape \(H, W, 3\); got float64"):
        html_report.image_png(image.astype(np.float64))
    with pytest.raises(ValueError, match=r"got uint8 \(60, 30\)"):
        html_report.image_png(image[..., 0])

    figure = html_report.new_figure(2.0, 1.0)
    figure.add_subplot().plot([0, 1], [1, 0])
    plot = _decode(html_report.figure_png(figure, dpi=50))
    assert plot.format == "PNG" and min(plot.size) > 10
    tag = html_report.figure("AAAA", 'say "hi"', figure_id="f1", caption_html="<b>c</b>")
    assert tag == (
        '<figure id="f1"><img alt="say &quot;hi&quot;" src="data:image/png;base64,AAAA">'
        "<figcaption><b>c</b></figcaption></figure>"
    )
