"""The evaluation report: one self-contained HTML file (``skinlesion.html_report``'s kit) with the
metrics, plots, the most confident mistakes and their Grad-CAM heatmaps, embedded as PNG.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skinlesion import html_report
from skinlesion.labels import CLASS_NAMES
from skinlesion.metrics import EvaluationResult

log = logging.getLogger(__name__)

MISCLASSIFIED_LIMIT = 24
THUMBNAIL_PX = 112
GRADCAM_PX = 160
# How strongly the heatmap's colours cover the image in an overlay (0: image only).
OVERLAY_ALPHA = 0.45


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


@dataclass(frozen=True)
class ExplainedMistake:
    """A misclassified image with the Grad-CAM heatmap of the class it was mistaken for."""

    example: MisclassifiedExample
    heatmap: np.ndarray  # float (S, S) in [0, 1]; S: the model's input size
    layer: str  # the network layer whose feature map Grad-CAM weighted


def gradcam_overlay(
    image: np.ndarray, heatmap: np.ndarray, alpha: float = OVERLAY_ALPHA
) -> np.ndarray:
    """The image (resized to the heatmap, as the model saw it) under the heatmap in colour
    (matplotlib's ``jet``: blue no evidence, red the most), uint8 (S, S, 3) RGB."""
    from matplotlib import colormaps
    from PIL import Image

    heat = np.clip(np.asarray(heatmap, dtype=np.float64), 0.0, 1.0)
    if heat.ndim != 2:
        raise ValueError(f"Expected a heatmap of shape (S, S); got {heat.shape}.")
    height, width = heat.shape
    picture = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), mode="RGB")
    base = np.asarray(picture.resize((width, height), Image.Resampling.BILINEAR), np.float64)
    colour = colormaps["jet"](heat)[..., :3] * 255.0
    blended = (1.0 - alpha) * base + alpha * colour
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


# --- plots ----------------------------------------------------------------------------------


def _plot_number(value: float) -> str:
    # Plot titles are drawn text, not HTML: an undefined value gets a word, not an entity.
    return f"{value:.4f}" if math.isfinite(value) else "undefined"


def confusion_matrix_png(result: EvaluationResult) -> str:
    """A heatmap of the confusion matrix (colour: row share, text: counts), base64 PNG."""
    matrix = np.asarray(result.confusion_matrix, dtype=np.float64)
    rows = matrix.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(rows > 0, matrix / rows, 0.0)
    figure = html_report.new_figure(6.4, 5.4)
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
    return html_report.figure_png(figure)


def roc_png(result: EvaluationResult) -> str:
    """One-vs-rest ROC curves of every class with a defined AUC, base64 PNG."""
    figure = html_report.new_figure(6.4, 5.4)
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
    axes.set_title(f"ROC curves, one vs rest (macro AUC {_plot_number(result.macro_auc)})")
    axes.legend(loc="lower right", fontsize=8)
    return html_report.figure_png(figure)


def reliability_png(result: EvaluationResult) -> str:
    """The reliability diagram: accuracy per confidence bin against the diagonal, base64 PNG."""
    return reliability_png_of(result.reliability, result.ece)


def reliability_png_of(bins: Any, ece: float, label: str = "") -> str:
    """The reliability diagram of ``bins`` (ReliabilityBins or its dict), base64 PNG."""
    if isinstance(bins, Mapping):
        from types import SimpleNamespace

        bins = SimpleNamespace(
            **{k: [np.nan if v is None else v for v in vs] for k, vs in bins.items()}
        )
    edges = np.asarray(bins.edges)
    centres = (edges[:-1] + edges[1:]) / 2
    width = float(edges[1] - edges[0])
    accuracy = np.nan_to_num(np.asarray(bins.accuracy, dtype=np.float64))
    counts = np.asarray(bins.counts)
    figure = html_report.new_figure(6.4, 5.4)
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
    axes.set_title(f"Reliability diagram{label} ({len(counts)} bins, ECE {_plot_number(ece)})")
    axes.legend(loc="upper left", fontsize=8)
    return html_report.figure_png(figure)


# --- HTML -----------------------------------------------------------------------------------

