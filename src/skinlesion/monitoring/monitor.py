"""The monitor's decision: compare a window of captured traffic with the baseline.

:func:`analyze_window` is the statistics alone (arrays in, a :class:`MonitorResult` out), used
by the job and by the benchmark; :func:`run_monitor` is the whole job: read the baseline, the
capture window and the ground truth, run the model for embeddings, decide, write the outputs.

Data drift is raised when any of these rejects (see :mod:`skinlesion.monitoring.config` for the
false-alarm budget):

- image features: per-feature KS tests, Holm-adjusted over all features, and PSI at least
  ``psi_threshold`` (significant and large enough to matter);
- embeddings: MMD between the window's and the reference's PCA-reduced penultimate features,
  with a permutation test;
- predictions: a chi-square test of the predicted-class counts against the baseline's
  (Jensen-Shannon distance reported as the effect size);
- unreadable images: more than ``max_unreadable_fraction`` of the captured images do not decode.

A quality drop is raised when labelled traffic shows balanced accuracy or MEL sensitivity
significantly below the baseline by more than the tolerance.
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from skinlesion.monitoring.baseline import Baseline, BaselineError, model_fingerprint
from skinlesion.monitoring.config import MonitorConfig, check_checks
from skinlesion.monitoring.drift import (
    bin_shares,
    chi_square_test,
    holm,
    jensen_shannon_distance,
    ks_test,
    mmd_permutation_test,
    psi,
)
from skinlesion.monitoring.features import ALL_FEATURES, IMAGE_FEATURES, RAW_FEATURES
from skinlesion.monitoring.files import (
    KFP_METRICS_FILE,
    OUTPUT_FILES,
    REPORT_FILE,
    SUMMARY_FILE,
    VIOLATIONS_FILE,
    WINDOW_STATISTICS_FILE,
    kfp_metrics,
    write_json,
)
from skinlesion.monitoring.quality import (
    QualityCheck,
    balanced_accuracy_check,
    quality_metrics,
    sensitivity_check,
)

log = logging.getLogger(__name__)

SIZE_RANGE_TOLERANCE = 0.05  # share of images outside the training sizes that is still normal


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's tests."""

    name: str
    psi: float
    ks_statistic: float
    p_value: float
    p_adjusted: float  # Holm over all features of the window
    drifted: bool
    reference_mean: float
    window_mean: float


@dataclass(frozen=True)
class EmbeddingDrift:
    """The MMD test on PCA-reduced penultimate features."""

    mmd2: float
    p_value: float
    bandwidth: float
    components: int
    reference_size: int
    window_size: int
    drifted: bool


@dataclass(frozen=True)
class PredictionDrift:
    """The predicted-class distribution against the baseline's."""

    classes: tuple[str, ...]
    reference_shares: tuple[float, ...]
    window_counts: tuple[int, ...]
    js_distance: float
    chi_square: float
    dof: int
    p_value: float
    drifted: bool


@dataclass(frozen=True)
class SizeRange:
    """Original image sizes against the training data's range (when the baseline has no
    per-image encoding features)."""

    outside: int
    images: int
    width_range: tuple[float, float]
    height_range: tuple[float, float]
    drifted: bool


