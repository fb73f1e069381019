"""What makes a classifier usable in a clinic: calibration, a referral threshold, OOD refusal.

Fitted once after training on the validation split (and the training embeddings), stored in the
model bundle (``model.json`` plus ``ood.npz``), and applied identically by every runtime:

- **temperature scaling**: logits are divided by one scalar ``T`` fitted by LBFGS on the
  negative log-likelihood of the validation logits (Guo et al. 2017); the argmax is unchanged.
- **operating point**: the malignancy score is the summed probability of the malignant classes
  (MEL, BCC, SCC; AK too when configured); ``refer`` is ``score >= threshold``, the threshold
  chosen on validation for a target malignant sensitivity (or specificity).
- **out-of-distribution score**: the Mahalanobis distance of the penultimate features to the
  nearest class mean under one shared covariance (Lee et al. 2018), thresholded at a percentile
  of the validation scores; a cheap pixel check catches blank and saturated frames first.
- **image quality**: seven pixel statistics per frame (sharpness, fine-to-coarse detail, mean
  CIELAB colour, lightness and chroma spread), their Mahalanobis distance to the training
  images' statistics, thresholded at a percentile of validation. It catches what the embedding
  score misses (blur, colour casts, noise, photographs of other things) and names the statistic
  that is furthest out, so the refusal says why.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

MALIGNANT_CLASSES = ("MEL", "BCC", "SCC")
PREMALIGNANT_CLASS = "AK"  # actinic keratosis: counted as malignant when configured
DEFAULT_TARGET_SENSITIVITY = 0.95
DEFAULT_OOD_PERCENTILE = 99.0
OOD_FILE = "ood.npz"
OOD_METHOD = "mahalanobis"
# Pixel check: a frame whose pixels barely vary, or that is mostly clipped, shows no lesion.
BLANK_STD = 4.0  # grey levels, over all pixels and channels
SATURATED_SHARE = 0.6  # share of pixels with every channel >= 250 or <= 5


class CalibrationError(ValueError):
    """The validation data cannot support the requested fit; the message says why."""


def malignant_classes(classes: Sequence[str], *, include_ak: bool = False) -> tuple[str, ...]:
    """The malignant class codes present in ``classes`` (AK included when ``include_ak``)."""
    wanted = (*MALIGNANT_CLASSES, PREMALIGNANT_CLASS) if include_ak else MALIGNANT_CLASSES
    present = tuple(c for c in classes if c in wanted)
    if not present:
        raise CalibrationError(
            f"None of the malignant classes {list(wanted)} is in the label set {list(classes)}."
        )
    return present


def malignancy_score(
    probabilities: np.ndarray, classes: Sequence[str], malignant: Sequence[str]
) -> np.ndarray:
    """The summed probability of the ``malignant`` classes, per row of ``probabilities``."""
    unknown = [c for c in malignant if c not in classes]
    if unknown:
        raise ValueError(f"Malignant classes {unknown} are not among {list(classes)}.")
    columns = [list(classes).index(c) for c in malignant]
    return np.asarray(probabilities, dtype=np.float64)[:, columns].sum(axis=1)


def is_malignant(
    labels: np.ndarray, classes: Sequence[str], malignant: Sequence[str]
) -> np.ndarray:
    """Boolean per row: the true class is one of ``malignant``."""
    codes = [list(classes).index(c) for c in malignant]
    return np.isin(np.asarray(labels), codes)


def choose_threshold(
    scores: np.ndarray,
    malignant: np.ndarray,
    *,
    target_sensitivity: float | None = None,
    target_specificity: float | None = None,
) -> float:
    """The referral threshold (refer when ``score >= threshold``) that meets one target.

    For a sensitivity target, the highest threshold whose sensitivity is at least the target
    (the fewest referrals that catch that share of malignant lesions); for a specificity target,
    the lowest threshold whose specificity is at least the target.
    """
    if (target_sensitivity is None) == (target_specificity is None):
        raise ValueError("Give exactly one of target_sensitivity and target_specificity.")
    target = target_sensitivity if target_sensitivity is not None else target_specificity
    assert target is not None
    if not 0.0 < target <= 1.0:
        raise ValueError(f"Invalid target {target}: accepted 0 < target <= 1.")
    scores, malignant = np.asarray(scores, dtype=np.float64), np.asarray(malignant, dtype=bool)
    if target_sensitivity is not None:
        positives = np.sort(scores[malignant])[::-1]
        if len(positives) == 0:
            raise CalibrationError("No malignant image in the validation split: no threshold.")
        needed = math.ceil(target_sensitivity * len(positives) - 1e-9)
        return float(positives[max(needed, 1) - 1])
    negatives = np.sort(scores[~malignant])
    if len(negatives) == 0:
        raise CalibrationError("No benign image in the validation split: no threshold.")
    needed = math.ceil(target * len(negatives) - 1e-9)
    if needed == 0:
        return float(negatives[0])
    # Just above the needed-th lowest benign score: that many benign images stay below it.
    return float(np.nextafter(negatives[needed - 1], np.inf))


def sensitivity_specificity(
    scores: np.ndarray, malignant: np.ndarray, threshold: float
) -> tuple[float, float, float]:
    """(sensitivity, specificity, share referred) of ``refer = score >= threshold``; NaN if undefined."""
    refer = np.asarray(scores) >= threshold
    malignant = np.asarray(malignant, dtype=bool)
    sensitivity = float(refer[malignant].mean()) if malignant.any() else math.nan
    specificity = float((~refer[~malignant]).mean()) if (~malignant).any() else math.nan
    return sensitivity, specificity, float(refer.mean()) if len(refer) else math.nan


@dataclass(frozen=True)
class OperatingPoint:
    """The referral rule stored in ``model.json``: refer when the malignancy score >= threshold."""

    malignant_classes: tuple[str, ...]
    threshold: float
    target: str  # "sensitivity" or "specificity"
    target_value: float
    val_sensitivity: float
    val_specificity: float
    val_referred: float
    n_val: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN becomes None)."""
        out = asdict(self)
        out["malignant_classes"] = list(self.malignant_classes)
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in out.items()
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> OperatingPoint:
        """Read what ``to_dict`` wrote."""
        values: dict[str, Any] = {k: (math.nan if v is None else v) for k, v in raw.items()}
        values["malignant_classes"] = tuple(raw["malignant_classes"])
        return cls(**values)


