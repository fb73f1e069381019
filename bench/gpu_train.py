"""GPU training images/s with AMP, on synthetic tensors and through the trainer's real loader.

For each architecture: a plain fp32 eager step (the baseline of ``bench.train_step``), our
trainer's step with AMP on a batch already on the GPU (synthetic: the GPU's own ceiling), and
``train_one_epoch`` fed by the trainer's loader over memory-mapped uint8 arrays written as the
preprocess job writes them (``SplitDataset`` + ``EpochBatchSampler`` + ``make_loader`` with
pinned memory and workers). If the loader keeps up, the last rate matches the synthetic one.

Then, on a GPU (or wherever ``--recipe-epochs`` asks for it), one epoch of a real training
recipe through the trainer itself: ``TrainConfig`` from the ``pipelines.training`` section of
``--recipe`` (default ``pipelines/params/prod.yaml``, the GPU variant), ``build`` +
``train_and_validate`` + ``end_epoch`` (checkpoint included) as ``fit`` runs them, over a
synthetic dataset folder in the preprocess format (train and val splits, a patient metadata
table per split, a manifest). Reported: the epoch's wall seconds, train images/s, validation
seconds, peak GPU memory, and the recipe's full epoch count extrapolated, at the bench's row
count and at ISIC 2019's. ``--pretrained none`` times random initial weights (no download; the
step time is the same). ``bench/gpu.sh`` runs this; ``--out`` also copies the results there. Run::

    python -m bench.gpu_train --architectures efficientnet_b0 resnet50 --batch-size 256
    python -m bench.gpu_train --architectures --recipe pipelines/params/prod.yaml --pretrained none
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from bench.loader import write_arrays
from bench.results import REPO_ROOT, RESULTS_DIR, median, write_result
from bench.train_step import NUM_CLASSES, BaselineStep, TrainerStep, sync
from skinlesion import patient
from skinlesion.config import PRETRAINED, PreprocessConfig, TrainConfig
from skinlesion.data.split import class_weights
from skinlesion.data.store import (
    MANIFEST,
    SplitArrays,
    read_split,
    write_json,
    write_split,
    write_split_metadata,
)
from skinlesion.labels import CLASSES
from skinlesion.models import build_model, normalization, normalize, to_unit_float
from skinlesion.training.loader import EpochBatchSampler, SplitDataset, make_loader
from skinlesion.training.loop import (
    DistributedContext,
    TrainState,
    build,
    end_epoch,
    train_and_validate,
)

log = logging.getLogger("bench.gpu_train")
NAME = "gpu_train"
DEFAULT_RECIPE = REPO_ROOT / "pipelines" / "params" / "prod.yaml"
RECIPE_PIPELINE = "training"
# ISIC 2019's training images (docs/data.md); the preprocess job's default fractions split them,
# so the recipe's full run is also extrapolated to the real split sizes, not only the bench's.
ISIC_2019_IMAGES = 25_331


def _timed_rate(fn: Any, batch: int, steps: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - started)
    return batch / median(times)


def synthetic_rates(
    architecture: str, size: int, batch: int, steps: int, warmup: int, device: torch.device
) -> tuple[float, float, str]:
    """(fp32 eager images/s, our AMP step images/s, our autocast dtype) on on-device batches."""
    torch.manual_seed(0)
    images = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, device=device)
    labels = torch.randint(0, NUM_CLASSES, (batch,), device=device)
    mean, std = normalization(architecture)
    ready = normalize(to_unit_float(images), mean, std).contiguous()
    baseline = BaselineStep(
        build_model(architecture, NUM_CLASSES, "none", size).to(device), ready, labels
    )
    fp32 = _timed_rate(baseline, batch, steps, warmup, device)
    del baseline
    config = TrainConfig(architecture=architecture, image_size=size, batch_size=batch)
    model = build_model(architecture, NUM_CLASSES, "none", size).to(device)
    ours = TrainerStep(
        model, config, device, total_steps=steps + warmup + 1, batch=(images, labels)
    )
    amp = _timed_rate(ours, batch, steps, warmup, device)
    return fp32, amp, str(ours.dtype)


def loader_rates(
    architecture: str,
    size: int,
    batch: int,
    folder: Path,
    workers: int,
    epochs: int,
    device: torch.device,
) -> tuple[float, float]:
    """(images/s of train_one_epoch fed by the real loader, images/s of the loader alone)."""
    torch.manual_seed(0)
    split = read_split(folder, "train")
    sampler = EpochBatchSampler(len(split), batch, seed=0)
    loader = make_loader(
        SplitDataset(split.images, split.labels),
        sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    config = TrainConfig(architecture=architecture, image_size=size, batch_size=batch)
    model = build_model(architecture, NUM_CLASSES, "none", size).to(device)
    step = TrainerStep(model, config, device, total_steps=(epochs + 1) * len(sampler) + 1)

    def epoch(number: int) -> dict[str, float]:
        sampler.set_epoch(number)
        return step.run(loader)

    epoch(0)  # warm-up: cudnn autotuning, worker start, page cache
    stats = [epoch(n) for n in range(1, epochs + 1)]
    trained = sum(s["images"] for s in stats) / sum(s["seconds"] for s in stats)

    sampler.set_epoch(epochs + 1)
    seen = 0
    started = time.perf_counter()
    for images, _labels, _metadata in loader:
        images.to(device, non_blocking=True)
        seen += len(images)
    sync(device)
    return trained, seen / (time.perf_counter() - started)


def step_rate_rows(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    """Per architecture: fp32 eager, AMP synthetic and AMP through the real loader, images/s."""
    size, batch = args.image_size, args.batch_size
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        write_arrays(folder, args.images, size)
        log.info("wrote %d uint8 images in %.1f s", args.images, time.perf_counter() - started)
        for architecture in args.architectures:
            log.info("%s: synthetic steps", architecture)
            fp32, amp, dtype = synthetic_rates(
                architecture, size, batch, args.steps, args.warmup, device
            )
            log.info(
                "%s: fp32 %.0f, AMP %.0f images/s; now through the loader", architecture, fp32, amp
            )
            through, loader_only = loader_rates(
                architecture, size, batch, folder, args.workers, args.epochs, device
            )
            log.info(
                "%s: through the loader %.0f, loader alone %.0f images/s",
                architecture,
                through,
                loader_only,
            )
            rows.append(
                {
                    "part": "step_rates",
                    "architecture": architecture,
                    "image_size": size,
                    "batch": batch,
                    "fp32_eager_images_per_s": fp32,
                    "amp_synthetic_images_per_s": amp,
                    "amp_speedup": amp / fp32,
                    "amp_real_loader_images_per_s": through,
                    "loader_vs_synthetic": through / amp,
                    "loader_alone_images_per_s": loader_only,
                    "autocast": dtype,
                }
            )
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows


class RecipeError(ValueError):
    """A recipe file or override the bench cannot use; the message says what is accepted."""


def train_config_names() -> list[str]:
    """The settings ``TrainConfig.from_mapping`` accepts (every field but ``extra``)."""
    return [f.name for f in dataclasses.fields(TrainConfig) if f.name != "extra"]


def recipe_settings(path: Path, pipeline: str = RECIPE_PIPELINE) -> dict[str, Any]:
    """The TrainConfig settings of ``pipelines.<pipeline>`` in a params file; other keys ignored.

    Plain YAML rather than ``skinlesion.kubeflow.params``: that module needs kfp, which the GPU
    machine does not have, and its resolver would demand the ``${tf:...}`` outputs of keys
    (data_uri, endpoint_name, ...) that a training step never reads.
    """
    if not path.is_file():
        raise RecipeError(f"No recipe file {path}. Expected a pipelines/params/<env>.yaml file.")
    raw = yaml.safe_load(path.read_text()) or {}
    section = raw.get("pipelines", {}).get(pipeline) if isinstance(raw, Mapping) else None
    if not isinstance(section, Mapping):
        raise RecipeError(
            f"{path} has no pipelines.{pipeline} mapping: the recipe is read from there."
        )
    names = set(train_config_names())
    settings = {key: value for key, value in section.items() if key in names}
    unresolved = sorted(k for k, v in settings.items() if isinstance(v, str) and "${" in v)
    if unresolved:
        raise RecipeError(
            f"{path}: pipelines.{pipeline} settings {unresolved} hold ${{...}} placeholders, "
            "which the bench does not resolve. Give them with --recipe-set NAME=VALUE."
        )
    return settings


def parse_overrides(assignments: Sequence[str]) -> dict[str, str]:
    """``["image_size=32", "num_workers=8"]`` -> ``{"image_size": "32", "num_workers": "8"}``."""
    overrides: dict[str, str] = {}
    for item in assignments:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise RecipeError(
                f"Invalid --recipe-set {item!r}: expected NAME=VALUE with NAME one of "
                f"{', '.join(train_config_names())}."
            )
        overrides[name.strip()] = value.strip()
    return overrides


def recipe_config(
    path: Path,
    *,
    device: torch.device,
    pretrained: str | None = None,
    overrides: Mapping[str, str] | None = None,
) -> tuple[TrainConfig, str]:
    """The recipe's TrainConfig for ``device`` (with the overrides), and the recipe's pretrained."""
    settings: dict[str, Any] = recipe_settings(path)
    settings.update(overrides or {})
    recipe_pretrained = str(settings.get("pretrained", TrainConfig.pretrained))
    if pretrained is not None:
        settings["pretrained"] = pretrained
    settings["device"] = "cuda" if device.type == "cuda" else "cpu"
    config = TrainConfig.from_mapping(settings, source=f"{path} pipelines.{RECIPE_PIPELINE}")
    return config, recipe_pretrained


def write_recipe_dataset(folder: Path, *, train: int, val: int, size: int, seed: int = 0) -> Path:
    """A dataset folder as the preprocess job writes it, random pixels: train and val splits,
    a patient metadata table per split (ages, SEXES, SITES, a share unknown), the manifest."""
    rng = np.random.default_rng(seed)
    weights: list[float] = []
    splits: dict[str, dict[str, int]] = {}
    for split, count in (("train", train), ("val", val)):
        # Every class present even in a tiny split, in shuffled order.
        labels = rng.permutation(np.arange(count) % len(CLASSES)).astype(np.int64)
        ids = [f"ISIC_bench_{split}_{i:07d}" for i in range(count)]
        images = rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
        write_split(folder, split, SplitArrays(images, labels, ids, ids))
        del images
        ages = rng.integers(1, 18, count) * 5  # ISIC's age_approx is in steps of 5
        sexes = rng.choice(patient.SEXES, count)
        sites = rng.choice(patient.SITES, count)
        unknown = rng.random((count, 3)) < 0.05  # real tables have gaps; they read as unknown
        rows = {
            image: {
                "age_approx": "" if unknown[i, 0] else f"{ages[i]:.1f}",
                "sex": "" if unknown[i, 1] else str(sexes[i]),
                "anatom_site": "" if unknown[i, 2] else str(sites[i]),
            }
            for i, image in enumerate(ids)
        }
        write_split_metadata(folder, split, ids, rows)
        splits[split] = {"count": count, "lesions": count}
        if split == "train":
            weights = class_weights(labels)
    write_json(
        folder / MANIFEST,
        {
            "classes": list(CLASSES),
            "image_size": size,
            "splits": splits,
            "class_weights": weights,
            "source": {"uri": "bench.gpu_train (random pixels)", "generated": True},
        },
    )
    return folder


def isic_2019_rows() -> tuple[int, int]:
    """(train, val) rows of ISIC 2019 under the preprocess job's default split fractions."""
    defaults = PreprocessConfig()
    val = round(ISIC_2019_IMAGES * defaults.val_fraction)
    test = round(ISIC_2019_IMAGES * defaults.test_fraction)
    return ISIC_2019_IMAGES - val - test, val