@dataclass
class MonitorResult:
    """Everything the monitor decided about one window."""

    checks: str
    window: dict[str, Any]
    config: MonitorConfig
    data_drift: bool = False
    quality_drop: bool = False
    insufficient_data: bool = False
    unreadable_fraction: float = 0.0
    features: list[FeatureDrift] = field(default_factory=list)
    embedding: EmbeddingDrift | None = None
    predictions: PredictionDrift | None = None
    size_range: SizeRange | None = None
    quality: dict[str, Any] | None = None
    quality_checks: list[QualityCheck] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def alarm(self) -> bool:
        """What the pipeline acts on: drift, a quality drop, or either, as ``checks`` says."""
        return self.data_drift or self.quality_drop

    @property
    def drifted_features(self) -> list[str]:
        return [f.name for f in self.features if f.drifted]

    def headline(self) -> str:
        """One line for a notification subject or a log."""
        if self.insufficient_data and not self.quality_drop:
            return f"insufficient data ({self.window.get('images', 0)} images)"
        parts = []
        if self.data_drift:
            what = []
            if self.drifted_features:
                what.append("features " + ", ".join(self.drifted_features[:5]))
            if self.embedding and self.embedding.drifted:
                what.append("embeddings")
            if self.predictions and self.predictions.drifted:
                what.append("predicted classes")
            if self.size_range and self.size_range.drifted:
                what.append("image sizes")
            if self.unreadable_fraction > self.config.max_unreadable_fraction:
                what.append("unreadable images")
            parts.append("data drift (" + "; ".join(what) + ")")
        if self.quality_drop:
            parts.append(
                "quality drop ("
                + ", ".join(c.metric for c in self.quality_checks if c.violated)
                + ")"
            )
        return " and ".join(parts) if parts else "no drift, no quality drop"

    def to_dict(self) -> dict[str, Any]:
        from skinlesion.monitoring.violations import constraint_violations

        return _json_safe(
            {
                "checks": self.checks,
                "alarm": self.alarm,
                "data_drift": self.data_drift,
                "quality_drop": self.quality_drop,
                "insufficient_data": self.insufficient_data,
                "headline": self.headline(),
                "window": self.window,
                "unreadable_fraction": self.unreadable_fraction,
                "features": [asdict(f) for f in self.features],
                "drifted_features": self.drifted_features,
                "embedding": asdict(self.embedding) if self.embedding else None,
                "predictions": asdict(self.predictions) if self.predictions else None,
                "size_range": asdict(self.size_range) if self.size_range else None,
                "quality": self.quality,
                "quality_checks": [c.to_dict() for c in self.quality_checks],
                "violations": constraint_violations(self)["violations"],
                "config": self.config.to_dict(),
                "false_alarm_bound": self.config.false_alarm_bound,
                "notes": self.notes,
            }
        )


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- the statistics ----------------------------------------------------------------------------


def feature_drift(
    baseline: Baseline, pixel: np.ndarray, raw: np.ndarray | None, config: MonitorConfig
) -> list[FeatureDrift]:
    """KS and PSI per feature the baseline has, Holm-adjusted across them."""
    rows: list[tuple[str, float, float, float, float, float]] = []
    for name in baseline.feature_names:
        if name in IMAGE_FEATURES:
            values = pixel[:, IMAGE_FEATURES.index(name)]
        elif raw is not None:
            values = raw[:, RAW_FEATURES.index(name)]
        else:
            continue
        reference = baseline.feature_column(name)
        reference = reference[np.isfinite(reference)]
        values = values[np.isfinite(values)]
        summary = baseline.statistics["features"][name]
        edges = np.asarray(summary["psi_edges"], dtype=np.float64)
        score = psi(np.asarray(summary["psi_shares"]), bin_shares(values, edges))
        test = ks_test(reference, values)
        rows.append(
            (
                name,
                score,
                test.statistic,
                test.p_value,
                float(reference.mean()),
                float(values.mean()),
            )
        )
    adjusted = holm(np.array([r[3] for r in rows]))
    return [
        FeatureDrift(
            name=name,
            psi=score,
            ks_statistic=statistic,
            p_value=p_value,
            p_adjusted=float(p_adj),
            drifted=bool(p_adj < config.alpha_features and score >= config.psi_threshold),
            reference_mean=reference_mean,
            window_mean=window_mean,
        )
        for (name, score, statistic, p_value, reference_mean, window_mean), p_adj in zip(
            rows, adjusted, strict=True
        )
    ]


