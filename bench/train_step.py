"""Training images/s: a plain fp32 eager loop against our trainer's step, same model, data, batch.

Baseline: the loop of torchvision's reference ``train_one_epoch`` (``output = model(image)``,
``loss = criterion(output, target)``, ``zero_grad``, ``backward``, ``step``) in fp32 NCHW on a
batch that is already a normalised float tensor, as that script's DataLoader hands it over (the
per-image transforms in its loader workers are not counted: that favours the baseline).

Ours: ``skinlesion.training.loop.train_one_epoch`` itself on the uint8 batch: batched
augmentation, channels_last, bf16 autocast where the CPU has native bf16 (AMP on GPU), the
class-weighted loss, AdamW and the one-cycle schedule, exactly as ``fit()`` runs it.

The two steps alternate (baseline, ours, baseline, ...) so that other load on the machine hits
both alike; warm-up steps are not timed; the table gives the median step. Run::

    python -m bench.train_step --architectures efficientnet_lite0 mobilenet_v2 resnet50
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from bench.results import RESULTS_DIR, median, write_result
from skinlesion.config import TrainConfig
from skinlesion.models import autocast_dtype, build_model, normalization, normalize, to_unit_float
from skinlesion.training.augmentation import BatchAugment
from skinlesion.training.loop import (
    CrossEntropy,
    InputSpec,
    make_optimizer,
    make_scheduler,
    train_one_epoch,
)

log = logging.getLogger("bench.train_step")
NUM_CLASSES = 8
NAME = "train_step"


def sync(device: torch.device) -> None:
    """Wait for the GPU's queued work (a no-op on CPU), so that a timer sees all of it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class BaselineStep:
    """torchvision reference ``train_one_epoch``'s inner loop: fp32, NCHW, eager."""

    def __init__(self, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor):
        self.model = model.train()
        self.criterion = torch.nn.CrossEntropyLoss()
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
        self.images, self.labels = images, labels

    def __call__(self) -> None:
        output = self.model(self.images)
        loss = self.criterion(output, self.labels)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()


class TrainerStep:
    """One batch through our ``train_one_epoch`` with the settings ``fit()`` uses."""

    def __init__(
        self,
        model: torch.nn.Module,
        config: TrainConfig,
        device: torch.device,
        total_steps: int,
        batch: tuple[torch.Tensor, torch.Tensor] | None = None,
    ):
        self.device = device
        self.dtype = autocast_dtype(config.precision, device)
        self.model = model.to(memory_format=torch.channels_last) if config.channels_last else model
        mean, std = normalization(config.architecture)
        self.inputs = InputSpec(config.image_size, mean, std, config.channels_last)
        weights = torch.linspace(0.5, 2.0, NUM_CLASSES, device=device)
        self.criterion = CrossEntropy(weight=weights, label_smoothing=config.label_smoothing)
        self.optimizer = make_optimizer(self.model, config)
        self.scheduler = make_scheduler(self.optimizer, config, total_steps)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype is torch.float16)
        self.augment = BatchAugment(config.image_size, seed=0)
        self.batches = [] if batch is None else [batch]

    def run(self, loader: Iterable[tuple[torch.Tensor, ...]]) -> dict[str, float]:
        """``train_one_epoch`` over ``loader``: uint8 batches and labels, and optionally the
        metadata rows (the trainer's loader yields (images, labels, metadata); a pair gets the
        image-only (N, 0) block that ``SplitDataset`` gives a split without metadata)."""
        batches = (
            item if len(item) == 3 else (*item, torch.zeros((len(item[1]), 0))) for item in loader
        )
        return train_one_epoch(
            self.model,
            self.criterion,
            self.optimizer,
            self.scheduler,
            self.scaler,
            batches,  # type: ignore[arg-type]  # it only iterates
            device=self.device,
            dtype=self.dtype,
            inputs=self.inputs,
            augment=self.augment,
            epoch=1,
        )

    def __call__(self) -> None:
        self.run(self.batches)


