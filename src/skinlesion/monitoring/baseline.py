"""The monitoring baseline: what the model's inputs and outputs looked like when it was validated.

Built from a preprocessed dataset split (the validation split by default: images the model did
not train on, so its embeddings and predictions there are what production should look like) and
the model bundle. A baseline folder holds:

    statistics.json   summaries: per-feature distributions with their PSI bins, the embedding
                      space, the predicted-class distribution and the model's quality (recall
                      per class, balanced accuracy) on the split, plus the model's fingerprint
    constraints.json  the monitor's thresholds (:mod:`skinlesion.monitoring.config`), editable
    reference.npz     the reference samples the tests need: per-image features, PCA-reduced
                      embeddings, PCA mean and components, predicted and true classes

Encoding features (width, height, bits per pixel) need the original files: they are read from
the dataset's source folder when it is reachable (``raw_dir``), else left out of the baseline
(the monitor then tests only the pixel features, plus a range check on the original sizes that
the preprocess job summarised in ``stats.json``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from skinlesion.data.store import STATS, read_manifest, read_split
from skinlesion.monitoring.config import (
    DEFAULT_COMPONENTS,
    DEFAULT_MAX_IMAGES,
    DEFAULT_SPLIT,
    MonitorConfig,
    write_constraints,
)
from skinlesion.monitoring.drift import bin_shares, median_bandwidth, quantile_edges
from skinlesion.monitoring.features import (
    ALL_FEATURES,
    IMAGE_FEATURES,
    RAW_FEATURES,
    image_features,
    raw_features,
)
from skinlesion.monitoring.files import BASELINE_FILES, REFERENCE_FILE, STATISTICS_FILE
from skinlesion.monitoring.quality import quality_metrics

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".JPG", ".JPEG", ".png", ".PNG")
RAW_COVERAGE = 0.9  # encoding features need the original file of at least this share of images
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


class BaselineError(ValueError):
    """A baseline cannot be built or does not match what it is used with."""


@dataclass(frozen=True)
class Baseline:
    """A loaded baseline: summaries plus the reference samples."""

    statistics: dict[str, Any]
    features: np.ndarray  # (n, len(ALL_FEATURES)); raw columns NaN when not available
    embeddings: np.ndarray  # (n, k) PCA-reduced
    pca_mean: np.ndarray  # (D,)
    pca_components: np.ndarray  # (k, D)
    predicted: np.ndarray  # (n,) class index the model predicted
    labels: np.ndarray  # (n,) true class index
    config: MonitorConfig = field(default_factory=MonitorConfig)

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.statistics["classes"])

    @property
    def image_size(self) -> int:
        return int(self.statistics["image_size"])

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The features this baseline can test (encoding features only with the originals)."""
        return tuple(self.statistics["features"])

    @property
    def model_sha256(self) -> str:
        return str(self.statistics["model"]["sha256"])

    def feature_column(self, name: str) -> np.ndarray:
        return self.features[:, ALL_FEATURES.index(name)]

    def project(self, embeddings: np.ndarray) -> np.ndarray:
        """Penultimate-layer features (N, D) into the baseline's PCA space (N, k)."""
        array = np.asarray(embeddings, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] != self.pca_mean.shape[0]:
            raise BaselineError(
                f"Embeddings of shape {array.shape} do not fit the baseline's "
                f"{self.pca_mean.shape[0]} dimensions: a different model?"
            )
        return ((array - self.pca_mean) @ self.pca_components.T).astype(np.float32)

    def save(self, folder: Path) -> Path:
        """Write statistics.json, constraints.json and reference.npz to ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / STATISTICS_FILE).write_text(
            json.dumps(self.statistics, indent=2, allow_nan=False) + "\n"
        )
        write_constraints(folder, self.config)
        np.savez_compressed(
            folder / REFERENCE_FILE,
            features=self.features,
            embeddings=self.embeddings,
            pca_mean=self.pca_mean,
            pca_components=self.pca_components,
            predicted=self.predicted,
            labels=self.labels,
        )
        return folder

    @classmethod
    def load(cls, folder: Path, config: MonitorConfig | None = None) -> Baseline:
        """Read a baseline folder; ``config`` replaces its constraints.json when given."""
        from skinlesion.monitoring.config import read_constraints

        folder = Path(folder)
        missing = [name for name in BASELINE_FILES if not (folder / name).exists()]
        if missing:
            raise FileNotFoundError(
                f"{folder} is not a monitoring baseline (missing {', '.join(missing)}). Build "
                "one with `python -m skinlesion.jobs.baseline` or `skinlesion monitor baseline`."
            )
        statistics = json.loads((folder / STATISTICS_FILE).read_text())
        if statistics.get("format_version") != FORMAT_VERSION:
            raise BaselineError(
                f"{folder}: baseline format {statistics.get('format_version')!r}; this version "
                f"reads format {FORMAT_VERSION}. Rebuild the baseline."
            )
        with np.load(folder / REFERENCE_FILE) as reference:
            arrays = {name: reference[name] for name in reference.files}
        return cls(
            statistics=statistics,
            features=arrays["features"],
            embeddings=arrays["embeddings"],
            pca_mean=arrays["pca_mean"],
            pca_components=arrays["pca_components"],
            predicted=arrays["predicted"],
            labels=arrays["labels"],
            config=config or read_constraints(folder),
        )


# --- building ----------------------------------------------------------------------------------


def model_fingerprint(model_dir: Path) -> str:
    """SHA-256 of the model's weights: the monitor refuses a baseline of another model."""
    from skinlesion.artifacts import WEIGHTS_FILE

    digest = hashlib.sha256()
    with (Path(model_dir) / WEIGHTS_FILE).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pca(embeddings: np.ndarray, components: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Mean, the top ``components`` principal axes (k, D), and the variance share they keep."""
    x = np.asarray(embeddings, dtype=np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    k = max(1, min(components, x.shape[0] - 1, x.shape[1]))
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    variance = singular**2
    kept = float(variance[:k].sum() / variance.sum()) if variance.sum() > 0 else 1.0
    return mean, vt[:k], kept


def feature_summary(values: np.ndarray) -> dict[str, Any]:
    """Mean, spread, quantiles and the PSI bins (reference quantile edges and shares)."""
    values = np.asarray(values, dtype=np.float64)
    edges = quantile_edges(values)
    return {
        "mean": round(float(values.mean()), 6),
        "std": round(float(values.std()), 6),
        "min": round(float(values.min()), 6),
        "max": round(float(values.max()), 6),
        "quantiles": {
            f"{q:g}": round(float(v), 6)
            for q, v in zip(QUANTILES, np.quantile(values, QUANTILES), strict=True)
        },
        "psi_edges": [float(e) for e in edges],
        "psi_shares": [round(float(s), 6) for s in bin_shares(values, edges)],
    }


def find_original(raw_dir: Path, image_id: str) -> Path | None:
    """The original file of ``image_id`` in an ISIC folder (``images/<id>.jpg`` or ``<id>.jpg``)."""
    for folder in (raw_dir / "images", raw_dir):
        for suffix in IMAGE_SUFFIXES:
            path = folder / f"{image_id}{suffix}"
            if path.is_file():
                return path
    return None


def read_raw_features(raw_dir: Path, image_ids: list[str]) -> np.ndarray | None:
    """Encoding features of each image's original file; None when too few are found."""
    out = np.full((len(image_ids), len(RAW_FEATURES)), np.nan)
    found = 0
    for row, image_id in enumerate(image_ids):
        path = find_original(raw_dir, image_id)
        if path is None:
            continue
        try:
            out[row] = raw_features(path.read_bytes())
            found += 1
        except ValueError as error:
            log.debug("No encoding features for %s: %s", path, error)
    if not image_ids or found / len(image_ids) < RAW_COVERAGE:
        log.warning(
            "Only %d of %d original files found under %s: encoding features (size, bits per "
            "pixel) are left out of the baseline",
            found,
            len(image_ids),
            raw_dir,
        )
        return None
    return out


def compute_baseline(
    images: np.ndarray,
    labels: np.ndarray,
    predictor: Any,
    *,
    raw: np.ndarray | None,
    model_info: dict[str, Any],
    dataset_info: dict[str, Any],
    original_size: dict[str, Any] | None = None,
    components: int = DEFAULT_COMPONENTS,
    batch_size: int = 64,
    config: MonitorConfig | None = None,
) -> Baseline:
    """The baseline of ``images`` (uint8 (N, S, S, 3)) with true ``labels`` under ``predictor``.

    ``raw`` holds the encoding features of each image's original file (None: not available).
    """
    config = config or MonitorConfig()
    if len(images) < 10:
        raise BaselineError(f"{len(images)} images are too few for a baseline: need >= 10.")
    classes = tuple(predictor.spec.classes)
    pixel = image_features(images)
    features = np.full((len(images), len(ALL_FEATURES)), np.nan)
    features[:, : len(IMAGE_FEATURES)] = pixel
    if raw is not None:
        features[:, len(IMAGE_FEATURES) :] = raw
    probabilities, embeddings = predictor.predict_with_embeddings(images, batch_size=batch_size)
    predicted = probabilities.argmax(axis=1).astype(np.int64)
    mean, axes, kept = pca(embeddings, components)
    projected = ((embeddings - mean) @ axes.T).astype(np.float32)
    names = IMAGE_FEATURES + (RAW_FEATURES if raw is not None else ())
    summaries = {}
    for name in names:
        column = features[:, ALL_FEATURES.index(name)]
        summaries[name] = feature_summary(column[np.isfinite(column)])
    counts = np.bincount(predicted, minlength=len(classes))
    quality = quality_metrics(labels, predicted, classes)
    statistics: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "image_size": int(images.shape[1]),
        "classes": list(classes),
        "model": model_info,
        "dataset": dataset_info | {"images": len(images)},
        "features": summaries,
        "raw_features": raw is not None,
        "original_size": original_size,
        "embedding": {
            "dimension": int(embeddings.shape[1]),
            "components": int(axes.shape[0]),
            "explained_variance_ratio": round(kept, 6),
            "bandwidth": median_bandwidth(projected, seed=config.seed),
        },
        "predictions": {
            "class_counts": {c: int(n) for c, n in zip(classes, counts, strict=True)},
            "class_shares": {
                c: round(float(n) / len(predicted), 6) for c, n in zip(classes, counts, strict=True)
            },
        },
        "quality": quality.to_dict(),
    }
    log.info(
        "Baseline of %d images: %d features%s, %d-d embeddings -> %d PCA axes (%.1f%% of the "
        "variance), balanced accuracy %.4f",
        len(images),
        len(names),
        "" if raw is not None else " (no encoding features)",
        embeddings.shape[1],
        axes.shape[0],
        100 * kept,
        quality.balanced_accuracy,
    )
    return Baseline(
        statistics=statistics,
        features=features,
        embeddings=projected,
        pca_mean=mean,
        pca_components=axes,
        predicted=predicted,
        labels=np.asarray(labels, dtype=np.int64),
        config=config,
    )


