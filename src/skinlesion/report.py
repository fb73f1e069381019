"""The evaluation report: one self-contained HTML file, plots and thumbnails embedded as PNG.

Nothing is fetched from elsewhere (no scripts, stylesheets or fonts), so the file opens offline
and inside the Kubeflow UI's HTML viewer.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import numpy as np

from skinlesion.labels import CLASS_NAMES
from skinlesion.metrics import EvaluationResult

log = logging.getLogger(__name__)

MISCLASSIFIED_LIMIT = 24
THUMBNAIL_PX = 112


@dataclass(frozen=True)
class MisclassifiedExample:
    """One test image that the model got wrong, with what it said."""

    image_id: str
    image: np.ndarray  # uint8 (H, W, 3) RGB
    true_label: str
    predicted_label: str
    confidence: float  # the probability of the predicted class


def select_misclassified(
    images: np.ndarray,
    y_true: np.ndarray,
    probabilities: np.ndarray,
    image_ids: Sequence[str],
    classes: Sequence[str],
    limit: int = MISCLASSIFIED_LIMIT,
) -> list[MisclassifiedExample]:
    """The ``limit`` most confident mistakes, most confident first (the ones worth a look)."""
    labels = np.asarray(y_true)
    probs = np.asarray(probabilities)
    predicted = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    order = wrong[np.argsort(-confidence[wrong], kind="stable")][: max(limit, 0)]
    return [
        MisclassifiedExample(
            image_id=str(image_ids[i]),
            image=np.asarray(images[i]),
            true_label=classes[int(labels[i])],
            predicted_label=classes[int(predicted[i])],
            confidence=float(confidence[i]),
        )
        for i in order
    ]


# --- plots ----------------------------------------------------------------------------------


def _figure_png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _new_figure(width: float, height: float) -> Any:
    # The object-oriented API: no pyplot state, no GUI backend, safe in a headless container.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def confusion_matrix_png(result: EvaluationResult) -> str:
    """A heatmap of the confusion matrix (colour: row share, text: counts), base64 PNG."""
    matrix = np.asarray(result.confusion_matrix, dtype=np.float64)
    rows = matrix.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(rows > 0, matrix / rows, 0.0)
    figure = _new_figure(6.4, 5.4)
    axes = figure.add_subplot()
    image = axes.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    ticks = range(len(result.classes))
    axes.set_xticks(list(ticks), labels=list(result.classes))
    axes.set_yticks(list(ticks), labels=list(result.classes))
    axes.set_xlabel("Predicted class")
    axes.set_ylabel("True class")
    axes.set_title("Confusion matrix (colour: share of the true class)")
    for i in ticks:
        for j in ticks:
            count = int(matrix[i, j])
            if count:
                colour = "white" if share[i, j] > 0.5 else "black"
                axes.text(j, i, str(count), ha="center", va="center", color=colour, fontsize=9)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    return _figure_png(figure)


def roc_png(result: EvaluationResult) -> str:
    """One-vs-rest ROC curves of every class with a defined AUC, base64 PNG."""
    figure = _new_figure(6.4, 5.4)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    for item in result.per_class:
        curve = result.roc_curves[item.name]
        if not curve.fpr:
            continue
        axes.plot(curve.fpr, curve.tpr, linewidth=1.5, label=f"{item.name} (AUC {item.auc:.3f})")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.01)
    axes.set_xlabel("False positive rate (1 - specificity)")
    axes.set_ylabel("True positive rate (sensitivity)")
    axes.set_title(f"ROC curves, one vs rest (macro AUC {_number(result.macro_auc)})")
    axes.legend(loc="lower right", fontsize=8)
    return _figure_png(figure)


def reliability_png(result: EvaluationResult) -> str:
    """The reliability diagram: accuracy per confidence bin against the diagonal, base64 PNG."""
    bins = result.reliability
    edges = np.asarray(bins.edges)
    centres = (edges[:-1] + edges[1:]) / 2
    width = float(edges[1] - edges[0])
    accuracy = np.nan_to_num(np.asarray(bins.accuracy, dtype=np.float64))
    counts = np.asarray(bins.counts)
    figure = _new_figure(6.4, 5.4)
    axes = figure.add_subplot()
    axes.bar(centres, accuracy, width=width * 0.95, color="#4a78b0", label="Accuracy")
    filled = counts > 0
    axes.plot(
        np.asarray(bins.confidence)[filled],
        accuracy[filled],
        "o",
        color="#d9822b",
        markersize=4,
        label="(mean confidence, accuracy)",
    )
    axes.plot(
        [0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="Perfect calibration"
    )
    # The number of rows in each bin, on top of its bar.
    for x, n, acc in zip(centres, counts, accuracy, strict=True):
        if n:
            axes.text(x, min(acc + 0.01, 0.95), str(int(n)), ha="center", fontsize=7)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("Top-label confidence")
    axes.set_ylabel("Accuracy")
    axes.set_title(f"Reliability diagram ({len(counts)} bins, ECE {_number(result.ece)})")
    axes.legend(loc="upper left", fontsize=8)
    return _figure_png(figure)


def thumbnail_png(image: np.ndarray, size: int = THUMBNAIL_PX) -> str:
    """A uint8 RGB image as a base64 PNG no larger than ``size`` pixels on its long side."""
    from PIL import Image

    picture = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), mode="RGB")
    picture.thumbnail((size, size))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


# --- HTML -----------------------------------------------------------------------------------

_PAGE = Template(
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>$title</title>
<style>
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px;
       color: #1f2328; max-width: 1100px; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.15em; margin-top: 1.8em; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
.meta { color: #57606a; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.92em; margin: 8px 0; }
th, td { border: 1px solid #d0d7de; padding: 4px 10px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f6f8fa; }
.plots { display: flex; flex-wrap: wrap; gap: 16px; }
.plots figure { margin: 0; }
.plots img { max-width: 520px; width: 100%; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(130px, 1fr)); gap: 10px; }
.grid figure { margin: 0; font-size: 0.78em; text-align: center; }
.grid img { width: ${thumb}px; height: ${thumb}px; object-fit: contain; background: #eee; }
.bad { color: #cf222e; }
</style>
</head>
<body>
<h1>$title</h1>
<p class="meta">$subtitle</p>

<section id="headline-metrics">
<h2>Headline metrics</h2>
$headline
</section>

<section id="per-class-metrics">
<h2>Per-class metrics</h2>
<p class="meta">One vs rest. Sensitivity, specificity and precision use the predicted class
(highest probability); AUC uses each class's probability. &mdash; marks a value that this
test set cannot define (no positive or no negative rows).</p>
$per_class
</section>

<section id="plots">
<h2>Confusion matrix, ROC curves and calibration</h2>
<div class="plots">
<figure id="confusion-matrix"><img alt="Confusion matrix" src="data:image/png;base64,$confusion"></figure>
<figure id="roc-curves"><img alt="ROC curves" src="data:image/png;base64,$roc"></figure>
<figure id="reliability-diagram"><img alt="Reliability diagram" src="data:image/png;base64,$reliability"></figure>
</div>
</section>

<section id="misclassified">
<h2>Most confident mistakes</h2>
$misclassified
</section>

<section id="model">
<h2>Model</h2>
$model
</section>

<section id="dataset">
<h2>Dataset</h2>
$dataset
</section>
</body>
</html>
"""
)


