"""The monitoring report: one self-contained HTML file with the decision, the violations, the
per-feature tests and plots (feature distributions, embeddings, predicted classes, recall).

Plots are embedded PNGs made with matplotlib's object API (no pyplot state, no GUI backend);
nothing is fetched from elsewhere, so the page opens offline and in the Kubeflow UI.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

import numpy as np

from skinlesion.monitoring.features import IMAGE_FEATURES, RAW_FEATURES

if TYPE_CHECKING:
    from skinlesion.monitoring.baseline import Baseline
    from skinlesion.monitoring.monitor import MonitorResult

PLOTTED_FEATURES = 8
REFERENCE_COLOUR = "#57606a"
WINDOW_COLOUR = "#cf222e"


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def feature_plot(
    result: MonitorResult, baseline: Baseline, pixel: np.ndarray, raw: np.ndarray | None
) -> str:
    """Reference and window histograms of the features with the smallest adjusted p-values."""
    ranked = sorted(result.features, key=lambda f: (not f.drifted, f.p_adjusted))[:PLOTTED_FEATURES]
    columns = 4
    rows = max(1, math.ceil(len(ranked) / columns))
    figure = _figure(3.2 * columns, 2.4 * rows)
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
    return _png(figure)


def embedding_plot(baseline: Baseline, projected: np.ndarray) -> str:
    """The first two principal components, baseline and window."""
    figure = _figure(4.6, 4.0)
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
    return _png(figure)


def prediction_plot(result: MonitorResult) -> str:
    """Predicted-class shares, baseline against window."""
    p = result.predictions
    assert p is not None
    figure = _figure(5.0, 3.0)
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
    return _png(figure)


def recall_plot(result: MonitorResult, baseline: Baseline) -> str:
    """Recall per class on the labelled window against the baseline's."""
    assert result.quality is not None
    classes = baseline.classes
    base = [baseline.statistics["quality"]["recall"].get(c) for c in classes]
    window = [result.quality["recall"].get(c) for c in classes]
    figure = _figure(5.0, 3.0)
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
    return _png(figure)


_PAGE = Template(
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Monitoring report</title>
<style>
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
.verdict { font-size: 1.2em; font-weight: 600; }
.alarm { color: #cf222e; } .ok { color: #1a7f37; }
img { max-width: 100%; }
</style>
</head>
<body>
<h1>Monitoring report</h1>
<p class="meta">$meta</p>
<p class="verdict $verdict_class" id="verdict">$verdict</p>
<section id="window"><h2>Window</h2>$window</section>
<section id="violations"><h2>Violations (constraint_violations.json)</h2>$violations</section>
<section id="features"><h2>Image features</h2>
<p class="meta">KS test per feature, Holm-adjusted across features; a feature drifts when the
adjusted p-value is below alpha and its PSI reaches the threshold.</p>
$features $feature_plot</section>
<section id="embedding"><h2>Embeddings</h2>$embedding</section>
<section id="predictions"><h2>Predicted classes</h2>$predictions</section>
<section id="quality"><h2>Model quality</h2>$quality</section>
<section id="notes"><h2>Notes and thresholds</h2>$notes</section>
</body>
</html>
"""
)


def _table(header: list[str], rows: list[list[str]], bad: list[bool] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = ' class="bad"' if bad and bad[i] else ""
        cells = "".join(
            f'<td class="num">{c}</td>' if c[:1].isdigit() or c[:1] == "-" else f"<td>{c}</td>"
            for c in row
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _img(data: str, alt: str) -> str:
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def _g(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "&mdash;"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return html.escape(str(value))


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

    window_rows = [[html.escape(str(k)), _g(v)] for k, v in result.window.items()]
    violations = constraint_violations(result)["violations"]
    violation_rows = [
        [
            html.escape(v.get("feature_name") or v.get("metric_name", "")),
            html.escape(v["constraint_check_type"]),
            html.escape(v["description"]),
        ]
        for v in violations
    ]
    features_html = (
        _table(
            ["feature", "baseline mean", "window mean", "PSI", "KS", "p", "p (Holm)", "drift"],
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
            [f.drifted for f in result.features],
        )
        if result.features
        else "<p>Not tested.</p>"
    )
    feature_image = (
        _img(feature_plot(result, baseline, pixel, raw), "Feature distributions")
        if result.features
        else ""
    )
    if result.embedding is not None and projected is not None and len(projected):
        e = result.embedding
        embedding_html = _table(
            ["MMD^2", "permutation p", "bandwidth", "components", "reference", "window", "drift"],
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
            [e.drifted],
        ) + _img(embedding_plot(baseline, projected), "Embeddings")
    else:
        embedding_html = "<p>Not tested.</p>"
    if result.predictions is not None:
        p = result.predictions
        predictions_html = _table(
            ["chi-square", "dof", "p", "Jensen-Shannon", "drift"],
            [
                [
                    _g(p.chi_square),
                    str(p.dof),
                    _g(p.p_value, 3),
                    _g(p.js_distance, 3),
                    "yes" if p.drifted else "no",
                ]
            ],
            [p.drifted],
        ) + _img(prediction_plot(result), "Predicted classes")
    else:
        predictions_html = "<p>Not tested.</p>"
    if result.quality is not None:
        quality_html = (
            _table(
                ["metric", "window", "baseline", "threshold", "p (one-sided)", "detail"],
                [
                    [
                        c.metric,
                        _g(c.value),
                        _g(c.baseline),
                        _g(c.threshold),
                        _g(c.p_value, 3),
                        html.escape(c.detail),
                    ]
                    for c in result.quality_checks
                ],
                [c.violated for c in result.quality_checks],
            )
            + (
                f"<p class='meta'>{result.quality['labelled']} labelled images; MEL sensitivity is "
                "called out because a missed melanoma is the costliest error.</p>"
            )
            + _img(recall_plot(result, baseline), "Recall per class")
        )
    else:
        quality_html = "<p>No ground truth for this window.</p>"
    config = result.config.to_dict()
    notes_html = (
        "".join(f"<p>{html.escape(n)}</p>" for n in result.notes)
        + _table(["threshold", "value"], [[html.escape(k), _g(v)] for k, v in config.items()])
        + (
            f"<p class='meta'>False alarms on a window like the baseline: at most "
            f"{result.config.false_alarm_bound:.1%} (sum of the family alphas).</p>"
        )
    )
    model = baseline.statistics["model"]
    meta = (
        f"Model {html.escape(str(model.get('architecture')))} "
        f"{html.escape(str(model.get('version') or ''))} (sha256 "
        f"{html.escape(str(model.get('sha256', ''))[:12])}); baseline: "
        f"{baseline.statistics['dataset'].get('images')} images of the "
        f"{html.escape(str(baseline.statistics['dataset'].get('split')))} split; checks: "
        f"{html.escape(result.checks)}"
    )
    return _PAGE.substitute(
        meta=meta,
        verdict=html.escape(("ALARM: " if result.alarm else "") + result.headline()),
        verdict_class="alarm" if result.alarm else "ok",
        window=_table(["", ""], window_rows),
        violations=_table(["feature / metric", "check", "description"], violation_rows)
        if violation_rows
        else "<p>None.</p>",
        features=features_html,
        feature_plot=feature_image,
        embedding=embedding_html,
        predictions=predictions_html,
        quality=quality_html,
        notes=notes_html,
    )


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
