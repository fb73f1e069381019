"""Lesion-grouped cross-validation of a linear head on fixed features, with a bootstrap interval.

Two users: the recipe search (bench/recipe_search.py) scores every trial this way on frozen
ImageNet features, and the evaluate job scores the trained network's own features on the images
it never trained on (validation + test), which puts a cross-validated figure over twice the
test split's images beside the single test-split figure (docs/evaluation.md says how to read
the two). Folds keep every image of a lesion together and are stratified by class; the
interval resamples whole lesions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from skinlesion.metrics import mean_recall, recall_counts, recall_from_counts

log = logging.getLogger(__name__)

FOLDS = 5
# The head of the recipe search's best trials: logit adjustment, weight penalty 1e-2 on
# standardised features, L-BFGS to convergence (docs/benchmarks.md, "Recipe search").
HEAD_PENALTY = 1e-2
HEAD_ITERATIONS = 100
BOOTSTRAP_RESAMPLES = 500


def lesion_folds(
    labels: np.ndarray, lesions: Sequence[str], folds: int = FOLDS, seed: int = 0
) -> np.ndarray:
    """Fold index per image: stratified by class, every image of a lesion in one fold."""
    from sklearn.model_selection import StratifiedGroupKFold

    labels = np.asarray(labels)
    fold = np.empty(len(labels), dtype=int)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(fold)), labels, list(lesions))):
        fold[test] = k
    return fold


def balanced_accuracy(y: np.ndarray, predicted: np.ndarray, num_classes: int) -> float:
    """Mean recall over the classes present in ``y``, from predicted class indices."""
    y, predicted = np.asarray(y), np.asarray(predicted)
    return mean_recall(recall_from_counts(*recall_counts(y, predicted == y, num_classes)))


def lesion_bootstrap(
    y: np.ndarray,
    predicted: np.ndarray,
    lesions: Sequence[str],
    num_classes: int,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """95 % interval of balanced accuracy, resampling whole lesions."""
    _, group = np.unique(np.asarray(lesions), return_inverse=True)
    order = np.argsort(group, kind="stable")
    starts = np.searchsorted(group[order], np.arange(group.max() + 1))
    rows = np.split(order, starts[1:])
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        picked = np.concatenate([rows[g] for g in rng.integers(0, len(rows), len(rows))])
        draws.append(balanced_accuracy(y[picked], predicted[picked], num_classes))
    low, high = np.quantile(draws, [0.025, 0.975])
    return float(low), float(high)


def fit_linear_head(
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    *,
    balancing: str = "logit_adjust",
    penalty: float = HEAD_PENALTY,
    iterations: int = HEAD_ITERATIONS,
    seed: int = 0,
) -> Callable[[np.ndarray], np.ndarray]:
    """A multinomial logistic head fitted full-batch with L-BFGS; returns features -> logits.

    ``balancing``: ``logit_adjust`` (Menon et al. 2021: the loss sees logits + log prior, the
    prediction the logits alone), ``weighted_loss`` (inverse class frequency) or ``none``.
    """
    import torch
    from torch import nn

    if balancing not in ("logit_adjust", "weighted_loss", "none"):
        raise ValueError(
            f"Invalid balancing {balancing!r}. Accepted: logit_adjust, weighted_loss, none."
        )
    torch.manual_seed(seed)
    counts = np.bincount(y, minlength=num_classes).astype(float)
    prior = counts / counts.sum()
    mean, std = x.mean(0), x.std(0) + 1e-6
    xt = torch.from_numpy((x - mean) / std).float()
    yt = torch.from_numpy(np.asarray(y)).long()
    model = nn.Linear(x.shape[1], num_classes)
    weight = None
    offset = torch.zeros(num_classes)
    if balancing == "weighted_loss":
        inverse = 1.0 / np.maximum(counts, 1)
        weight = torch.from_numpy(inverse / inverse.sum() * num_classes).float()
    elif balancing == "logit_adjust":
        offset = torch.from_numpy(np.log(np.maximum(prior, 1e-8))).float()
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    lbfgs = torch.optim.LBFGS(
        model.parameters(), max_iter=iterations, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        lbfgs.zero_grad()
        loss = loss_fn(model(xt) + offset, yt) + penalty * (model.weight**2).sum()
        loss.backward()
        return loss

    lbfgs.step(closure)

    def predict(features: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            logits = model(torch.from_numpy((features - mean) / std).float())
        return logits.numpy()

    return predict


@dataclass(frozen=True)
class CrossValidation:
    """A cross-validated balanced accuracy: the estimate, its interval, and its fold spread."""

    balanced_accuracy: float
    ci95: tuple[float, float]
    fold_sd: float
    melanoma_sensitivity: float
    n_images: int
    n_lesions: int
    folds: int

    def to_dict(self) -> dict[str, float | int | list[float]]:
        return {
            "balanced_accuracy": self.balanced_accuracy,
            "ci95": list(self.ci95),
            "fold_sd": self.fold_sd,
            "melanoma_sensitivity": self.melanoma_sensitivity,
            "n_images": self.n_images,
            "n_lesions": self.n_lesions,
            "folds": self.folds,
        }


def cross_validate(
    features: np.ndarray,
    labels: np.ndarray,
    lesions: Sequence[str],
    classes: Sequence[str],
    *,
    folds: int = FOLDS,
    seed: int = 0,
    melanoma: str = "MEL",
) -> CrossValidation:
    """Out-of-fold predictions of a linear head over lesion-grouped folds, and their scores."""
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = len(classes)
    if len(np.unique(np.asarray(lesions))) < folds:
        raise ValueError(f"Cross-validation needs at least {folds} lesions; got fewer.")
    fold = lesion_folds(labels, lesions, folds, seed)
    predicted = np.empty(len(labels), dtype=np.int64)
    per_fold = []
    for k in range(folds):
        train, test = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        predict = fit_linear_head(features[train], labels[train], num_classes, seed=seed + k)
        predicted[test] = predict(features[test]).argmax(axis=1)
        per_fold.append(balanced_accuracy(labels[test], predicted[test], num_classes))
        log.info("Cross-validation fold %d/%d: balanced accuracy %.3f", k + 1, folds, per_fold[-1])
    mel = list(classes).index(melanoma) if melanoma in classes else -1
    is_mel = labels == mel
    return CrossValidation(
        balanced_accuracy=balanced_accuracy(labels, predicted, num_classes),
        ci95=lesion_bootstrap(labels, predicted, lesions, num_classes, seed=seed),
        fold_sd=float(np.std(per_fold)),
        melanoma_sensitivity=(
            float((predicted[is_mel] == mel).mean()) if is_mel.any() else float("nan")
        ),
        n_images=len(labels),
        n_lesions=len(np.unique(np.asarray(lesions))),
        folds=folds,
    )