def measure(
    architecture: str,
    image_size: int,
    batch_size: int,
    *,
    steps: int,
    warmup: int,
    device: torch.device,
) -> dict[str, Any]:
    """Median step seconds of the baseline and of our step, alternating, after warm-up."""
    torch.manual_seed(0)
    images = torch.randint(0, 256, (batch_size, image_size, image_size, 3), dtype=torch.uint8)
    labels = torch.randint(0, NUM_CLASSES, (batch_size,))
    mean, std = normalization(architecture)
    ready = normalize(to_unit_float(images), mean, std).contiguous().to(device)

    reference = build_model(architecture, NUM_CLASSES, "none", image_size)
    ours_model = build_model(architecture, NUM_CLASSES, "none", image_size)
    ours_model.load_state_dict(reference.state_dict())
    baseline = BaselineStep(reference.to(device), ready, labels.to(device))
    config = TrainConfig(architecture=architecture, image_size=image_size, batch_size=batch_size)
    ours = TrainerStep(
        ours_model.to(device),
        config,
        device,
        total_steps=steps + warmup + 1,
        batch=(images.to(device), labels.to(device)),
    )

    times: dict[str, list[float]] = {"baseline": [], "ours": []}
    cpu_times: dict[str, list[float]] = {"baseline": [], "ours": []}
    for step in range(warmup + steps):
        for name, fn in (("baseline", baseline), ("ours", ours)):
            sync(device)
            started, cpu_started = time.perf_counter(), time.process_time()
            fn()
            sync(device)
            if step >= warmup:
                times[name].append(time.perf_counter() - started)
                cpu_times[name].append(time.process_time() - cpu_started)
    base_s, ours_s = median(times["baseline"]), median(times["ours"])
    base_cpu, ours_cpu = median(cpu_times["baseline"]), median(cpu_times["ours"])
    return {
        "architecture": architecture,
        "image_size": image_size,
        "batch": batch_size,
        "device": device.type,
        "ours_mode": f"channels_last + {ours.dtype or 'fp32'} autocast, batched augmentation",
        "baseline_images_per_s": batch_size / base_s,
        "ours_images_per_s": batch_size / ours_s,
        "speedup": base_s / ours_s,
        "baseline_step_s": base_s,
        "ours_step_s": ours_s,
        # CPU seconds of all threads: less sensitive than wall time to other load on the host.
        "baseline_cpu_s": base_cpu,
        "ours_cpu_s": ours_cpu,
        "cpu_time_ratio": base_cpu / ours_cpu,
        "steps": steps,
        "warmup": warmup,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--architectures",
        nargs="+",
        default=["efficientnet_lite0", "mobilenet_v2", "resnet50"],
    )
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per path")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per path")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--name", default=NAME, help="results file name in bench/results")
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS_DIR, help="where the results go"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    device = torch.device(args.device)
    rows = []
    for architecture in args.architectures:
        log.info("timing %s at %d px, batch %d", architecture, args.image_size, args.batch_size)
        row = measure(
            architecture,
            args.image_size,
            args.batch_size,
            steps=args.steps,
            warmup=args.warmup,
            device=device,
        )
        log.info(
            "%s: baseline %.1f images/s, ours %.1f images/s (%.2fx)",
            architecture,
            row["baseline_images_per_s"],
            row["ours_images_per_s"],
            row["speedup"],
        )
        rows.append(row)
    table = write_result(
        args.name,
        results_dir=args.results_dir,
        title=f"Training step images/s ({device.type}): plain fp32 eager loop vs our trainer",
        rows=rows,
        columns=[
            "architecture",
            "image_size",
            "batch",
            "baseline_images_per_s",
            "ours_images_per_s",
            "speedup",
            "cpu_time_ratio",
            "ours_mode",
        ],
        summary={"goal": ">= 2x", "steps timed": args.steps, "warm-up steps": args.warmup},
        notes=[
            "Baseline: fp32 NCHW eager, the loop of torchvision's reference train_one_epoch, on "
            "a ready normalised float batch. Ours: skinlesion.training.loop.train_one_epoch on "
            "the uint8 batch (augmentation included). Median of alternating timed steps. "
            "cpu_time_ratio: the same ratio in CPU seconds of the process (all threads), "
            "which other load on the machine distorts less than wall time.",
        ],
    )
    print(table, flush=True)


if __name__ == "__main__":
    main()