def embedding_drift(
    baseline: Baseline, projected: np.ndarray, config: MonitorConfig
) -> EmbeddingDrift:
    """MMD permutation test of the window's embeddings against a fixed reference subsample."""
    reference = baseline.embeddings
    if len(reference) > config.mmd_reference:
        rng = np.random.default_rng(config.seed)
        reference = reference[np.sort(rng.choice(len(reference), config.mmd_reference, False))]
    bandwidth = float(baseline.statistics["embedding"]["bandwidth"])
    test = mmd_permutation_test(
        reference, projected, bandwidth, permutations=config.permutations, seed=config.seed
    )
    return EmbeddingDrift(
        mmd2=test.statistic,
        p_value=test.p_value,
        bandwidth=bandwidth,
        components=int(reference.shape[1]),
        reference_size=len(reference),
        window_size=len(projected),
        drifted=test.p_value < config.alpha_embedding,
    )


def prediction_drift(
    baseline: Baseline, predicted: np.ndarray, config: MonitorConfig
) -> PredictionDrift:
    """Chi-square of the window's predicted-class counts against the baseline's."""
    classes = baseline.classes
    k = len(classes)
    reference = np.bincount(baseline.predicted, minlength=k)
    window = np.bincount(np.asarray(predicted, dtype=np.int64), minlength=k)
    test = chi_square_test(reference, window, classes)
    return PredictionDrift(
        classes=classes,
        reference_shares=tuple(float(v) for v in reference / reference.sum()),
        window_counts=tuple(int(v) for v in window),
        js_distance=jensen_shannon_distance(reference, window),
        chi_square=test.statistic,
        dof=test.dof,
        p_value=test.p_value,
        drifted=test.p_value < config.alpha_predictions,
    )


def size_range_check(baseline: Baseline, raw: np.ndarray) -> SizeRange | None:
    """Share of window images whose original size is outside the training data's range."""
    summary = baseline.statistics.get("original_size") or {}
    if not summary.get("count") or len(raw) == 0:
        return None
    width = (float(summary["width"]["min"]), float(summary["width"]["max"]))
    height = (float(summary["height"]["min"]), float(summary["height"]["max"]))
    w, h = raw[:, RAW_FEATURES.index("width")], raw[:, RAW_FEATURES.index("height")]
    outside = int(np.sum((w < width[0]) | (w > width[1]) | (h < height[0]) | (h > height[1])))
    return SizeRange(
        outside=outside,
        images=len(raw),
        width_range=width,
        height_range=height,
        drifted=outside > SIZE_RANGE_TOLERANCE * len(raw),
    )