def _raw_dir_from_manifest(manifest: dict[str, Any]) -> Path | None:
    uri = str(manifest.get("source", {}).get("uri") or "")
    if not uri or uri.startswith("s3://"):
        return None
    path = Path(uri.removeprefix("file://"))
    return path if path.is_dir() else None


def build_baseline(
    dataset_dir: Path,
    model_path: Path,
    output_dir: Path,
    *,
    split: str = DEFAULT_SPLIT,
    raw_dir: Path | None = None,
    max_images: int = DEFAULT_MAX_IMAGES,
    components: int = DEFAULT_COMPONENTS,
    batch_size: int = 64,
    device: str = "cpu",
    config: MonitorConfig | None = None,
    model_uri: str = "",
    seed: int = 0,
) -> Baseline:
    """Build the baseline of ``model_path`` on a dataset split and write it to ``output_dir``.

    ``raw_dir``: the ISIC folder of the original files, for encoding features; by default the
    dataset's source folder when it is a local folder that exists. ``max_images`` caps the
    split (a seeded random subset). ``model_uri`` is recorded as where the monitor finds the
    model (default: ``model_path``).
    """
    from skinlesion.artifacts import resolve_model_dir
    from skinlesion.models import Predictor

    if max_images < 10:
        raise BaselineError(f"Invalid max_images {max_images}: must be >= 10.")
    dataset_dir, output_dir = Path(dataset_dir), Path(output_dir)
    manifest = read_manifest(dataset_dir)
    data = read_split(dataset_dir, split, mmap=True)
    rows = np.arange(len(data))
    if len(rows) > max_images:
        rows = np.sort(np.random.default_rng(seed).choice(len(rows), max_images, replace=False))
    images = np.ascontiguousarray(data.images[rows])
    labels = np.asarray(data.labels)[rows]
    image_ids = [data.image_ids[i] for i in rows]
    raw_folder = Path(raw_dir) if raw_dir is not None else _raw_dir_from_manifest(manifest)
    raw = read_raw_features(raw_folder, image_ids) if raw_folder is not None else None
    stats_path = dataset_dir / STATS
    original_size = (
        json.loads(stats_path.read_text()).get("original_size") if stats_path.exists() else None
    )
    with tempfile.TemporaryDirectory(prefix="skinlesion-baseline-") as scratch:
        model_dir = resolve_model_dir(Path(model_path), Path(scratch))
        predictor = Predictor.load(model_dir, device=device, precision="fp32")
        if tuple(manifest.get("classes", predictor.spec.classes)) != tuple(predictor.spec.classes):
            raise BaselineError(
                f"The model's classes {list(predictor.spec.classes)} differ from the dataset's "
                f"{manifest.get('classes')}."
            )
        if int(manifest.get("image_size") or images.shape[1]) != images.shape[1]:
            raise BaselineError("The dataset's manifest and its arrays disagree on image size.")
        spec = predictor.spec
        model_info = {
            "uri": model_uri or str(model_path),
            "architecture": spec.architecture,
            "image_size": spec.image_size,
            "version": spec.version,
            "sha256": model_fingerprint(model_dir),
        }
        dataset_info = {
            "uri": str(dataset_dir),
            "split": split,
            "source_uri": str(manifest.get("source", {}).get("uri") or ""),
            "raw_dir": str(raw_folder) if raw is not None else "",
        }
        baseline = compute_baseline(
            images,
            labels,
            predictor,
            raw=raw,
            model_info=model_info,
            dataset_info=dataset_info,
            original_size=original_size,
            components=components,
            batch_size=batch_size,
            config=config,
        )
    baseline.save(output_dir)
    log.info("Wrote the baseline to %s", output_dir)
    return baseline
