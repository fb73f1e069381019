"""The monitoring report: one self-contained HTML file (``skinlesion.html_report``'s kit) with the
decision, the violations, the per-feature tests and plots (feature distributions, embeddings,
predicted classes, recall).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from skinlesion import html_report
from skinlesion.monitoring.features import IMAGE_FEATURES, RAW_FEATURES

if TYPE_CHECKING:
    from skinlesion.monitoring.baseline import Baseline
    from skinlesion.monitoring.monitor import MonitorResult

PLOTTED_FEATURES = 8
REFERENCE_COLOUR = "#57606a"
WINDOW_COLOUR = "#cf222e"


# Monitoring plots are many and small: a lower resolution keeps the page light.
PLOT_DPI = 90


def feature_plot(
    result: MonitorResult, baseline: Baseline, pixel: np.ndarray, raw: np.ndarray | None
) -> str:
    """Reference and window histograms of the features with the smallest adjusted p-values."""
    ranked = sorted(result.features, key=lambda f: (not f.drifted, f.p_adjusted))[:PLOTTED_FEATURES]
    columns = 4
    rows = max(1, math.ceil(len(ranked) / columns))
    figure = html_report.new_figure(3.2 * columns, 2.4 * rows)
    for position, feature in enumerate(ranked, start=1):
        axes = figure.add_subplot(rows, columns, position)
        reference = baseline.feature_column(feature.name)
        reference = reference[np.isfinite(reference)]
        if feature.name in IMAGE_FEATURES:
            window = pixel[:, IMAGE_FEATURES.index(feature.name)]
        elif raw is not None:
            window = raw[:, RAW_FEATURES.index(feature.name)]
        else:
            continue
        low = float(min(reference.min(), window.min()))
        high = float(max(reference.max(), window.max()))
        bins = np.linspace(low, high if high > low else low + 1, 31)
        axes.hist(
            reference, bins=bins, density=True, alpha=0.5, color=REFERENCE_COLOUR, label="baseline"
        )
        axes.hist(window, bins=bins, density=True, alpha=0.5, color=WINDOW_COLOUR, label="window")
        mark = " (drift)" if feature.drifted else ""
        axes.set_title(
            f"{feature.name}{mark}\nPSI {feature.psi:.2f}, p {feature.p_adjusted:.2g}", fontsize=8
        )
        axes.tick_params(labelsize=7)
        axes.set_yticks([])
        if position == 1:
            axes.legend(fontsize=7)
    figure.tight_layout()
    return html_report.figure_png(figure, dpi=PLOT_DPI)


def embedding_plot(baseline: Baseline, projected: np.ndarray) -> str:
    """The first two principal components, baseline and window."""
    figure = html_report.new_figure(4.6, 4.0)
    axes = figure.add_subplot(1, 1, 1)
    reference = baseline.embeddings
    if len(reference) > 2000:
        reference = reference[np.random.default_rng(0).choice(len(reference), 2000, False)]
    second = 1 if reference.shape[1] > 1 else 0
    axes.scatter(
        reference[:, 0],
        reference[:, second],
        s=4,
        alpha=0.3,
        color=REFERENCE_COLOUR,
        label="baseline",
    )
    axes.scatter(
        projected[:, 0], projected[:, second], s=6, alpha=0.6, color=WINDOW_COLOUR, label="window"
    )
    axes.set_xlabel("PC 1")
    axes.set_ylabel(f"PC {second + 1}")
    axes.set_title("Penultimate-layer embeddings (PCA)", fontsize=9)
    axes.legend(fontsize=8)
    return html_report.figure_png(figure, dpi=PLOT_DPI)


def prediction_plot(result: MonitorResult) -> str:
    """Predicted-class shares, baseline against window."""
    p = result.predictions
    assert p is not None
    figure = html_report.new_figure(5.0, 3.0)
    axes = figure.add_subplot(1, 1, 1)
    x = np.arange(len(p.classes))
    window = np.asarray(p.window_counts, dtype=np.float64)
    axes.bar(x - 0.2, p.reference_shares, width=0.4, color=REFERENCE_COLOUR, label="baseline")
    axes.bar(x + 0.2, window / max(window.sum(), 1), width=0.4, color=WINDOW_COLOUR, label="window")
    axes.set_xticks(x, p.classes, fontsize=8)
    axes.set_ylabel("share of predictions")
    axes.set_title(
        f"Predicted classes (JS distance {p.js_distance:.3f}, p {p.p_value:.2g})", fontsize=9
    )
    axes.legend(fontsize=8)
    return html_report.figure_png(figure, dpi=PLOT_DPI)


def recall_plot(result: MonitorResult, baseline: Baseline) -> str:
    """Recall per class on the labelled window against the baseline's."""
    assert result.quality is not None
    classes = baseline.classes
    base = [baseline.statistics["quality"]["recall"].get(c) for c in classes]
    window = [result.quality["recall"].get(c) for c in classes]
    figure = html_report.new_figure(5.0, 3.0)
    axes = figure.add_subplot(1, 1, 1)
    x = np.arange(len(classes))
    axes.bar(
        x - 0.2,
        [v if v is not None else 0 for v in base],
        width=0.4,
        color=REFERENCE_COLOUR,
        label="baseline",
    )
    axes.bar(
        x + 0.2,
        [v if v is not None else 0 for v in window],
        width=0.4,
        color=WINDOW_COLOUR,
        label="window",
    )
    axes.set_xticks(x, classes, fontsize=8)
    axes.set_ylim(0, 1)
    axes.set_ylabel("recall")
    axes.set_title("Recall per class on labelled traffic", fontsize=9)
    axes.legend(fontsize=8)
    return html_report.figure_png(figure, dpi=PLOT_DPI)