_CSS = f"""\
.plots {{ display: flex; flex-wrap: wrap; gap: 16px; }}
.plots figure {{ margin: 0; }}
.plots img {{ max-width: 520px; width: 100%; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(130px, 1fr)); gap: 10px; }}
.grid figure {{ margin: 0; font-size: 0.78em; text-align: center; }}
.grid img {{ width: {THUMBNAIL_PX}px; height: {THUMBNAIL_PX}px; object-fit: contain;
             background: #eee; }}
.gradcam-grid {{ display: flex; flex-wrap: wrap; gap: 18px; }}
.gradcam-grid figure {{ margin: 0; font-size: 0.8em; text-align: center; }}
.gradcam-grid img {{ width: {GRADCAM_PX}px; height: {GRADCAM_PX}px; object-fit: contain;
                     background: #eee; margin: 0 2px; }}
"""


def _headline_table(result: EvaluationResult, reference: float | None) -> str:
    rows = [
        ("Balanced accuracy (mean per-class recall)", result.balanced_accuracy),
        ("Balanced accuracy, ISIC reference scorer", reference),
        ("Macro AUC (one vs rest)", result.macro_auc),
        ("Accuracy", result.accuracy),
        ("Expected calibration error (15 bins)", result.ece),
        ("Test images", result.n_samples),
    ]
    if result.n_tied_predictions:
        rows.append(
            ("Rows with a tied top probability (counted as misses)", result.n_tied_predictions)
        )
    return html_report.table(
        [[html_report.escape(name), html_report.format_value(value)] for name, value in rows],
        row_headers=True,
        numeric=[False, True],
    )


def _per_class_table(result: EvaluationResult, intervals: Mapping[str, Any] | None = None) -> str:
    """One row per class; sensitivity with its bootstrap interval where ``intervals`` has it."""
    intervals = intervals or {}
    header = [
        "Class",
        "Diagnosis",
        "Support",
        "Predicted",
        "Sensitivity",
        "Specificity",
        "Precision",
        "AUC",
    ]
    rows = [
        [
            html_report.escape(item.name),
            html_report.escape(CLASS_NAMES.get(item.name, "")),
            str(item.support),
            str(item.predicted),
            (
                _interval(intervals[item.name])
                if item.name in intervals
                else html_report.format_value(item.sensitivity)
            ),
            *(
                html_report.format_value(value)
                for value in (item.specificity, item.precision, item.auc)
            ),
        ]
        for item in result.per_class  # in the order of result.classes: MEL first
    ]
    return html_report.table(rows, header=header, numeric=[False, False] + [True] * 6)


def _mistake_caption(example: MisclassifiedExample) -> str:
    return (
        f"{html_report.escape(example.image_id)}<br>"
        f"true <b>{html_report.escape(example.true_label)}</b>, "
        f'predicted <b class="bad">{html_report.escape(example.predicted_label)}</b> '
        f"({example.confidence:.0%})"
    )


def _misclassified_grid(examples: Sequence[MisclassifiedExample]) -> str:
    if not examples:
        return "<p>No misclassified images to show.</p>"
    cells = [
        html_report.figure(
            html_report.image_png(example.image, THUMBNAIL_PX),
            example.image_id,
            caption_html=_mistake_caption(example),
        )
        for example in examples
    ]
    note = (
        f'<p class="meta">The {len(examples)} wrong predictions made with the highest '
        "confidence, most confident first.</p>"
    )
    return note + '\n<div class="grid">\n' + "\n".join(cells) + "\n</div>"