def fit_operating_point(
    probabilities: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    *,
    target_sensitivity: float | None = DEFAULT_TARGET_SENSITIVITY,
    target_specificity: float | None = None,
    include_ak: bool = False,
) -> OperatingPoint:
    """Choose the referral threshold on validation ``probabilities`` (calibrated) for one target."""
    if target_specificity is not None:
        target_sensitivity = None
    malignant = malignant_classes(classes, include_ak=include_ak)
    scores = malignancy_score(probabilities, classes, malignant)
    truth = is_malignant(labels, classes, malignant)
    threshold = choose_threshold(
        scores, truth, target_sensitivity=target_sensitivity, target_specificity=target_specificity
    )
    sensitivity, specificity, referred = sensitivity_specificity(scores, truth, threshold)
    return OperatingPoint(
        malignant_classes=malignant,
        threshold=threshold,
        target="sensitivity" if target_sensitivity is not None else "specificity",
        target_value=float(target_sensitivity or target_specificity or 0.0),
        val_sensitivity=sensitivity,
        val_specificity=specificity,
        val_referred=referred,
        n_val=len(scores),
    )


def fit_temperature(logits: np.ndarray, labels: np.ndarray, max_iter: int = 200) -> float:
    """The temperature T > 0 minimising the NLL of ``softmax(logits / T)`` (LBFGS on log T)."""
    import torch

    logits_t = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if len(labels_t) == 0:
        raise CalibrationError("No validation images: cannot fit a temperature.")
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits_t / log_t.exp(), labels_t)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.exp().item())
    if not math.isfinite(temperature) or temperature <= 0:
        raise CalibrationError(f"Temperature fit diverged ({temperature}).")
    # A separable validation set drives T towards 0 (ever sharper); bound it to a sane range.
    return float(min(max(temperature, 0.05), 20.0))


QUALITY_STATISTICS = (
    "sharpness",  # log variance of the luminance Laplacian: low when blurred, high when noisy
    "fine-to-coarse detail",  # that at full minus half resolution: noise raises it, blur lowers it
    "mean lightness",  # CIELAB L*
    "mean red-green",  # CIELAB a*: colour casts move it
    "mean yellow-blue",  # CIELAB b*
    "lightness spread",  # log standard deviation of L*
    "chroma spread",  # log standard deviation of the chroma sqrt(a*^2 + b*^2)
)
DEFAULT_QUALITY_PERCENTILE = 99.5