def analyze_window(
    baseline: Baseline,
    *,
    pixel: np.ndarray,
    raw: np.ndarray | None,
    projected: np.ndarray,
    predicted: np.ndarray,
    y_true: np.ndarray | None = None,
    unreadable: int = 0,
    checks: str = "all",
    window: dict[str, Any] | None = None,
    config: MonitorConfig | None = None,
) -> MonitorResult:
    """Decide about one window from its arrays (one row per image).

    ``pixel``: :data:`IMAGE_FEATURES` per image; ``raw``: :data:`RAW_FEATURES` per image (None
    when unknown); ``projected``: embeddings in the baseline's PCA space; ``predicted``: the
    class the endpoint answered; ``y_true``: the labelled class (-1: no label), or None.
    """
    config = config or baseline.config
    check_checks(checks)
    n = len(pixel)
    if not len(projected) == len(predicted) == n or (raw is not None and len(raw) != n):
        raise ValueError("The window's arrays differ in length: one row per image in each.")
    result = MonitorResult(checks=checks, window=dict(window or {"images": n}), config=config)
    result.window.setdefault("images", n)
    attempted = n + unreadable
    result.unreadable_fraction = unreadable / attempted if attempted else 0.0

    if checks in ("drift", "all"):
        if n < config.min_window:
            result.insufficient_data = True
            result.notes.append(
                f"{n} images in the window, fewer than min_window={config.min_window}: "
                "no drift decision."
            )
            log.warning("%s", result.notes[-1])
        else:
            result.features = feature_drift(baseline, pixel, raw, config)
            result.embedding = embedding_drift(baseline, projected, config)
            result.predictions = prediction_drift(baseline, predicted, config)
            if raw is not None and not baseline.statistics.get("raw_features"):
                result.size_range = size_range_check(baseline, raw)
        unreadable_drift = (
            attempted > 0 and result.unreadable_fraction > config.max_unreadable_fraction
        )
        result.data_drift = bool(
            result.drifted_features
            or (result.embedding is not None and result.embedding.drifted)
            or (result.predictions is not None and result.predictions.drifted)
            or (result.size_range is not None and result.size_range.drifted)
            or unreadable_drift
        )

    if checks in ("quality", "all") and y_true is not None:
        metrics = quality_metrics(y_true, predicted, baseline.classes)
        result.quality = metrics.to_dict()
        if metrics.labelled < config.min_labels:
            result.notes.append(
                f"{metrics.labelled} labelled images, fewer than min_labels={config.min_labels}: "
                "no quality decision."
            )
            log.warning("%s", result.notes[-1])
            if checks == "quality":
                result.insufficient_data = True
        else:
            recall = baseline.statistics["quality"]["recall"]
            result.quality_checks = [
                balanced_accuracy_check(
                    metrics,
                    recall,
                    max_drop=config.max_balanced_accuracy_drop,
                    alpha=config.alpha_quality,
                ),
                sensitivity_check(
                    metrics,
                    recall,
                    max_drop=config.max_mel_sensitivity_drop,
                    alpha=config.alpha_quality,
                ),
            ]
            result.quality_drop = any(c.violated for c in result.quality_checks)
    elif checks == "quality":
        result.insufficient_data = True
        result.notes.append("No ground truth was given: no quality decision.")
    return result


# --- the job -----------------------------------------------------------------------------------


def window_statistics(
    pixel: np.ndarray, raw: np.ndarray | None, predicted: np.ndarray, classes: tuple[str, ...]
) -> dict[str, Any]:
    """statistics.json of the window: per-feature mean, std and quantiles, predicted classes."""
    features: dict[str, Any] = {}
    columns = [(name, pixel[:, i]) for i, name in enumerate(IMAGE_FEATURES)]
    if raw is not None:
        columns += [(name, raw[:, i]) for i, name in enumerate(RAW_FEATURES)]
    for name, values in columns:
        if len(values):
            features[name] = {
                "mean": float(values.mean()),
                "std": float(values.std()),
                "quantiles": {
                    f"{q:g}": float(v)
                    for q, v in zip(
                        (0.05, 0.5, 0.95), np.quantile(values, (0.05, 0.5, 0.95)), strict=True
                    )
                },
            }
    counts = np.bincount(np.asarray(predicted, dtype=np.int64), minlength=len(classes))
    return {
        "images": len(pixel),
        "features": features,
        "predictions": {"class_counts": dict(zip(classes, (int(c) for c in counts), strict=True))},
    }


def _write_json(path: Path, payload: Any) -> None:
    write_json(path, _json_safe(payload))


