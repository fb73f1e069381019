"""Train/val/test split stratified by class and grouped by lesion, and class weights.

All images of one lesion go to the same split (several photographs of a lesion would otherwise
leak between training and test). Within each class, lesions are shuffled with the seed and dealt
to the split whose share of that class's images is furthest below its target, after each split
first gets one lesion when the class has at least three.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from skinlesion.data.isic import IsicRecord
from skinlesion.data.store import SPLITS
from skinlesion.labels import CLASSES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitResult:
    """Records per split, in a deterministic order, and what the splitter had to work around."""

    splits: dict[str, list[IsicRecord]]
    sparse_classes: dict[str, int]  # class -> lesions, for classes with fewer than 3 lesions
    mixed_lesions: list[str]  # lesions whose images carry more than one class

    def class_counts(self) -> dict[str, dict[str, int]]:
        """Images per class in each split, every class listed."""
        result: dict[str, dict[str, int]] = {}
        for split, records in self.splits.items():
            counts = Counter(r.class_name for r in records)
            result[split] = {c: counts.get(c, 0) for c in CLASSES}
        return result


def split_records(
    records: Sequence[IsicRecord],
    *,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 42,
) -> SplitResult:
    """Split records into train/val/test by lesion, stratified by the lesion's class."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must be in [0, 1) "
            "and leave room for training (sum < 1)."
        )
    by_lesion: dict[str, list[IsicRecord]] = defaultdict(list)
    for record in records:
        by_lesion[record.lesion_id].append(record)

    lesions_by_class: dict[int, list[str]] = defaultdict(list)
    mixed: list[str] = []
    for lesion_id in sorted(by_lesion):
        labels = Counter(r.label for r in by_lesion[lesion_id])
        if len(labels) > 1:
            mixed.append(lesion_id)
        # The most common class of the lesion (ties: the lower class index) stratifies it.
        label = min(labels, key=lambda c: (-labels[c], c))
        lesions_by_class[label].append(lesion_id)
    if mixed:
        log.warning(
            "%d lesions have images of more than one class (first: %s); each is kept whole in "
            "one split and stratified by its most common class",
            len(mixed),
            ", ".join(mixed[:10]),
        )

    targets = {
        "train": 1 - val_fraction - test_fraction,
        "val": val_fraction,
        "test": test_fraction,
    }
    # The first lesions of a class go to test, then val, so evaluation sees every class.
    priority = [s for s in ("test", "val") if targets[s] > 0]
    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    sparse: dict[str, int] = {}
    for label in sorted(lesions_by_class):
        lesion_ids = lesions_by_class[label]
        order = rng.permutation(len(lesion_ids))
        shuffled = [lesion_ids[i] for i in order]
        if len(shuffled) < 3:
            sparse[CLASSES[label]] = len(shuffled)
        total = sum(len(by_lesion[lesion]) for lesion in shuffled)
        filled = dict.fromkeys(SPLITS, 0)
        for position, lesion_id in enumerate(shuffled):
            if len(shuffled) >= 3 and position < len(priority):
                split = priority[position]
            elif position == 0:
                split = "train"
            else:
                # The split furthest below its target share of this class's images.
                split = max(SPLITS, key=lambda s: (targets[s] * total - filled[s], s == "train"))
            assignment[lesion_id] = split
            filled[split] += len(by_lesion[lesion_id])
    if sparse:
        log.warning(
            "Classes with fewer than 3 lesions cannot appear in every split: %s",
            ", ".join(f"{name} ({n} lesion{'s' if n != 1 else ''})" for name, n in sparse.items()),
        )

    splits: dict[str, list[IsicRecord]] = {s: [] for s in SPLITS}
    for record in sorted(records, key=lambda r: r.image):
        splits[assignment[record.lesion_id]].append(record)
    return SplitResult(splits=splits, sparse_classes=sparse, mixed_lesions=mixed)


def class_weights(
    labels: Sequence[int] | np.ndarray, num_classes: int = len(CLASSES)
) -> list[float]:
    """Inverse class frequency, normalised to mean 1 over the classes present.

    A class absent from ``labels`` gets weight 0 (it contributes nothing to a weighted loss).
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(float)
    if counts.sum() == 0:
        raise ValueError("Cannot compute class weights from an empty label list.")
    present = counts > 0
    weights = np.zeros(num_classes)
    weights[present] = counts.sum() / counts[present]
    weights[present] /= weights[present].mean()
    return [round(float(w), 6) for w in weights]
