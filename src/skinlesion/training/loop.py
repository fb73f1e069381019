"""The training loop: fit(), train_one_epoch(), evaluate(); single process or DDP under torchrun.

Shaped like torchvision's classification reference: fit() is build() (model, optimizer,
schedule, loaders), resume() (a checkpoint, exactly), then train_and_validate() and end_epoch()
(best weights, early stopping, checkpoint, log line) per epoch, and finish(). Selection uses
validation balanced accuracy (mean per-class recall, the ISIC 2019 metric); early stopping its
moving average (skinlesion.training.stopping). A full checkpoint after every epoch makes a
restarted job (a reclaimed spot instance) continue exactly where it stopped.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from skinlesion.artifacts import ModelSpec
from skinlesion.config import ConfigError, TrainConfig
from skinlesion.data.store import read_manifest, read_split, read_split_metadata
from skinlesion.metrics import balanced_accuracy_from_confusion, recall_from_confusion
from skinlesion.models import (
    LesionClassifier,
    autocast,
    autocast_dtype,
    build_model,
    normalization,
    normalize,
    resize,
    spec_for,
    to_unit_float,
    unwrap,
)
from skinlesion.training.augmentation import BatchAugment
from skinlesion.training.checkpointing import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    seed_everything,
)
from skinlesion.training.devices import select_device
from skinlesion.training.loader import (
    EpochBatchSampler,
    FixedBatchSampler,
    SplitDataset,
    make_loader,
    shard_indices,
)
from skinlesion.training.reporting import format_epoch_line
from skinlesion.training.stopping import early_stopping

log = logging.getLogger(__name__)
# Progress lines (speed, ETA) that a console summary such as `make demo` shows as they come.
progress_log = logging.getLogger("skinlesion.progress")

# Hyperparameters that shape the trajectory: a checkpoint written under other values cannot be
# resumed exactly, so resuming from it is refused.
TRAJECTORY_KEYS = (
    "architecture",
    "pretrained",
    "epochs",
    "batch_size",
    "learning_rate",
    "weight_decay",
    "image_size",
    "schedule",
    "balancing",
    "label_smoothing",
    "freeze_stages",
    "seed",
    "augment",
    "max_steps_per_epoch",
)


# The metadata term's learning rate over the network's (make_optimizer says why).
METADATA_LR_SCALE = 20.0
# torch's OneCycleLR default, named because early stopping needs to know where the peak is.
ONECYCLE_PCT_START = 0.3
COSINE_WARMUP_FRACTION = 0.05


class CheckpointMismatchError(ValueError):
    """The checkpoint found was written by a run with other hyperparameters."""


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in a torchrun launch (rank 0 of 1 when not launched by it)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> DistributedContext:
        env = os.environ if env is None else env
        return cls(
            rank=int(env.get("RANK", 0)),
            world_size=int(env.get("WORLD_SIZE", 1)),
            local_rank=int(env.get("LOCAL_RANK", 0)),
        )

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, requested: str = "auto") -> torch.device:
        """This process's device; raises DeviceUnavailableError when GPUs were asked in vain."""
        return select_device(requested, self.local_rank)

    def start(self, device: torch.device) -> None:
        if self.enabled and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
            log.info("Joined process group: rank %d of %d", self.rank, self.world_size)

    def stop(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def gather(self, value: Any) -> list[Any]:
        if not self.enabled:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


@dataclass
class TrainState:
    """What changes from epoch to epoch, besides the module/optimizer/scheduler states."""

    epoch: int = 0  # epochs completed
    global_step: int = 0
    best_metric: float = -math.inf
    best_epoch: int = 0
    epochs_without_improvement: int = 0
    finished: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    best_model: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class TrainResult:
    """The outcome of fit(): the best model and how it was reached."""

    model: LesionClassifier  # holds the best epoch's weights
    spec: ModelSpec
    history: list[dict[str, Any]]
    best_epoch: int
    epochs_completed: int
    stopped_early: bool
    interrupted: bool  # stopped on request after a checkpoint (a resume drill)
    resumed_from_epoch: int
    is_main: bool


@dataclass(frozen=True)
class InputSpec:
    """How uint8 batches become network input."""

    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    channels_last: bool

    def finish(self, images: torch.Tensor) -> torch.Tensor:
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        return normalize(images, self.mean, self.std).contiguous(memory_format=memory_format)

    def plain(self, images: torch.Tensor) -> torch.Tensor:
        return self.finish(resize(to_unit_float(images), self.image_size))


def show_progress(is_main: bool) -> bool:
    """A progress bar only for a person at a terminal, never in SageMaker's logs (elsewhere
    progress is a log line every ``PROGRESS_LOG_SECONDS``)."""
    on_sagemaker = "TRAINING_JOB_NAME" in os.environ or "SM_TRAINING_ENV" in os.environ
    return is_main and not on_sagemaker and sys.stderr.isatty()


PROGRESS_LOG_SECONDS = 30.0


class EpochProgress:
    """Log lines with speed and the epoch's ETA while an epoch runs, for logs that are not a
    terminal (``make demo`` piped, CloudWatch): at most one per ``interval`` seconds."""

    def __init__(self, epoch: int, epochs: int, total: int, interval: float) -> None:
        self.epoch, self.epochs, self.total, self.interval = epoch, epochs, total, interval
        self.started = time.perf_counter()
        self.next_at = self.started + interval

    def update(self, done: int, images: int) -> None:
        now = time.perf_counter()
        if now < self.next_at or done >= self.total:
            return
        self.next_at = now + self.interval
        elapsed = now - self.started
        eta = elapsed / done * (self.total - done)
        progress_log.info(
            "epoch %d/%d: %d/%d batches (%d%%), %.1f images/s, epoch ETA %s",
            self.epoch,
            self.epochs,
            done,
            self.total,
            100 * done // self.total,
            images / elapsed,
            format_duration(eta),
        )


def format_duration(seconds: float) -> str:
    """``1h02m``, ``4m10s`` or ``12s``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class CrossEntropy(nn.Module):
    """Class-weighted cross-entropy with label smoothing, as ``nn.CrossEntropyLoss`` computes it.

    Written with one-hot sums instead of ``nll_loss``, whose CUDA kernel has no deterministic
    mode: ``torch.use_deterministic_algorithms`` refuses it on GPUs. ``logit_offset``: added to
    the logits inside the loss only (logit adjustment, Menon et al. 2021: ``log prior`` makes
    the network's own logits the class-balanced ones).
    """

    weight: torch.Tensor | None
    logit_offset: torch.Tensor | None

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
        logit_offset: torch.Tensor | None = None,
    ):
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("logit_offset", logit_offset)
        self.label_smoothing = label_smoothing

    def forward(
        self, logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:
        logits = logits.float()
        if self.logit_offset is not None:
            logits = logits + self.logit_offset
        log_probs = torch.log_softmax(logits, dim=1)
        num_classes = logits.shape[1]
        one_hot = nn.functional.one_hot(targets, num_classes).to(log_probs.dtype)
        weight = self.weight if self.weight is not None else torch.ones_like(log_probs[0])
        sample_weight = one_hot @ weight
        nll = -(one_hot * log_probs).sum(dim=1) * sample_weight
        if self.label_smoothing:
            smooth = -(log_probs * weight).sum(dim=1) / num_classes
            nll = (1 - self.label_smoothing) * nll + self.label_smoothing * smooth
        if reduction == "sum":
            return nll.sum()
        if reduction == "mean":
            return nll.sum() / sample_weight.sum()
        raise ValueError(f"Invalid reduction {reduction!r}. Accepted: mean, sum.")


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    scaler: torch.amp.GradScaler,
    loader: torch.utils.data.DataLoader[Any],
    *,
    device: torch.device,
    dtype: torch.dtype | None,
    inputs: InputSpec,
    augment: BatchAugment | None,
    epoch: int,
    progress: bool = False,
    epochs: int = 0,
    log_progress: bool = False,
    metadata_dropout: float = 0.0,
    ema: tuple[AveragedModel, nn.Module] | None = None,
) -> dict[str, float]:
    """One pass over ``loader``; the scheduler steps per batch. Returns loss, images, speed.

    ``progress``: a tqdm bar; ``log_progress``: periodic log lines with an ETA instead.
    ``metadata_dropout``: the share of images whose patient metadata is hidden (read as
    unknown), drawn from torch's global generator (which checkpoints carry).
    ``ema``: a weight average and the unwrapped model it averages, updated after every step."""
    from tqdm import tqdm

    model.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    seen = 0
    started = time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch}", unit="batch", leave=False, disable=not progress)
    ticker = (
        EpochProgress(epoch, epochs, len(loader), PROGRESS_LOG_SECONDS)
        if log_progress and not progress
        else None
    )
    for step, (images, labels, metadata) in enumerate(bar, start=1):
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        if augment is not None:
            x = inputs.finish(augment(to_unit_float(images)))
        else:
            x = inputs.plain(images)
        meta = _hide_metadata(metadata, metadata_dropout)
        with autocast(device, dtype):
            logits = model(x) if meta is None else model(x, meta.to(device, non_blocking=True))
        loss = criterion(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if ema is not None:
            ema[0].update_parameters(ema[1])
        loss_sum += loss.detach().double() * len(labels)
        seen += len(labels)
        if progress:
            bar.set_postfix(loss=f"{loss.item():.3f}")
        elif ticker is not None:
            ticker.update(step, seen)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    # Checked once per epoch, not per step (a host-device sync), and before any checkpoint.
    if not torch.isfinite(loss_sum):
        raise FloatingPointError(
            f"Training loss became {loss_sum.item()} in epoch {epoch}; lower learning_rate or "
            "use precision=fp32."
        )
    return {
        "train_loss": float(loss_sum.item() / max(seen, 1)),
        "images": float(seen),
        "seconds": seconds,
        "images_per_sec": seen / seconds if seconds > 0 else 0.0,
        "lr": float(scheduler.get_last_lr()[0]),
    }


def make_ema(model: nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of ``model``'s parameters and buffers (BatchNorm's running
    statistics averaged with the weights they belong to); the first update copies the model."""
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _hide_metadata(metadata: torch.Tensor, share: float) -> torch.Tensor | None:
    """The batch's metadata with ``share`` of its rows set to the unknown encoding (None if the
    dataset has none)."""
    if metadata.shape[1] == 0:
        return None
    if share <= 0:
        return metadata
    from skinlesion.patient import unknown_vector

    hidden = torch.rand(len(metadata)) < share
    unknown = torch.from_numpy(unknown_vector())
    return torch.where(hidden[:, None], unknown, metadata)


def evaluate(
    model: nn.Module,
    loader: torch.utils.data.DataLoader[Any],
    *,
    device: torch.device,
    dtype: torch.dtype | None,
    inputs: InputSpec,
    num_classes: int,
    distributed: DistributedContext | None = None,
) -> dict[str, Any]:
    """Loss, accuracy, balanced accuracy and per-class recall; sums over ranks under DDP."""
    distributed = distributed or DistributedContext()
    model.eval()
    unweighted = CrossEntropy()
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    with torch.inference_mode():
        for images, labels, metadata in loader:
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            x = inputs.plain(images)
            with autocast(device, dtype):
                if metadata.shape[1]:
                    logits = model(x, metadata.to(device, non_blocking=True))
                else:
                    logits = model(x)
            logits = logits.float()
            loss_sum += unweighted(logits, labels, reduction="sum").double()
            flat = labels * num_classes + logits.argmax(dim=1)
            confusion += torch.bincount(flat, minlength=num_classes * num_classes)
    distributed.sum(confusion)
    distributed.sum(loss_sum)
    matrix = confusion.view(num_classes, num_classes).cpu().numpy()
    total = int(matrix.sum())
    recalls = recall_from_confusion(matrix)
    return {
        "val_loss": float(loss_sum.item() / max(total, 1)),
        "val_accuracy": float(np.trace(matrix) / max(total, 1)),
        "val_balanced_accuracy": balanced_accuracy_from_confusion(matrix),
        "val_recall": [None if np.isnan(r) else float(r) for r in recalls],
        "val_confusion": matrix.tolist(),
    }


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int
) -> LRScheduler:
    """Per-step schedule: one-cycle, or linear warm-up (5% of steps) then cosine to zero."""
    if config.schedule == "onecycle":
        return OneCycleLR(
            optimizer,
            max_lr=[group["lr"] for group in optimizer.param_groups],
            total_steps=total_steps,
            pct_start=ONECYCLE_PCT_START,
        )
    if config.schedule == "cosine":
        warmup = _cosine_warmup_steps(total_steps)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(1, total_steps - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

        return LambdaLR(optimizer, factor)
    raise ConfigError(f"Invalid schedule {config.schedule!r}. Accepted: cosine, onecycle.")


def _cosine_warmup_steps(total_steps: int) -> int:
    return max(1, round(COSINE_WARMUP_FRACTION * total_steps))


def schedule_peak_step(config: TrainConfig, total_steps: int) -> int:
    """The scheduler step from which the learning rate never rises again: the warm-up's end."""
    if config.schedule == "onecycle":
        # OneCycleLR's rising phase ends at step float(pct_start * total_steps) - 1.
        return max(0, math.ceil(ONECYCLE_PCT_START * total_steps - 1))
    if config.schedule == "cosine":
        return _cosine_warmup_steps(total_steps) - 1  # factor (step + 1) / warmup reaches 1
    raise ConfigError(f"Invalid schedule {config.schedule!r}. Accepted: cosine, onecycle.")


def warmup_epochs(peak_step: int, steps_per_epoch: int) -> int:
    """Epochs that end before the learning rate's peak (early stopping ignores them)."""
    return max(0, (peak_step - 1) // max(1, steps_per_epoch))


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases and normalisation parameters.

    The metadata term, when there is one, has its own group at ``METADATA_LR_SCALE`` times the
    learning rate: Adam moves each weight by about the learning rate per step, so the image
    head (a sum over a thousand features) reaches useful logits long before a weight of one
    one-hot metadata column would at the same rate.
    """
    head = getattr(unwrap(model), "metadata_head", None)
    metadata = {id(p) for p in head.parameters()} if head is not None else set()
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for parameter in model.parameters():
        if parameter.requires_grad and id(parameter) not in metadata:
            (decay if parameter.ndim > 1 else no_decay).append(parameter)
    groups: list[dict[str, Any]] = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if head is not None:
        groups.append(
            {
                "params": list(head.parameters()),
                "weight_decay": config.weight_decay,
                "lr": config.learning_rate * METADATA_LR_SCALE,
            }
        )
    return torch.optim.AdamW(groups, lr=config.learning_rate)


def log_prior(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """log of each class's share of ``labels`` (float32; an absent class gets the log of half
    an image's share, so its offset stays finite)."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    counts = np.where(counts > 0, counts, 0.5)
    return np.log(counts / counts.sum()).astype(np.float32)


def _class_weights(manifest: Mapping[str, Any], labels: np.ndarray, num_classes: int) -> np.ndarray:
    weights = manifest.get("class_weights")
    if weights is None or len(weights) != num_classes:
        counts = np.bincount(labels, minlength=num_classes).astype(float)
        weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1), 0.0)
        weights = weights / weights[counts > 0].mean()
    return np.asarray(weights, dtype=np.float64)


def _check_resumable(checkpoint: Mapping[str, Any], config: TrainConfig, path: Path) -> None:
    saved = checkpoint.get("config", {})
    current = config.to_hyperparameters()
    differing = [k for k in TRAJECTORY_KEYS if saved.get(k) != current.get(k)]
    if differing:
        details = ", ".join(f"{k}: {saved.get(k)} -> {current.get(k)}" for k in differing)
        raise CheckpointMismatchError(
            f"The checkpoint in {path} was written with other hyperparameters ({details}). "
            "Resume with the same hyperparameters, or use an empty checkpoint location."
        )


def fit(
    config: TrainConfig,
    dataset_dir: Path,
    *,
    checkpoint_dir: Path | None = None,
    stop_after_epoch: int | None = None,
    distributed: DistributedContext | None = None,
) -> TrainResult:
    """Train on ``dataset_dir``'s train split, select on its val split; resume if checkpointed.

    ``stop_after_epoch``: return (interrupted) right after that epoch's checkpoint, as a
    reclaimed spot instance would stop; a later call with the same checkpoint dir continues.
    """
    distributed = distributed or DistributedContext.from_environment()
    device = distributed.device(config.device)
    distributed.start(device)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        return _fit(
            config, Path(dataset_dir), checkpoint_dir, stop_after_epoch, distributed, device
        )
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        distributed.stop()


def _fit(
    config: TrainConfig,
    dataset_dir: Path,
    checkpoint_dir: Path | None,
    stop_after_epoch: int | None,
    distributed: DistributedContext,
    device: torch.device,
) -> TrainResult:
    """build, resume, then train_and_validate and end_epoch until done (torchvision's main)."""
    run = build(config, dataset_dir, distributed, device)
    state = resume(run, checkpoint_dir) if checkpoint_dir is not None else TrainState()
    resumed_from = state.epoch
    progress = show_progress(distributed.is_main)
    interrupted = False
    while not state.finished and state.epoch < config.epochs:
        epoch = state.epoch + 1
        record = train_and_validate(run, epoch, progress=progress)
        end_epoch(run, state, record, checkpoint_dir)
        if stop_after_epoch is not None and epoch >= stop_after_epoch and not state.finished:
            log.warning("Stopping after epoch %d as requested; the checkpoint resumes it.", epoch)
            interrupted = True
            break
    return finish(run, state, resumed_from=resumed_from, interrupted=interrupted)


@dataclass
class TrainingRun:
    """What build() makes for one run: the model and everything that steps, feeds and scores it."""

    config: TrainConfig
    distributed: DistributedContext
    device: torch.device
    dtype: torch.dtype | None
    classes: tuple[str, ...]
    inputs: InputSpec
    model: LesionClassifier  # unwrapped: checkpoints and the result hold its state
    network: nn.Module  # model, or its DistributedDataParallel wrapper
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler
    scaler: torch.amp.GradScaler
    sampler: EpochBatchSampler
    train_loader: torch.utils.data.DataLoader[Any]
    val_loader: torch.utils.data.DataLoader[Any]
    augment: BatchAugment
    steps_per_epoch: int
    warmup_epochs: int  # epochs that end before the learning rate's peak
    generated_data: bool = False  # the dataset's manifest says its images were generated
    ema: AveragedModel | None = None  # the weight average (config.ema_decay > 0)

    @property
    def scored(self) -> nn.Module:
        """The weights validation scores and selection keeps: the average, or the model."""
        return self.ema.module if self.ema is not None else self.model

    @property
    def generators(self) -> dict[str, torch.Generator]:
        """The named generators whose states a checkpoint carries."""
        return {"augment": self.augment.generator}


def _configure_determinism(config: TrainConfig, device: torch.device) -> int:
    """Set the global determinism switches for ``config``; returns the loader worker count."""
    if config.deterministic:
        # cuBLAS needs this before its first use to be deterministic.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        return 0
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return config.num_workers


def build(
    config: TrainConfig,
    dataset_dir: Path,
    distributed: DistributedContext,
    device: torch.device,
) -> TrainingRun:
    """Model, loss, optimizer, schedule, sampler and loaders, seeded as ``config`` says."""
    # The order of the seeding and of every random draw below is part of the exact-resume
    # contract: a checkpoint's RNG states replay only the same sequence.
    num_workers = _configure_determinism(config, device)
    dtype = autocast_dtype(config.precision, device)

    manifest = read_manifest(dataset_dir)
    classes = tuple(manifest["classes"])
    num_classes = len(classes)
    train_split = read_split(dataset_dir, "train")
    val_split = read_split(dataset_dir, "val")
    mean, std = normalization(config.architecture)
    inputs = InputSpec(config.image_size, mean, std, config.channels_last)
    log.info(
        "Training %s (%s, %d px) on %s: %d train / %d val images, %d classes, autocast %s, "
        "world size %d",
        config.architecture,
        config.pretrained,
        config.image_size,
        device,
        len(train_split),
        len(val_split),
        num_classes,
        dtype or "off (fp32)",
        distributed.world_size,
    )

    seed_everything(config.seed)
    if distributed.local_rank == 0:  # one download per host, then the others read the cache
        model = build_model(config.architecture, num_classes, config.pretrained, config.image_size)
    distributed.barrier()
    if distributed.local_rank != 0:
        model = build_model(config.architecture, num_classes, config.pretrained, config.image_size)
    if config.metadata:
        model.use_metadata()
    if config.freeze_stages:
        model.freeze_stages(config.freeze_stages)
        log.info(
            "Frozen: the first %d of %d stages (%d of %d parameters train)",
            config.freeze_stages,
            len(model.stages()),
            sum(p.numel() for p in model.parameters() if p.requires_grad),
            sum(p.numel() for p in model.parameters()),
        )
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    network: nn.Module = model
    if distributed.enabled:
        network = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    seed_everything(config.seed + distributed.rank)  # distinct dropout masks per rank

    class_weights = _class_weights(manifest, train_split.labels, num_classes)
    criterion = CrossEntropy(
        weight=(
            torch.tensor(class_weights, dtype=torch.float32, device=device)
            if config.balancing == "weighted_loss"
            else None
        ),
        label_smoothing=config.label_smoothing,
        logit_offset=(
            torch.tensor(log_prior(train_split.labels, num_classes), device=device)
            if config.balancing == "logit_adjust"
            else None
        ),
    )
    sampler = EpochBatchSampler(
        len(train_split),
        config.batch_size,
        weights=class_weights[train_split.labels] if config.balancing == "sampler" else None,
        seed=config.seed,
        rank=distributed.rank,
        world_size=distributed.world_size,
        max_batches=config.max_steps_per_epoch,
    )
    pin = device.type == "cuda"
    train_metadata = val_metadata = None
    if config.metadata:
        train_metadata = split_metadata(dataset_dir, "train", train_split.image_ids)
        val_metadata = split_metadata(dataset_dir, "val", val_split.image_ids)
    train_loader = make_loader(
        SplitDataset(train_split.images, train_split.labels, train_metadata),
        sampler,
        num_workers=num_workers,
        pin_memory=pin,
    )
    val_loader = make_loader(
        SplitDataset(val_split.images, val_split.labels, val_metadata),
        FixedBatchSampler(
            shard_indices(len(val_split), distributed.rank, distributed.world_size),
            config.batch_size * 2,
        ),
        num_workers=num_workers,
        pin_memory=pin,
    )
    steps_per_epoch = len(sampler)
    total_steps = config.epochs * steps_per_epoch
    optimizer = make_optimizer(network, config)
    scheduler = make_scheduler(optimizer, config, total_steps)
    return TrainingRun(
        config=config,
        distributed=distributed,
        device=device,
        dtype=dtype,
        classes=classes,
        inputs=inputs,
        model=model,
        network=network,
        criterion=criterion,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=torch.amp.GradScaler(device.type, enabled=dtype is torch.float16),
        sampler=sampler,
        train_loader=train_loader,
        val_loader=val_loader,
        augment=BatchAugment(config.image_size, seed=config.seed + distributed.rank),
        steps_per_epoch=steps_per_epoch,
        warmup_epochs=warmup_epochs(schedule_peak_step(config, total_steps), steps_per_epoch),
        generated_data=bool(manifest.get("source", {}).get("generated", False)),
        ema=make_ema(model, config.ema_decay) if config.ema_decay else None,
    )


def split_metadata(dataset_dir: Path, split: str, image_ids: list[str]) -> np.ndarray:
    """The split's patient metadata encoded (skinlesion.patient), rows in the split's order."""
    from skinlesion import patient

    rows = read_split_metadata(dataset_dir, split)
    if rows is None:
        log.warning(
            "The %s split has no metadata table: every image reads as of an unknown patient",
            split,
        )
    matrix = patient.encode_rows(image_ids, rows)
    log.info(
        "Patient metadata of the %s split, share known: %s",
        split,
        ", ".join(f"{k} {v:.1%}" for k, v in patient.coverage(matrix).items()),
    )
    return matrix


def resume(run: TrainingRun, checkpoint_dir: Path) -> TrainState:
    """Load the checkpoint in ``checkpoint_dir`` into ``run``; a fresh state when there is none."""
    checkpoint = load_checkpoint(checkpoint_dir)
    if checkpoint is None:
        return TrainState()
    config, distributed = run.config, run.distributed
    _check_resumable(checkpoint, config, checkpoint_dir)
    run.model.load_state_dict(checkpoint["model"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    run.scheduler.load_state_dict(checkpoint["scheduler"])
    run.scaler.load_state_dict(checkpoint["scaler"])
    run.sampler.load_state_dict(checkpoint["sampler"])
    if run.ema is not None:  # the configs matched, so a run with an average saved one
        run.ema.load_state_dict(checkpoint["ema"])
    state = TrainState(**checkpoint["train_state"])
    rng = checkpoint["rng"]
    if len(rng) == distributed.world_size:
        restore_rng_state(rng[distributed.rank], run.generators)
    else:
        log.warning(
            "Checkpoint has RNG states of %d ranks, this run has %d: reseeding, so the "
            "resumed run will not replay the original exactly.",
            len(rng),
            distributed.world_size,
        )
        seed_everything(config.seed + 7919 * state.epoch + distributed.rank)
        run.augment.generator.manual_seed(config.seed + 7919 * state.epoch + distributed.rank)
    log.info(
        "Resuming from %s: %d of %d epochs done, best val_balanced_accuracy %.4f (epoch %d)",
        checkpoint_dir,
        state.epoch,
        config.epochs,
        state.best_metric,
        state.best_epoch,
    )
    return state


def train_and_validate(run: TrainingRun, epoch: int, *, progress: bool = False) -> dict[str, Any]:
    """Train epoch ``epoch``, validate, and sum the figures over ranks: the epoch's record."""
    config, distributed = run.config, run.distributed
    run.sampler.set_epoch(epoch)
    train_stats = train_one_epoch(
        run.network,
        run.criterion,
        run.optimizer,
        run.scheduler,
        run.scaler,
        run.train_loader,
        device=run.device,
        dtype=run.dtype,
        inputs=run.inputs,
        augment=run.augment if config.augment else None,
        epoch=epoch,
        progress=progress,
        epochs=config.epochs,
        log_progress=distributed.is_main,
        metadata_dropout=config.metadata_dropout if config.metadata else 0.0,
        ema=(run.ema, run.model) if run.ema is not None else None,
    )

    def score(weights: nn.Module) -> dict[str, Any]:
        return evaluate(
            weights,
            run.val_loader,
            device=run.device,
            dtype=run.dtype,
            inputs=run.inputs,
            num_classes=len(run.classes),
            distributed=distributed,
        )

    val_stats = score(run.network)
    if run.ema is not None:
        # The average is what selection reads; the raw weights' figure stays on the line, so each
        # epoch shows what averaging bought. The extra pass runs on a fork of torch's global
        # generator (each loader iteration draws a base seed from it): the training run itself,
        # dropout and metadata masks included, is exactly the one without averaging.
        with torch.random.fork_rng(devices=[]):
            averaged = score(run.scored)
        val_stats = averaged | {"val_balanced_accuracy_raw": val_stats["val_balanced_accuracy"]}
    # Over all ranks: the loss of every image seen, the speed of the whole job.
    loss_sum, images, speed = distributed.sum(
        torch.tensor(
            [
                train_stats["train_loss"] * train_stats["images"],
                train_stats["images"],
                train_stats["images_per_sec"],
            ],
            dtype=torch.float64,
            device=run.device,
        )
    ).tolist()
    train_stats |= {"train_loss": loss_sum / max(images, 1.0), "images": images}
    return {"epoch": epoch, **train_stats, **val_stats, "images_per_sec": speed}


def end_epoch(
    run: TrainingRun, state: TrainState, record: dict[str, Any], checkpoint_dir: Path | None
) -> None:
    """Keep the best weights, log, decide early stopping, and checkpoint (rank 0)."""
    config, distributed = run.config, run.distributed
    epoch = record["epoch"]
    state.epoch = epoch
    state.global_step += run.steps_per_epoch
    state.history.append(record)
    # Selection reads the epoch's own figure (of the weights it keeps: the average's when
    # config.ema_decay is set); stopping, a judgement about the trend, reads the smoothed one.
    metric = record["val_balanced_accuracy"]
    if metric > state.best_metric:
        state.best_metric, state.best_epoch = metric, epoch
        state.best_model = {k: v.detach().cpu().clone() for k, v in run.scored.state_dict().items()}
    if distributed.is_main:
        log.info("%s", format_epoch_line(record))
    verdict = early_stopping(
        [h["val_balanced_accuracy"] for h in state.history],
        patience=config.patience,
        smoothing=config.early_stopping_smoothing,
        warmup_epochs=run.warmup_epochs,
    )
    state.epochs_without_improvement = verdict.epochs_without_improvement
    if verdict.stop:
        log.info(
            "Stopping early: smoothed val_balanced_accuracy (moving average, smoothing %.2f) "
            "has not improved for %d epochs after the learning-rate warm-up (best %.4f at "
            "epoch %d; best single epoch %.4f at epoch %d)",
            config.early_stopping_smoothing,
            config.patience,
            verdict.best_smoothed,
            verdict.best_smoothed_epoch,
            state.best_metric,
            state.best_epoch,
        )
    state.finished = verdict.stop or state.epoch >= config.epochs
    rng_states = distributed.gather(capture_rng_state(run.generators))
    if checkpoint_dir is not None and distributed.is_main:
        save_checkpoint(
            {
                "config": config.to_hyperparameters(),
                "world_size": distributed.world_size,
                "model": run.model.state_dict(),
                "optimizer": run.optimizer.state_dict(),
                "scheduler": run.scheduler.state_dict(),
                "scaler": run.scaler.state_dict(),
                "sampler": run.sampler.state_dict(),
                **({"ema": run.ema.state_dict()} if run.ema is not None else {}),
                "train_state": vars(state),
                "rng": rng_states,
            },
            checkpoint_dir,
        )
    distributed.barrier()


def fit_clinical(run: TrainingRun, spec: ModelSpec) -> ModelSpec:
    """Temperature, referral threshold and OOD statistics for the final weights (rank 0 only)."""
    from skinlesion.training.calibration import fit_clinical_settings

    train, val = run.train_loader.dataset, run.val_loader.dataset
    return fit_clinical_settings(
        run.model,
        spec,
        train_images=train.images,  # type: ignore[attr-defined]
        train_labels=train.labels,  # type: ignore[attr-defined]
        val_images=val.images,  # type: ignore[attr-defined]
        val_labels=val.labels,  # type: ignore[attr-defined]
        val_metadata=val.metadata if run.config.metadata else None,  # type: ignore[attr-defined]
        device=run.device,
        batch_size=run.config.batch_size * 2,
    )


def finish(
    run: TrainingRun, state: TrainState, *, resumed_from: int, interrupted: bool
) -> TrainResult:
    """The best epoch's weights in the model, its metrics in the spec."""
    config, model = run.config, run.model
    if state.best_model:
        model.load_state_dict(state.best_model)
    best = next((h for h in state.history if h["epoch"] == state.best_epoch), {})
    metrics = {
        "val_balanced_accuracy": float(best.get("val_balanced_accuracy", 0.0)),
        "val_accuracy": float(best.get("val_accuracy", 0.0)),
        "val_loss": float(best.get("val_loss", 0.0)),
        "train_loss": float(best.get("train_loss", 0.0)),
        "best_epoch": float(state.best_epoch),
        "epochs_completed": float(state.epoch),
        "train_images_per_sec": float(
            np.mean([h["images_per_sec"] for h in state.history]) if state.history else 0.0
        ),
    }
    # Validation above saw one view per image; the saved model averages config.tta's views.
    model.tta = config.tta
    spec = replace(
        spec_for(config.architecture, config.image_size, run.classes, tta=config.tta, **metrics),
        generated_data=run.generated_data,
    )
    if config.metadata:
        from skinlesion.patient import spec_entry

        train_metadata = run.train_loader.dataset.metadata  # type: ignore[attr-defined]
        spec = replace(spec, metadata=spec_entry(train_metadata))
    if run.distributed.is_main:
        spec = fit_clinical(run, spec)
    return TrainResult(
        model=model,
        spec=spec,
        history=state.history,
        best_epoch=state.best_epoch,
        epochs_completed=state.epoch,
        stopped_early=state.finished and state.epoch < config.epochs,
        interrupted=interrupted,
        resumed_from_epoch=resumed_from,
        is_main=run.distributed.is_main,
    )