def _number(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return "&mdash;"
    return f"{value:.{digits}f}"


def _headline_table(result: EvaluationResult, reference: float | None) -> str:
    rows = [
        ("Balanced accuracy (mean per-class recall)", _number(result.balanced_accuracy)),
        ("Balanced accuracy, ISIC reference scorer", _number(reference)),
        ("Macro AUC (one vs rest)", _number(result.macro_auc)),
        ("Accuracy", _number(result.accuracy)),
        ("Expected calibration error (15 bins)", _number(result.ece)),
        ("Test images", str(result.n_samples)),
    ]
    if result.n_tied_predictions:
        rows.append(
            ("Rows with a tied top probability (counted as misses)", str(result.n_tied_predictions))
        )
    body = "\n".join(
        f"<tr><th>{html.escape(name)}</th><td class='num'>{value}</td></tr>" for name, value in rows
    )
    return f"<table>\n{body}\n</table>"


def _per_class_table(result: EvaluationResult) -> str:
    header = (
        "<tr><th>Class</th><th>Diagnosis</th><th>Support</th><th>Predicted</th>"
        "<th>Sensitivity</th><th>Specificity</th><th>Precision</th><th>AUC</th></tr>"
    )
    rows = []
    for item in result.per_class:  # in the order of result.classes: MEL first
        rows.append(
            "<tr>"
            f"<td>{html.escape(item.name)}</td>"
            f"<td>{html.escape(CLASS_NAMES.get(item.name, ''))}</td>"
            f"<td class='num'>{item.support}</td>"
            f"<td class='num'>{item.predicted}</td>"
            f"<td class='num'>{_number(item.sensitivity)}</td>"
            f"<td class='num'>{_number(item.specificity)}</td>"
            f"<td class='num'>{_number(item.precision)}</td>"
            f"<td class='num'>{_number(item.auc)}</td>"
            "</tr>"
        )
    return "<table>\n" + header + "\n" + "\n".join(rows) + "\n</table>"


def _misclassified_grid(examples: Sequence[MisclassifiedExample]) -> str:
    if not examples:
        return "<p>No misclassified images to show.</p>"
    cells = []
    for example in examples:
        cells.append(
            "<figure>"
            f"<img alt='{html.escape(example.image_id, quote=True)}' "
            f"src='data:image/png;base64,{thumbnail_png(example.image)}'>"
            f"<figcaption>{html.escape(example.image_id)}<br>"
            f"true <b>{html.escape(example.true_label)}</b>, "
            f"predicted <b class='bad'>{html.escape(example.predicted_label)}</b> "
            f"({example.confidence:.0%})</figcaption>"
            "</figure>"
        )
    note = (
        f"<p class='meta'>The {len(examples)} wrong predictions made with the highest "
        "confidence, most confident first.</p>"
    )
    return note + "\n<div class='grid'>\n" + "\n".join(cells) + "\n</div>"


def _scalar_text(value: Any) -> str | None:
    if isinstance(value, bool | int | str) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return None


def _inline_text(value: Any) -> str | None:
    """Scalars, and small mappings or lists of scalars, as one line; None for anything else."""
    scalar = _scalar_text(value)
    if scalar is not None:
        return scalar
    if isinstance(value, Mapping):
        parts = [(str(k), _scalar_text(v)) for k, v in value.items()]
        if len(parts) <= 16 and all(text is not None for _, text in parts):
            return ", ".join(f"{k}: {text}" for k, text in parts) or "(empty)"
        return None
    if isinstance(value, list | tuple):
        texts = [_scalar_text(v) for v in value]
        if len(texts) <= 16 and all(text is not None for text in texts):
            return ", ".join(str(text) for text in texts) or "(empty)"
        return f"({len(value)} items)"
    return type(value).__name__


def _setting_rows(settings: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, text) rows; nested mappings that do not fit on one line are unfolded."""
    rows: list[tuple[str, str]] = []
    for key, value in settings.items():
        name = f"{prefix}{key}"
        text = _inline_text(value)
        if text is None and isinstance(value, Mapping):
            rows.extend(_setting_rows(value, prefix=f"{name}."))
        else:
            rows.append((name, text or ""))
    return rows


def _settings_table(settings: Mapping[str, Any] | None, missing: str) -> str:
    if not settings:
        return f"<p>{html.escape(missing)}</p>"
    rows = "\n".join(
        f"<tr><th>{html.escape(name)}</th><td>{html.escape(text)}</td></tr>"
        for name, text in _setting_rows(settings)
    )
    return f"<table>\n{rows}\n</table>"


def render_report(
    result: EvaluationResult,
    *,
    reference_balanced_accuracy: float | None = None,
    model_spec: Mapping[str, Any] | None = None,
    manifest: Mapping[str, Any] | None = None,
    misclassified: Sequence[MisclassifiedExample] = (),
    title: str = "Skin lesion classifier: evaluation",
    subtitle: str = "",
) -> str:
    """The whole report as one HTML string."""
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    subtitle_text = f"{subtitle} · generated {generated}" if subtitle else f"Generated {generated}"
    return _PAGE.substitute(
        title=html.escape(title),
        subtitle=html.escape(subtitle_text),
        thumb=THUMBNAIL_PX,
        headline=_headline_table(result, reference_balanced_accuracy),
        per_class=_per_class_table(result),
        confusion=confusion_matrix_png(result),
        roc=roc_png(result),
        reliability=reliability_png(result),
        misclassified=_misclassified_grid(misclassified),
        model=_settings_table(model_spec, "No model specification was given."),
        dataset=_settings_table(manifest, "No dataset manifest was given."),
    )


def write_report(path: Path, result: EvaluationResult, **kwargs: Any) -> Path:
    """Render the report (``kwargs`` as for ``render_report``) and write it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(result, **kwargs), encoding="utf-8")
    log.info("Wrote the evaluation report to %s (%.0f KiB)", path, path.stat().st_size / 1024)
    return path