def _gradcam_grid(explained: Sequence[ExplainedMistake]) -> str:
    if not explained:
        return "<p>No misclassified images to explain.</p>"
    cells = []
    for item in explained:
        example = item.example
        cells.append(
            '<figure class="gradcam">'
            + html_report.img(html_report.image_png(example.image, GRADCAM_PX), example.image_id)
            + html_report.img(
                html_report.image_png(gradcam_overlay(example.image, item.heatmap), GRADCAM_PX),
                f"Grad-CAM of {example.predicted_label} on {example.image_id}",
            )
            + f"<figcaption>{_mistake_caption(example)}</figcaption></figure>"
        )
    note = (
        f'<p class="meta">The {len(explained)} most confident mistakes: each image, then the '
        "Grad-CAM heatmap of the class it was mistaken for (red: the evidence for that class; "
        f"layer <code>{html_report.escape(explained[0].layer)}</code>).</p>"
    )
    return note + '\n<div class="gradcam-grid">\n' + "\n".join(cells) + "\n</div>"


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
        return f"<p>{html_report.escape(missing)}</p>"
    rows = [
        [html_report.escape(name), html_report.escape(text)]
        for name, text in _setting_rows(settings)
    ]
    return html_report.table(rows, row_headers=True, numeric=[False, False])


def _interval(estimate: Mapping[str, Any] | None) -> str:
    if not estimate or estimate.get("value") is None:
        return html_report.format_value(None)
    return html_report.escape(
        f"{html_report.format_value(estimate['value'], 3)} "
        f"[{html_report.format_value(estimate.get('low'), 3)}, "
        f"{html_report.format_value(estimate.get('high'), 3)}]"
    )


def _estimate_sections(result: EvaluationResult, clinical: Mapping[str, Any]) -> list[str]:
    """The test-split figure beside the held-out cross-validated one, and the image-only one."""
    cv = clinical.get("cross_validation")
    image_only = clinical.get("image_only")
    if not cv and not image_only:
        return []
    mel = next((c.sensitivity for c in result.per_class if c.name == "MEL"), None)
    rows = [
        [
            "This model on the test split",
            html_report.format_value(result.balanced_accuracy, 3),
            "",
            html_report.format_value(mel, 3),
        ]
    ]
    if cv:
        rows.append(
            [
                html_report.escape(
                    f"Cross-validated: {cv['folds']} lesion-grouped folds over the "
                    f"{cv['n_images']} held-out images (validation + test, {cv['n_lesions']} "
                    "lesions), a linear head refitted on this network's features"
                ),
                html_report.format_value(cv["balanced_accuracy"], 3),
                html_report.escape(
                    f"[{html_report.format_value(cv['ci95'][0], 3)}, "
                    f"{html_report.format_value(cv['ci95'][1], 3)}], fold SD "
                    f"{html_report.format_value(cv['fold_sd'], 3)}"
                ),
                html_report.format_value(cv["melanoma_sensitivity"], 3),
            ]
        )
    if image_only:
        rows.append(
            [
                "This model without the patient metadata (image only), test split",
                html_report.format_value(image_only["balanced_accuracy"], 3),
                "",
                html_report.format_value(image_only["melanoma_sensitivity"], 3),
            ]
        )
    note = (
        '<p class="meta">The test split holds a few dozen images of each rare class, so its '
        "figure moves by a point with one image. The cross-validated figure scores every image "
        "this network never trained on, in folds that keep each lesion together, with a "
        "lesion-resampling bootstrap interval; its head is refitted per fold, so it estimates "
        "what this network's features support rather than the deployed head "
        "(docs/evaluation.md).</p>\n"
    )
    table = html_report.table(
        rows,
        header=("estimate", "balanced accuracy", "95% interval", "melanoma sensitivity"),
        numeric=(False, True, False, True),
    )
    return [
        html_report.section("estimates", "Test split and cross-validated estimate", note + table)
    ]