_CSS = """\
.verdict { font-size: 1.2em; font-weight: 600; }
.alarm { color: #cf222e; } .ok { color: #1a7f37; }
"""


def _g(value: Any, digits: int = 4) -> str:
    return html_report.format_value(value, digits, style="g")


def render_report(
    result: MonitorResult,
    baseline: Baseline,
    *,
    pixel: np.ndarray,
    raw: np.ndarray | None,
    projected: np.ndarray | None,
) -> str:
    """The report as an HTML string."""
    from skinlesion.monitoring.violations import constraint_violations

    window_rows = [[html_report.escape(str(k)), _g(v)] for k, v in result.window.items()]
    violations = constraint_violations(result)["violations"]
    violation_rows = [
        [
            html_report.escape(v.get("feature_name") or v.get("metric_name", "")),
            html_report.escape(v["constraint_check_type"]),
            html_report.escape(v["description"]),
        ]
        for v in violations
    ]
    features_html = (
        html_report.table(
            [
                [
                    f.name,
                    _g(f.reference_mean),
                    _g(f.window_mean),
                    _g(f.psi, 3),
                    _g(f.ks_statistic, 3),
                    _g(f.p_value, 3),
                    _g(f.p_adjusted, 3),
                    "yes" if f.drifted else "no",
                ]
                for f in result.features
            ],
            header=[
                "feature",
                "baseline mean",
                "window mean",
                "PSI",
                "KS",
                "p",
                "p (Holm)",
                "drift",
            ],
            bad=[f.drifted for f in result.features],
        )
        if result.features
        else "<p>Not tested.</p>"
    )
    feature_image = (
        html_report.figure(feature_plot(result, baseline, pixel, raw), "Feature distributions")
        if result.features
        else ""
    )
    if result.embedding is not None and projected is not None and len(projected):
        e = result.embedding
        embedding_html = html_report.table(
            [
                [
                    _g(e.mmd2),
                    _g(e.p_value, 3),
                    _g(e.bandwidth),
                    str(e.components),
                    str(e.reference_size),
                    str(e.window_size),
                    "yes" if e.drifted else "no",
                ]
            ],
            header=[
                "MMD^2",
                "permutation p",
                "bandwidth",
                "components",
                "reference",
                "window",
                "drift",
            ],
            bad=[e.drifted],
        ) + html_report.figure(embedding_plot(baseline, projected), "Embeddings")
    else:
        embedding_html = "<p>Not tested.</p>"
    if result.predictions is not None:
        p = result.predictions
        predictions_html = html_report.table(
            [
                [
                    _g(p.chi_square),
                    str(p.dof),
                    _g(p.p_value, 3),
                    _g(p.js_distance, 3),
                    "yes" if p.drifted else "no",
                ]
            ],
            header=["chi-square", "dof", "p", "Jensen-Shannon", "drift"],
            bad=[p.drifted],
        ) + html_report.figure(prediction_plot(result), "Predicted classes")
    else:
        predictions_html = "<p>Not tested.</p>"
    if result.quality is not None:
        quality_html = (
            html_report.table(
                [
                    [
                        c.metric,
                        _g(c.value),
                        _g(c.baseline),
                        _g(c.threshold),
                        _g(c.p_value, 3),
                        html_report.escape(c.detail),
                    ]
                    for c in result.quality_checks
                ],
                header=["metric", "window", "baseline", "threshold", "p (one-sided)", "detail"],
                bad=[c.violated for c in result.quality_checks],
            )
            + (
                f"<p class='meta'>{result.quality['labelled']} labelled images; MEL sensitivity is "
                "called out because a missed melanoma is the costliest error.</p>"
            )
            + html_report.figure(recall_plot(result, baseline), "Recall per class")
        )
    else:
        quality_html = "<p>No ground truth for this window.</p>"
    config = result.config.to_dict()
    notes_html = (
        "".join(f"<p>{html_report.escape(n)}</p>" for n in result.notes)
        + html_report.table(
            [[html_report.escape(k), _g(v)] for k, v in config.items()],
            header=["threshold", "value"],
        )
        + (
            f"<p class='meta'>False alarms on a window like the baseline: at most "
            f"{result.config.false_alarm_bound:.1%} (sum of the family alphas).</p>"
        )
    )
    model = baseline.statistics["model"]
    meta = (
        f"Model {html_report.escape(str(model.get('architecture')))} "
        f"{html_report.escape(str(model.get('version') or ''))} (sha256 "
        f"{html_report.escape(str(model.get('sha256', ''))[:12])}); baseline: "
        f"{baseline.statistics['dataset'].get('images')} images of the "
        f"{html_report.escape(str(baseline.statistics['dataset'].get('split')))} split; checks: "
        f"{html_report.escape(result.checks)}"
    )
    body = "\n".join(
        (
            f'<p class="verdict {"alarm" if result.alarm else "ok"}" id="verdict">'
            f"{html_report.escape(('ALARM: ' if result.alarm else '') + result.headline())}</p>",
            html_report.section(
                "window", "Window", html_report.table(window_rows, header=["", ""])
            ),
            html_report.section(
                "violations",
                "Violations (constraint_violations.json)",
                html_report.table(
                    violation_rows, header=["feature / metric", "check", "description"]
                )
                if violation_rows
                else "<p>None.</p>",
            ),
            html_report.section(
                "features",
                "Image features",
                '<p class="meta">KS test per feature, Holm-adjusted across features; a feature '
                "drifts when the adjusted p-value is below alpha and its PSI reaches the "
                f"threshold.</p>\n{features_html} {feature_image}",
            ),
            html_report.section("embedding", "Embeddings", embedding_html),
            html_report.section("predictions", "Predicted classes", predictions_html),
            html_report.section("quality", "Model quality", quality_html),
            html_report.section("notes", "Notes and thresholds", notes_html),
        )
    )
    return html_report.page("Monitoring report", meta, body, css=_CSS)


def write_report(
    path: Path,
    result: MonitorResult,
    baseline: Baseline,
    *,
    pixel: np.ndarray,
    raw: np.ndarray | None,
    projected: np.ndarray | None,
) -> Path:
    """Write the HTML report to ``path``."""
    Path(path).write_text(
        render_report(result, baseline, pixel=pixel, raw=raw, projected=projected),
        encoding="utf-8",
    )
    return Path(path)