def _laplacian_variance(grey: np.ndarray) -> float:
    lap = grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1] - 4 * grey[1:-1, 1:-1]
    return float(lap.var())


def image_statistics(image: np.ndarray) -> np.ndarray:
    """The QUALITY_STATISTICS of one uint8 (H, W, 3) frame, float64 (7,)."""
    pixels = np.asarray(image, dtype=np.float64)
    grey = pixels @ np.array([0.299, 0.587, 0.114])
    fine = math.log(_laplacian_variance(grey) + 1e-3)
    rows, cols = grey.shape[0] // 2 * 2, grey.shape[1] // 2 * 2
    half = grey[:rows, :cols].reshape(rows // 2, 2, cols // 2, 2).mean(axis=(1, 3))
    coarse = math.log(_laplacian_variance(half) + 1e-3)
    lab = rgb_to_lab(np.asarray(image)[::4, ::4]).reshape(-1, 3)  # colour needs no full res
    chroma = np.hypot(lab[:, 1], lab[:, 2])
    return np.array(
        [
            fine,
            fine - coarse,
            lab[:, 0].mean(),
            lab[:, 1].mean(),
            lab[:, 2].mean(),
            math.log(lab[:, 0].std() + 1.0),
            math.log(chroma.std() + 1.0),
        ]
    )


@dataclass(frozen=True)
class QualityStats:
    """The training images' pixel statistics (mean, inverse covariance) and the threshold."""

    mean: np.ndarray  # (7,) float64
    precision: np.ndarray  # (7, 7) float64: inverse (shrunk) covariance
    threshold: float
    percentile: float

    @functools.cached_property
    def spread(self) -> np.ndarray:
        """Each statistic's standard deviation in the training frames (for the reason's z)."""
        spread: np.ndarray = np.sqrt(np.diag(np.linalg.inv(self.precision)))
        return spread

    def distances(self, statistics: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each row of (N, 7) ``statistics`` to the training mean."""
        centred = np.atleast_2d(statistics) - self.mean
        return np.sqrt(np.einsum("ij,jk,ik->i", centred, self.precision, centred))

    def check(self, image: np.ndarray) -> str | None:
        """Why ``image`` is unlike the training images (naming the furthest statistic), or None."""
        stats = image_statistics(image)
        distance = float(self.distances(stats)[0])
        if distance <= self.threshold:
            return None
        z = (stats - self.mean) / self.spread
        worst = int(np.argmax(np.abs(z)))
        side = "above" if z[worst] > 0 else "below"
        return (
            f"unlike the training images: pixel statistics out of range (distance "
            f"{distance:.1f} above the threshold {self.threshold:.1f}); furthest out: "
            f"{QUALITY_STATISTICS[worst]}, {abs(z[worst]):.1f} standard deviations {side} the "
            "training images"
        )


def fit_quality(
    train_images: np.ndarray,
    val_images: np.ndarray,
    *,
    percentile: float = DEFAULT_QUALITY_PERCENTILE,
) -> QualityStats:
    """Pixel statistics of the training frames; the threshold is a percentile of validation's."""
    from sklearn.covariance import LedoitWolf

    if len(train_images) < len(QUALITY_STATISTICS) + 1 or len(val_images) == 0:
        raise CalibrationError(
            f"Image-quality fit needs > {len(QUALITY_STATISTICS)} training and >= 1 validation "
            f"images (got {len(train_images)} and {len(val_images)})."
        )
    train = np.stack([image_statistics(image) for image in train_images])
    mean = train.mean(axis=0)
    precision = np.linalg.inv(LedoitWolf().fit(train - mean).covariance_)
    stats = QualityStats(mean, precision, 0.0, percentile)
    val = np.stack([image_statistics(image) for image in val_images])
    threshold = float(np.percentile(stats.distances(val), percentile))
    return QualityStats(mean, precision, threshold, percentile)


@dataclass(frozen=True)
class OodStats:
    """Class means and the whitening matrix of the shared covariance, plus the threshold."""

    means: np.ndarray  # (K, D) float32: one row per class seen in training
    whitening: np.ndarray  # (D, D) float32: W with W W^T = inverse shared covariance
    threshold: float
    percentile: float
    quality: QualityStats | None = None  # the pixel-statistics check (bundles before it: None)

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each row of ``features`` to the nearest class mean."""
        z = np.asarray(features, dtype=np.float64) @ self.whitening.astype(np.float64)
        centres = self.means.astype(np.float64) @ self.whitening.astype(np.float64)
        squared = (z**2).sum(axis=1, keepdims=True) - 2.0 * z @ centres.T + (centres**2).sum(axis=1)
        return np.sqrt(np.clip(squared.min(axis=1), 0.0, None))

    def save(self, path: Path) -> None:
        """Write the arrays to ``path`` (npz); the thresholds live in model.json."""
        arrays: dict[str, Any] = {
            "means": self.means.astype(np.float32),
            "whitening": self.whitening.astype(np.float32),
        }
        if self.quality is not None:
            arrays["quality_mean"] = self.quality.mean
            arrays["quality_precision"] = self.quality.precision
        np.savez(path, **arrays)

    @classmethod
    def load(
        cls,
        path: Path,
        threshold: float,
        percentile: float,
        quality_threshold: float | None = None,
        quality_percentile: float = DEFAULT_QUALITY_PERCENTILE,
    ) -> OodStats:
        """Read what ``save`` wrote (the quality check only when its threshold is given)."""
        with np.load(path) as data:
            quality = None
            if quality_threshold is not None:
                if "quality_mean" not in data:
                    raise ValueError(
                        f"{path} has no image-quality statistics, but model.json names a "
                        "quality threshold."
                    )
                quality = QualityStats(
                    data["quality_mean"],
                    data["quality_precision"],
                    float(quality_threshold),
                    float(quality_percentile),
                )
            return cls(
                data["means"], data["whitening"], float(threshold), float(percentile), quality
            )

    def module(self) -> torch.nn.Module:
        """The score as a torch module (traceable, ONNX-exportable): features -> (N,) distances."""
        import torch

        means, whitening = self.means, self.whitening

        class MahalanobisScore(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                w = torch.from_numpy(np.asarray(whitening, dtype=np.float32))
                centres = torch.from_numpy(np.asarray(means, dtype=np.float32)) @ w
                self.register_buffer("whitening", w)
                self.register_buffer("centres", centres)
                self.register_buffer("centre_norms", (centres**2).sum(dim=1))

            whitening: torch.Tensor
            centres: torch.Tensor
            centre_norms: torch.Tensor

            def forward(self, features: torch.Tensor) -> torch.Tensor:
                z = features.float() @ self.whitening
                squared = (z * z).sum(dim=1, keepdim=True) - 2.0 * z @ self.centres.T
                squared = squared + self.centre_norms
                return torch.sqrt(torch.clamp(squared.min(dim=1).values, min=0.0))

        return MahalanobisScore().eval()


def fit_ood(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    val_features: np.ndarray,
    *,
    percentile: float = DEFAULT_OOD_PERCENTILE,
) -> OodStats:
    """Class means and a shrunk shared covariance from training features; threshold on val."""
    from sklearn.covariance import LedoitWolf

    features = np.asarray(train_features, dtype=np.float64)
    labels = np.asarray(train_labels)
    if len(features) < 2 or len(val_features) == 0:
        raise CalibrationError(
            f"OOD fit needs >= 2 training and >= 1 validation embeddings "
            f"(got {len(features)} and {len(val_features)})."
        )
    present = np.unique(labels)
    means = np.stack([features[labels == c].mean(axis=0) for c in present])
    centred = features - means[np.searchsorted(present, labels)]
    # Ledoit-Wolf shrinkage: the feature dimension (1280+) often exceeds the image count.
    covariance = LedoitWolf(assume_centered=True).fit(centred).covariance_
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    eigenvalues = np.clip(eigenvalues, eigenvalues.max() * 1e-8, None)
    whitening = eigenvectors / np.sqrt(eigenvalues)
    stats = OodStats(means.astype(np.float32), whitening.astype(np.float32), 0.0, percentile)
    threshold = float(np.percentile(stats.scores(val_features), percentile))
    return OodStats(stats.means, stats.whitening, threshold, percentile)


def image_check(image: np.ndarray, quality: QualityStats | None = None) -> str | None:
    """Why a uint8 (H, W, 3) frame cannot be assessed (blank, saturated, unlike training), or None.

    ``quality``: the model's fitted pixel statistics (``OodStats.quality``); None skips that part.
    """
    array = np.asarray(image)
    std = float(array.std())
    if std < BLANK_STD:
        return f"blank frame: pixel standard deviation {std:.1f} < {BLANK_STD:g}"
    clipped = float(((array >= 250).all(axis=-1) | (array <= 5).all(axis=-1)).mean())
    if clipped > SATURATED_SHARE:
        return f"saturated frame: {clipped:.0%} of pixels clipped (> {SATURATED_SHARE:.0%})"
    if quality is not None:
        return quality.check(array)
    return None


def refusal_reason(problem: str | None, ood_score: float, threshold: float | None) -> str | None:
    """Why an image is not assessed: its pixel check's ``problem`` first, else an OOD score above
    ``threshold`` (None: the model has no OOD fit); None when it is assessed."""
    if problem is not None:
        return problem
    if threshold is not None and ood_score > threshold:
        return (
            f"unlike the training images: out-of-distribution score {ood_score:.1f} above the "
            f"threshold {threshold:.1f}"
        )
    return None


# Skin-tone bands of the individual typology angle (Chardon et al. 1991; Del Bino et al. 2013).
SKIN_TONE_BANDS: tuple[tuple[str, float], ...] = (
    ("very light", 55.0),  # ITA > 55
    ("light", 41.0),  # 41 < ITA <= 55
    ("intermediate", 28.0),
    ("tan", 10.0),
    ("brown", -30.0),
    ("dark", -math.inf),  # ITA <= -30
)
RING_SHARE = 0.12  # the outer band of the frame, as a share of its side: skin, not lesion
VIGNETTE_L = 12.0  # L* below this is the dermatoscope's black vignette, not skin


def rgb_to_lab(image: np.ndarray) -> np.ndarray:
    """sRGB uint8 (..., 3) -> CIELAB (D65 white), float64 (..., 3)."""
    rgb = np.asarray(image, dtype=np.float64) / 255.0
    linear = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    matrix = np.array(
        [[0.4124564, 0.3575761, 0.1804375],
         [0.2126729, 0.7151522, 0.0721750],
         [0.0193339, 0.1191920, 0.9503041]]
    )  # fmt: skip
    xyz = linear @ matrix.T / np.array([0.95047, 1.0, 1.08883])
    delta = 6.0 / 29.0
    f = np.where(xyz > delta**3, np.cbrt(xyz), xyz / (3 * delta**2) + 4.0 / 29.0)
    lightness = 116.0 * f[..., 1] - 16.0
    a = 500.0 * (f[..., 0] - f[..., 1])
    b = 200.0 * (f[..., 1] - f[..., 2])
    return np.stack([lightness, a, b], axis=-1)


def ita_degrees(image: np.ndarray) -> float:
    """Individual typology angle of the skin around the lesion: the frame's outer ring.

    ``arctan((L* - 50) / b*) * 180 / pi`` on the medians of L* and b* over the ring's pixels,
    the vignette's black pixels left out. NaN when the ring holds no usable pixel.
    """
    lab = rgb_to_lab(np.asarray(image)[..., :3])
    height, width = lab.shape[:2]
    ring = max(1, round(RING_SHARE * min(height, width)))
    mask = np.zeros((height, width), dtype=bool)
    mask[:ring], mask[-ring:], mask[:, :ring], mask[:, -ring:] = True, True, True, True
    pixels = lab[mask]
    pixels = pixels[pixels[:, 0] >= VIGNETTE_L]
    if len(pixels) == 0:
        return math.nan
    lightness, b = float(np.median(pixels[:, 0])), float(np.median(pixels[:, 2]))
    return (
        math.degrees(math.atan2(lightness - 50.0, b))
        if b > 0
        else (90.0 if lightness >= 50 else -90.0)
    )


def skin_tone_band(ita: float) -> str:
    """The band name of an ITA in degrees ("unknown" for NaN)."""
    if not math.isfinite(ita):
        return "unknown"
    for name, lower in SKIN_TONE_BANDS:
        if ita > lower:
            return name
    return SKIN_TONE_BANDS[-1][0]
