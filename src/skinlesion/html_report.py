"""The kit of the self-contained HTML reports (evaluation and monitoring): the page skeleton and
its stylesheet, escaping, number formatting, tables, and images embedded as base64 PNG.

A page made with it fetches nothing from elsewhere (no scripts, stylesheets, fonts or links), so
it opens offline and inside the Kubeflow UI's HTML viewer. Plots use matplotlib's object API on
an Agg canvas: no pyplot state, no GUI backend, safe in a headless container.

Conventions: functions that take ``*_html`` arguments trust them as markup; every other text
argument is plain text and is escaped here.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

# What a value that the data cannot define (NaN, None) shows as.
DASH = "&mdash;"

BASE_CSS = """\
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px;
       color: #1f2328; max-width: 1150px; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.15em; margin-top: 1.8em; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
.meta { color: #57606a; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.9em; margin: 8px 0; }
th, td { border: 1px solid #d0d7de; padding: 4px 10px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f6f8fa; }
tr.bad td { color: #cf222e; font-weight: 600; }
.bad { color: #cf222e; }
img { max-width: 100%; }
"""


def escape(value: object) -> str:
    """``value`` as text, escaped for HTML content and quoted attributes."""
    return html.escape(str(value), quote=True)


def format_value(value: object, digits: int = 4, style: str = "f") -> str:
    """A number as HTML text: floats with ``digits`` in ``style`` ("f" or "g"), a dash where
    undefined (None, NaN, infinite), anything else as escaped text."""
    if style not in ("f", "g"):
        raise ValueError(f"Invalid number style {style!r}. Accepted: f, g.")
    if value is None:
        return DASH
    if isinstance(value, float | np.floating):
        if not math.isfinite(value):
            return DASH
        return f"{float(value):.{digits}{style}}"
    return escape(value)


def _looks_numeric(cell_html: str) -> bool:
    return cell_html[:1].isdigit() or cell_html[:1] == "-"


def table(
    rows: Sequence[Sequence[str]],
    *,
    header: Sequence[str] | None = None,
    row_headers: bool = False,
    numeric: Sequence[bool] | None = None,
    bad: Sequence[bool] | None = None,
) -> str:
    """An HTML table of cells that are already HTML (escape text cells first).

    ``header``: plain-text column titles. ``row_headers``: the first cell of each row is a
    ``<th>``. ``numeric``: per column, whether it is right-aligned as numbers; by default a cell
    that starts with a digit or a minus sign is. ``bad``: per row, whether it is flagged red.
    """
    lines = ["<table>"]
    if header is not None:
        lines.append("<tr>" + "".join(f"<th>{escape(title)}</th>" for title in header) + "</tr>")
    for index, row in enumerate(rows):
        cells = []
        for column, cell in enumerate(row):
            if row_headers and column == 0:
                cells.append(f"<th>{cell}</th>")
                continue
            is_number = numeric[column] if numeric is not None else _looks_numeric(cell)
            cells.append(f'<td class="num">{cell}</td>' if is_number else f"<td>{cell}</td>")
        flagged = ' class="bad"' if bad is not None and bad[index] else ""
        lines.append(f"<tr{flagged}>" + "".join(cells) + "</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def section(section_id: str, heading: str, content_html: str) -> str:
    """``<section id=...>`` with a plain-text ``<h2>`` heading and its content."""
    return f'<section id="{escape(section_id)}">\n<h2>{escape(heading)}</h2>\n{content_html}\n</section>'


def page(title: str, meta_html: str, body_html: str, *, css: str = "") -> str:
    """A whole HTML document: ``BASE_CSS`` plus ``css``, the title as ``<h1>``, a line of
    metadata, then ``body_html``."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n<style>\n{BASE_CSS}{css}</style>\n</head>\n<body>\n"
        f'<h1>{escape(title)}</h1>\n<p class="meta">{meta_html}</p>\n'
        f"{body_html}\n</body>\n</html>\n"
    )


# --- images -----------------------------------------------------------------------------------


def new_figure(width: float, height: float) -> Any:
    """A matplotlib Figure of ``width`` x ``height`` inches on an Agg canvas (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def figure_png(figure: Any, dpi: int = 100) -> str:
    """A matplotlib Figure as base64 PNG text, cropped to what it draws."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def image_png(image: np.ndarray, max_side: int | None = None) -> str:
    """A uint8 (H, W, 3) RGB array as base64 PNG text, shrunk to ``max_side`` pixels at most."""
    from PIL import Image

    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(
            f"Expected a uint8 RGB image of shape (H, W, 3); got {array.dtype} {array.shape}."
        )
    picture = Image.fromarray(np.ascontiguousarray(array), mode="RGB")
    if max_side is not None:
        picture.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def img(png_base64: str, alt: str) -> str:
    """An ``<img>`` of embedded base64 PNG data."""
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{png_base64}">'


def figure(
    png_base64: str, alt: str, *, figure_id: str | None = None, caption_html: str = ""
) -> str:
    """A ``<figure>`` holding one embedded PNG and an optional caption."""
    identity = f' id="{escape(figure_id)}"' if figure_id else ""
    caption = f"<figcaption>{caption_html}</figcaption>" if caption_html else ""
    return f"<figure{identity}>{img(png_base64, alt)}{caption}</figure>"