def recipe_epoch_rows(
    config: TrainConfig,
    folder: Path,
    *,
    epochs: int,
    device: torch.device,
    recipe: str,
    recipe_pretrained: str,
) -> list[dict[str, Any]]:
    """Time ``epochs`` epochs of ``config`` as ``fit`` runs them: one row per epoch."""
    if not 1 <= epochs <= config.epochs:
        raise RecipeError(
            f"Invalid --recipe-epochs {epochs}: must be between 1 and the recipe's epochs "
            f"({config.epochs})."
        )
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    run = build(config, folder, DistributedContext(), device)
    build_s = time.perf_counter() - started
    train_rows = len(run.train_loader.dataset)  # type: ignore[arg-type]
    val_rows = len(run.val_loader.dataset)  # type: ignore[arg-type]
    real_train, real_val = isic_2019_rows()
    state = TrainState()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-gpu-checkpoint-") as checkpoints:
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            record = train_and_validate(run, epoch)
            sync(device)
            validated = time.perf_counter()
            # Best-weights copy, early-stopping verdict and checkpoint, as the train job does.
            end_epoch(run, state, record, Path(checkpoints))
            sync(device)
            ended = time.perf_counter()
            train_s = float(record["seconds"])
            val_s = validated - started - train_s
            end_s = ended - validated
            epoch_s = ended - started
            rows.append(
                {
                    "part": "recipe_epoch",
                    "recipe": recipe,
                    "architecture": config.architecture,
                    "image_size": config.image_size,
                    "batch": config.batch_size,
                    "pretrained": config.pretrained,
                    "recipe_pretrained": recipe_pretrained,
                    "freeze_stages": config.freeze_stages,
                    "balancing": config.balancing,
                    "metadata": config.metadata,
                    "num_workers": config.num_workers,
                    "autocast": str(run.dtype),
                    "train_rows": train_rows,
                    "val_rows": val_rows,
                    "epoch": epoch,
                    "build_s": build_s,
                    "epoch_s": epoch_s,
                    "train_s": train_s,
                    "train_images_per_s": float(record["images_per_sec"]),
                    "val_s": val_s,
                    "end_epoch_s": end_s,
                    "peak_gpu_memory_gib": (
                        torch.cuda.max_memory_allocated(device) / 2**30
                        if device.type == "cuda"
                        else None
                    ),
                    "recipe_epochs": config.epochs,
                    "full_run_s": build_s + config.epochs * epoch_s,
                    # Per image, from this epoch's rates, at ISIC 2019's split sizes.
                    "isic2019_full_run_s": build_s
                    + config.epochs
                    * (
                        real_train / float(record["images_per_sec"])
                        + real_val * val_s / max(val_rows, 1)
                        + end_s
                    ),
                }
            )
            log.info(
                "recipe epoch %d: %.1f s (train %.1f s at %.0f images/s, validation %.1f s, "
                "end of epoch %.1f s)",
                epoch,
                epoch_s,
                train_s,
                record["images_per_sec"],
                val_s,
                end_s,
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    """Measure, print the table, write bench/results/gpu_train.{md,jsonl} (and copy to --out)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--architectures",
        nargs="*",
        default=["efficientnet_b0", "resnet50"],
        help="synthetic and loader rates of these (none: only the recipe epoch)",
    )
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30, help="timed synthetic steps")
    parser.add_argument("--warmup", type=int, default=10, help="untimed synthetic steps")
    parser.add_argument(
        "--images", type=int, default=8192, help="train rows of the memmapped splits"
    )
    parser.add_argument("--val-images", type=int, default=1024, help="val rows of the recipe's")
    parser.add_argument("--epochs", type=int, default=2, help="timed loader epochs")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--recipe",
        type=Path,
        default=DEFAULT_RECIPE,
        help="params file whose pipelines.training section is the recipe (prod.yaml)",
    )
    parser.add_argument(
        "--recipe-epochs",
        type=int,
        default=None,
        help="recipe epochs to time through the trainer (default: 1 on a GPU, 0 on a CPU)",
    )
    parser.add_argument(
        "--pretrained",
        choices=PRETRAINED,
        default=None,
        help="initial weights of the recipe epoch (default: the recipe's; none needs no "
        "download and gives the same step time)",
    )
    parser.add_argument(
        "--recipe-set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one TrainConfig setting of the recipe, e.g. image_size=32 (repeatable)",
    )
    parser.add_argument("--out", type=Path, help="also copy the results here")
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS_DIR, help="where the results go"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    device = torch.device(args.device)
    recipe_epochs = args.recipe_epochs
    if recipe_epochs is None:
        recipe_epochs = 1 if device.type == "cuda" else 0
    if recipe_epochs < 0:
        parser.error(f"--recipe-epochs must be >= 0, got {recipe_epochs}")
    for name in ("images", "val_images"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not args.architectures and not recipe_epochs:
        parser.error("nothing to measure: name --architectures or ask for --recipe-epochs 1")
    config = recipe_pretrained = None
    if recipe_epochs:
        # Checked before minutes of measuring, so that a bad recipe fails at once.
        try:
            config, recipe_pretrained = recipe_config(
                args.recipe,
                device=device,
                pretrained=args.pretrained,
                overrides=parse_overrides(args.recipe_set),
            )
        except ValueError as error:  # RecipeError, ConfigError: the message says what is wrong
            parser.error(str(error))
        if recipe_epochs > config.epochs:
            parser.error(
                f"--recipe-epochs {recipe_epochs} is more than the recipe's epochs "
                f"({config.epochs})"
            )
    elif device.type != "cuda":
        log.info("No recipe epoch on %s (pass --recipe-epochs 1 to time one anyway)", device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as fit() does on GPUs
    rows = step_rate_rows(args, device) if args.architectures else []
    notes = []
    if args.architectures:
        notes.append(
            "loader_vs_synthetic near 1.0 means the loader does not starve the GPU. "
            "Synthetic: the uint8 batch already on the GPU; real loader: memmapped uint8 "
            "arrays -> DataLoader workers -> pinned memory -> GPU, then the same step."
        )
    summary: dict[str, Any] = {
        "memmapped train rows": args.images,
    }
    if args.architectures:
        summary |= {"loader workers": args.workers, "timed loader epochs": args.epochs}
    if config is not None and recipe_pretrained is not None:
        recipe = _display_path(args.recipe)
        with tempfile.TemporaryDirectory(prefix="bench-gpu-recipe-") as tmp:
            started = time.perf_counter()
            write_recipe_dataset(
                Path(tmp), train=args.images, val=args.val_images, size=config.image_size
            )
            log.info(
                "wrote the recipe's dataset (%d train, %d val at %d px, metadata) in %.1f s",
                args.images,
                args.val_images,
                config.image_size,
                time.perf_counter() - started,
            )
            recipe_rows = recipe_epoch_rows(
                config,
                Path(tmp),
                epochs=recipe_epochs,
                device=device,
                recipe=recipe,
                recipe_pretrained=recipe_pretrained,
            )
        rows += recipe_rows
        summary |= {
            "recipe": recipe,
            "recipe settings": {
                k: v for k, v in dataclasses.asdict(config).items() if k != "extra"
            },
            "recipe val rows": args.val_images,
            "recipe full run, extrapolated (s)": _full_run_estimate(recipe_rows, config.epochs),
        }
        notes.append(
            f"recipe_epoch rows: {recipe_epochs} epoch(s) of {recipe}'s pipelines.training "
            "through the trainer (build, then train_and_validate and end_epoch with a "
            "checkpoint, as fit runs them) on random pixels with a patient metadata table per "
            "split. epoch_s = train_s + val_s + end_epoch_s; val_s is the rest of "
            "train_and_validate after the training pass. full_run_s = build_s + the recipe's "
            "epochs x epoch_s at the bench's rows; isic2019_full_run_s scales the same rates "
            f"to ISIC 2019's {isic_2019_rows()[0]} train / {isic_2019_rows()[1]} val rows. "
            "Epoch 1 carries cudnn autotuning and the first read of the arrays, so its "
            "extrapolation is an upper bound; the summary uses the later epochs when timed."
        )
        if config.pretrained == "none":
            message = (
                "The recipe epoch used random initial weights (pretrained none; the recipe says "
                f"{recipe_pretrained}): no weights download, and the same step time, since the "
                "network and its trainable stages are the same."
            )
        elif config.pretrained != recipe_pretrained:
            message = (
                f"The recipe epoch used pretrained {config.pretrained} (the recipe says "
                f"{recipe_pretrained}); the log says which weights it got."
            )
        else:
            message = ""
        if message:
            log.warning("%s", message)
            notes.append(message)
    table = write_result(
        NAME,
        results_dir=args.results_dir,
        title=f"Training images/s on {device.type}: AMP, synthetic vs the real loader"
        + (", and one recipe epoch" if config is not None else ""),
        rows=rows,
        columns=[
            "part",
            "architecture",
            "batch",
            "fp32_eager_images_per_s",
            "amp_synthetic_images_per_s",
            "amp_speedup",
            "amp_real_loader_images_per_s",
            "loader_vs_synthetic",
            "loader_alone_images_per_s",
            "autocast",
            *(RECIPE_COLUMNS if config is not None else []),
        ],
        summary=summary,
        # A blank line between notes keeps each its own Markdown paragraph.
        notes=[line for note in notes for line in ("", note)][1:],
    )
    print(table, flush=True)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        for suffix in (".md", ".jsonl"):
            shutil.copy(args.results_dir / f"{NAME}{suffix}", args.out / f"{NAME}{suffix}")


RECIPE_COLUMNS = [
    "pretrained",
    "epoch",
    "epoch_s",
    "train_images_per_s",
    "val_s",
    "peak_gpu_memory_gib",
    "full_run_s",
    "isic2019_full_run_s",
]


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _full_run_estimate(rows: Sequence[Mapping[str, Any]], epochs: int) -> float:
    """Build + the first epoch + the rest at the later epochs' median (all at the first's if
    only one was timed), at the bench's row count."""
    first = rows[0]
    later = [float(r["epoch_s"]) for r in rows[1:]]
    steady = median(later) if later else float(first["epoch_s"])
    return float(first["build_s"]) + float(first["epoch_s"]) + (epochs - 1) * steady


if __name__ == "__main__":
    main()