def _clinical_sections(clinical: Mapping[str, Any]) -> list[str]:
    """Operating point, calibration before/after, subgroups, skin tone and OOD sections."""
    sections = []
    point = clinical.get("operating_point")
    if point:
        test = point.get("test", {})
        rows = [
            ("Malignant classes", " + ".join(point["malignant_classes"])),
            ("Threshold on the malignancy score", html_report.format_value(point["threshold"])),
            (
                "Chosen on validation for",
                f"{point['target']} {html_report.format_value(point['target_value'], 2)}",
            ),
            (
                "Malignant sensitivity at the threshold",
                _interval(test.get("malignant_sensitivity")),
            ),
            ("Specificity at the threshold", _interval(test.get("malignant_specificity"))),
            ("Share of images referred", _interval(test.get("referred_share"))),
            (
                "Melanoma sensitivity at 80% specificity",
                _interval(test.get("melanoma_sensitivity_at_80_specificity")),
            ),
            (
                "Melanoma sensitivity at 90% specificity",
                _interval(test.get("melanoma_sensitivity_at_90_specificity")),
            ),
        ]
        worst = clinical.get("worst_subgroup", {})
        for key, item in worst.items():
            rows.append(
                (
                    f"Worst judged subgroup, {key.replace('_', ' ')}",
                    html_report.escape(
                        f"{html_report.format_value(item['value'], 3)} "
                        f"({item['attribute']} = {item['group']})"
                    ),
                )
            )
        sections.append(
            html_report.section(
                "operating-point",
                "Operating point (referral), with 95% bootstrap intervals",
                html_report.table([[html_report.escape(k), v] for k, v in rows], row_headers=True),
            )
        )
    calibration = clinical.get("calibration")
    if calibration:
        before, after = calibration["before"], calibration["after"]
        sections.append(
            html_report.section(
                "calibration",
                f"Calibration: temperature {html_report.format_value(clinical['temperature'], 3)}",
                '<div class="plots">'
                + html_report.figure(
                    reliability_png_of(before["bins"], before["ece"], " before scaling"),
                    "Before temperature scaling",
                    figure_id="reliability-before",
                )
                + html_report.figure(
                    reliability_png_of(after["bins"], after["ece"], " after scaling"),
                    "After temperature scaling",
                    figure_id="reliability-after",
                )
                + "</div>",
            )
        )
    subgroups = clinical.get("subgroups", {})
    if subgroups:
        rows_html = []
        flags = []
        for attribute, rows in subgroups.items():
            for row in rows:
                rows_html.append(
                    [
                        html_report.escape(attribute),
                        html_report.escape(row["group"]),
                        html_report.format_value(row["n"]),
                        html_report.format_value(row["n_malignant"]),
                        _interval(row["balanced_accuracy"]),
                        _interval(row.get("malignant_sensitivity")),
                        "yes" if row["judged"] else "too few to judge (n &lt; 30)",
                    ]
                )
                flags.append(not row["judged"])
        sections.append(
            html_report.section(
                "subgroups",
                "Subgroups (95% bootstrap intervals)",
                html_report.table(
                    rows_html,
                    header=[
                        "attribute",
                        "group",
                        "n",
                        "malignant",
                        "balanced accuracy",
                        "malignant sensitivity",
                        "judged",
                    ],
                    bad=flags,
                ),
            )
        )
    tones = clinical.get("skin_tone")
    if tones:
        untested = [b for b, n in tones["test"].items() if n < 30 and b != "unknown"]
        note = (
            "<p>Estimated from the image (individual typology angle of the frame's outer ring). "
            + (
                "<strong>The model has not been tested (fewer than 30 test images) on: "
                + html_report.escape(", ".join(untested))
                + ".</strong>"
                if untested
                else "Every band has at least 30 test images."
            )
            + "</p>"
        )
        sections.append(
            html_report.section(
                "skin-tone",
                "Skin tone of the training and test images",
                note
                + html_report.table(
                    [
                        [
                            html_report.escape(band),
                            html_report.format_value(count),
                            html_report.format_value(tones["test"].get(band, 0)),
                        ]
                        for band, count in tones["train"].items()
                    ],
                    header=["band", "training images (sampled)", "test images"],
                ),
            )
        )
    ood = clinical.get("ood")
    if ood:
        sections.append(
            html_report.section(
                "ood",
                "Out-of-distribution refusal",
                html_report.table(
                    [[html_report.escape(k), html_report.format_value(v)] for k, v in ood.items()],
                    row_headers=True,
                ),
            )
        )
    return sections