def run_monitor(
    baseline_dir: Path,
    capture: str,
    output_dir: Path,
    *,
    model_path: str = "",
    labels: str = "",
    start: datetime | None = None,
    end: datetime | None = None,
    checks: str = "all",
    config: MonitorConfig | None = None,
    device: str = "cpu",
    batch_size: int = 64,
    max_images: int = 0,
) -> MonitorResult:
    """The monitor job: read, decide, and write :data:`OUTPUT_FILES` to ``output_dir``.

    ``capture``: a capture folder, file or s3:// prefix; ``labels``: ground truth (folder, file
    or s3://; empty: none); ``model_path``: the model bundle (empty: the one the baseline
    records). The model must be the baseline's (same weights fingerprint).
    """
    from skinlesion.artifacts import resolve_model_dir
    from skinlesion.models import Predictor
    from skinlesion.monitoring.monitoring_report import write_report
    from skinlesion.monitoring.quality import join_labels, read_ground_truth
    from skinlesion.monitoring.violations import write_violations
    from skinlesion.monitoring.window import load_window

    check_checks(checks)
    baseline = Baseline.load(Path(baseline_dir))
    if config is not None:
        baseline = replace(baseline, config=config)
    classes = baseline.classes
    window = load_window(
        capture,
        image_size=baseline.image_size,
        classes=classes,
        start=start,
        end=end,
        max_images=max_images,
    )
    summary = window.summary() | {
        "capture": capture,
        "start": start.isoformat() if start else None,
        "end": end.isoformat() if end else None,
    }
    model_source = model_path or str(baseline.statistics["model"]["uri"])
    with tempfile.TemporaryDirectory(prefix="skinlesion-monitor-") as scratch:
        local_model = Path(model_source)
        if model_source.startswith("s3://"):
            raise BaselineError(
                f"The model {model_source} is in S3: pass a local model folder or model.tar.gz "
                "(the monitor job fetches s3:// inputs before it starts)."
            )
        model_dir = resolve_model_dir(local_model, Path(scratch) / "model")
        fingerprint = model_fingerprint(model_dir)
        if fingerprint != baseline.model_sha256:
            raise BaselineError(
                f"The model at {model_source} (sha256 {fingerprint[:12]}) is not the baseline's "
                f"model (sha256 {baseline.model_sha256[:12]}): rebuild the baseline for this "
                "model, or monitor with the model it was built for."
            )
        predictor = Predictor.load(model_dir, device=device, precision="fp32")
        if len(window):
            probabilities, embeddings = predictor.predict_with_embeddings(
                window.images, batch_size=batch_size
            )
        else:
            probabilities = np.zeros((0, len(classes)), np.float32)
            embeddings = np.zeros((0, baseline.pca_mean.shape[0]), np.float32)
    from skinlesion.monitoring.features import image_features

    pixel = image_features(window.images) if len(window) else np.zeros((0, len(IMAGE_FEATURES)))
    own = probabilities.argmax(axis=1) if len(window) else np.zeros(0, np.int64)
    captured = window.captured_predictions
    predicted = np.where(captured >= 0, captured, own)
    disagree = int(np.sum((captured >= 0) & (captured != own)))
    if disagree:
        log.warning(
            "The endpoint's answer differs from this model's for %d of %d images: is the "
            "endpoint serving the baseline's model?",
            disagree,
            len(window),
        )
    summary["endpoint_monitor_disagreements"] = disagree
    y_true = None
    if labels:
        ground_truth = read_ground_truth(labels, classes)
        y_true = join_labels(window.event_ids, window.image_index, ground_truth, classes)
        summary["labelled_images"] = int(np.sum(y_true >= 0))
    result = analyze_window(
        baseline,
        pixel=pixel,
        raw=window.raw,
        projected=baseline.project(embeddings) if len(window) else np.zeros((0, 1), np.float32),
        predicted=predicted,
        y_true=y_true,
        unreadable=window.unreadable,
        checks=checks,
        window=summary,
    )
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    _write_json(output_dir / SUMMARY_FILE, result.to_dict())
    write_violations(output_dir / VIOLATIONS_FILE, result)
    _write_json(
        output_dir / WINDOW_STATISTICS_FILE,
        window_statistics(pixel, window.raw, predicted, classes),
    )
    _write_json(output_dir / KFP_METRICS_FILE, kfp_metrics(result.to_dict()))
    write_report(
        output_dir / REPORT_FILE,
        result,
        baseline,
        pixel=pixel,
        raw=window.raw,
        projected=baseline.project(embeddings) if len(window) else None,
    )
    log.info("Monitor: %s; wrote %s to %s", result.headline(), ", ".join(OUTPUT_FILES), output_dir)
    return result


__all__ = [
    "ALL_FEATURES",
    "EmbeddingDrift",
    "FeatureDrift",
    "MonitorResult",
    "PredictionDrift",
    "analyze_window",
    "run_monitor",
]