def render_report(
    result: EvaluationResult,
    *,
    reference_balanced_accuracy: float | None = None,
    model_spec: Mapping[str, Any] | None = None,
    manifest: Mapping[str, Any] | None = None,
    misclassified: Sequence[MisclassifiedExample] = (),
    explained: Sequence[ExplainedMistake] = (),
    title: str = "Skin lesion classifier: evaluation",
    subtitle: str = "",
    clinical: Mapping[str, Any] | None = None,
) -> str:
    """The whole report as one HTML string."""
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    subtitle_text = f"{subtitle} · generated {generated}" if subtitle else f"Generated {generated}"
    plots = "\n".join(
        (
            '<div class="plots">',
            html_report.figure(
                confusion_matrix_png(result), "Confusion matrix", figure_id="confusion-matrix"
            ),
            html_report.figure(roc_png(result), "ROC curves", figure_id="roc-curves"),
            html_report.figure(
                reliability_png(result), "Reliability diagram", figure_id="reliability-diagram"
            ),
            "</div>",
        )
    )
    per_class_note = (
        '<p class="meta">One vs rest. Sensitivity, specificity and precision use the predicted '
        "class (highest probability); AUC uses each class's probability. &mdash; marks a value "
        "that this test set cannot define (no positive or no negative rows). Sensitivity's "
        "brackets: its 95% bootstrap interval over the class's test images (a class with a "
        "dozen images has a wide one).</p>\n"
    )
    body = "\n\n".join(
        (
            html_report.section(
                "headline-metrics",
                "Headline metrics",
                _headline_table(result, reference_balanced_accuracy),
            ),
            *(_estimate_sections(result, clinical) if clinical else ()),
            *(_clinical_sections(clinical) if clinical else ()),
            html_report.section(
                "per-class-metrics",
                "Per-class metrics",
                per_class_note
                + _per_class_table(result, (clinical or {}).get("per_class_sensitivity")),
            ),
            html_report.section("plots", "Confusion matrix, ROC curves and calibration", plots),
            html_report.section(
                "misclassified", "Most confident mistakes", _misclassified_grid(misclassified)
            ),
            html_report.section(
                "gradcam",
                "Where the model looked in its most confident mistakes (Grad-CAM)",
                _gradcam_grid(explained),
            ),
            html_report.section(
                "model", "Model", _settings_table(model_spec, "No model specification was given.")
            ),
            html_report.section(
                "dataset", "Dataset", _settings_table(manifest, "No dataset manifest was given.")
            ),
        )
    )
    return html_report.page(title, html_report.escape(subtitle_text), body, css=_CSS)


def write_report(path: Path, result: EvaluationResult, **kwargs: Any) -> Path:
    """Render the report (``kwargs`` as for ``render_report``) and write it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(result, **kwargs), encoding="utf-8")
    log.info("Wrote the evaluation report to %s (%.0f KiB)", path, path.stat().st_size / 1024)
    return path


# --- the run's cost ------------------------------------------------------------------------------
def cost_section(steps: Sequence[tuple[str, float | None]]) -> str:
    """ "Cost of this run": one row per step with its estimated USD (None: no price known), and
    the total of the known ones; when no step had a price, says the run was not billed."""
    known = [usd for _, usd in steps if usd is not None]
    if not known:
        content = (
            '<p class="meta">Not billed (local backend): no step ran a priced job, so there is '
            "no cost to show.</p>"
        )
    else:
        rows = [
            [html_report.escape(name), f"{usd:.4f}" if usd is not None else "unknown"]
            for name, usd in steps
        ]
        rows.append(["<strong>total (known steps)</strong>", f"{sum(known):.4f}"])
        note = (
            '<p class="meta">Estimates from each job\'s billable instance time and the on-demand '
            "price table (spot savings applied); storage and data transfer are not counted. "
            "&ldquo;unknown&rdquo;: the step's instance type has no price in the table.</p>\n"
        )
        content = note + html_report.table(rows, header=("step", "USD"), numeric=(False, True))
    return html_report.section("run-cost", "Cost of this run (up to evaluation)", content)


def add_cost_section(report_html: str, steps: Sequence[tuple[str, float | None]]) -> str:
    """The report with the cost section added at its end (the evaluate job writes the report
    before its own cost is known, so the step adds this afterwards)."""
    closing = "\n</body>"
    if closing not in report_html:
        raise ValueError("The report has no </body>: not a report written by render_report.")
    head, _, tail = report_html.rpartition(closing)
    return f"{head}\n{cost_section(steps)}{closing}{tail}"
