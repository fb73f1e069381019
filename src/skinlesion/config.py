"""Typed job settings, validated once at the edge and passed down.

SageMaker hands hyperparameters to a training container as strings; ``TrainConfig`` converts
both ways so nobody stringifies by hand.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

ARCHITECTURES = ("efficientnet_lite0", "mobilenet_v2", "efficientnet_b0", "resnet50", "densenet121")
PRETRAINED = ("auto", "imagenet", "none")
BALANCING = ("weighted_loss", "logit_adjust", "sampler", "none")
SCHEDULES = ("cosine", "onecycle")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# auto: CUDA when torch sees it, and a hard error when the job was given GPUs torch cannot use
# (a SageMaker GPU instance type, SM_NUM_GPUS); cuda: a GPU or a hard error.
DEVICES = ("auto", "cpu", "cuda")
# Test-time augmentation of the saved model: 1, 4 (flips) or 8 (dihedral) views per image.
TTA_VIEWS = ("none", "flips", "dihedral")

# Shared by preprocessing and training (the pipeline passes one image_size and one seed to both).
DEFAULT_IMAGE_SIZE = 96
DEFAULT_SEED = 42

Architecture = Literal[
    "efficientnet_lite0", "mobilenet_v2", "efficientnet_b0", "resnet50", "densenet121"
]


class ConfigError(ValueError):
    """A setting has a value outside what is accepted; the message names both."""


def _choice(name: str, value: str, accepted: tuple[str, ...]) -> None:
    if value not in accepted:
        raise ConfigError(f"Invalid {name} {value!r}. Accepted: {', '.join(accepted)}.")


def _positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"Invalid {name} {value!r}: must be {bound}.")


@dataclass(frozen=True)
class PreprocessConfig:
    """Settings of the preprocessing job."""

    image_size: int = DEFAULT_IMAGE_SIZE
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = DEFAULT_SEED
    max_invalid_fraction: float = 0.05
    workers: int = 0  # 0: one per core

    def __post_init__(self) -> None:
        _positive("image_size", self.image_size)
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0 < value < 0.5:
                raise ConfigError(f"Invalid {name} {value!r}: must be between 0 and 0.5.")
        if not 0 <= self.max_invalid_fraction <= 1:
            raise ConfigError(
                f"Invalid max_invalid_fraction {self.max_invalid_fraction!r}: must be in [0, 1]."
            )
        _positive("workers", self.workers, allow_zero=True)


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of the training job (SageMaker passes them as strings)."""

    architecture: str = "efficientnet_lite0"
    pretrained: str = "auto"
    epochs: int = 8
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    image_size: int = DEFAULT_IMAGE_SIZE
    schedule: str = "onecycle"
    balancing: str = "weighted_loss"
    label_smoothing: float = 0.0
    freeze_stages: int = 0  # early stages (stem first) kept at their pretrained weights
    tta: str = "none"  # test-time views the saved model averages (validation during training: none)
    # Patient metadata (age, sex, anatomic site; skinlesion.patient) added to the image logits.
    # metadata_dropout: the share of training images shown as of an unknown patient, which
    # trains the image-only fallback that requests without metadata get.
    metadata: bool = False
    metadata_dropout: float = 0.2
    # Weight averaging: an exponential moving average of the weights (BatchNorm statistics
    # included), updated after every optimizer step, is what validation scores, selection keeps
    # and the model ships. Each step keeps ema_decay of the average: it spans about
    # 1 / (1 - ema_decay) steps. 0 turns it off (the raw weights of each epoch).
    ema_decay: float = 0.0
    patience: int = 5
    # Early stopping reads an exponential moving average of validation balanced accuracy:
    # smoothed = s * smoothed + (1 - s) * this epoch's; 0 reads the raw per-epoch figure.
    early_stopping_smoothing: float = 0.5
    seed: int = DEFAULT_SEED
    deterministic: bool = False
    precision: str = "auto"
    device: str = "auto"
    channels_last: bool = True
    num_workers: int = 0
    augment: bool = True
    max_steps_per_epoch: int = 0  # 0: the whole training split each epoch
    # Training instances (ResourceConfig.InstanceCount): more than one runs torchrun across the
    # hosts; batch_size stays per process, so the global batch grows with the instances.
    instance_count: int = 1
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _choice("architecture", self.architecture, ARCHITECTURES)
        _choice("pretrained", self.pretrained, PRETRAINED)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("balancing", self.balancing, BALANCING)
        _choice("precision", self.precision, PRECISIONS)
        _choice("tta", self.tta, TTA_VIEWS)
        _choice("device", self.device, DEVICES)
        for name in ("epochs", "batch_size", "learning_rate", "image_size"):
            _positive(name, getattr(self, name))
        for name in ("weight_decay", "label_smoothing", "patience", "num_workers", "freeze_stages"):
            _positive(name, getattr(self, name), allow_zero=True)
        if not 0 <= self.metadata_dropout < 1:
            raise ConfigError(
                f"Invalid metadata_dropout {self.metadata_dropout!r}: must be in [0, 1)."
            )
        if not (self.ema_decay == 0 or 0.5 <= self.ema_decay < 1):
            raise ConfigError(
                f"Invalid ema_decay {self.ema_decay!r}: 0 (off) or in [0.5, 1) (the share of "
                "the average kept at each step; 0.99-0.9999 are usual)."
            )
        if self.label_smoothing >= 1:
            raise ConfigError(
                f"Invalid label_smoothing {self.label_smoothing!r}: must be in [0, 1)."
            )
        if self.freeze_stages and self.pretrained == "none":
            raise ConfigError(
                "Invalid freeze_stages with pretrained=none: frozen stages would keep random "
                "weights. Use pretrained=auto or imagenet, or freeze_stages=0."
            )
        _positive("max_steps_per_epoch", self.max_steps_per_epoch, allow_zero=True)
        _positive("instance_count", self.instance_count)
        if not 0 <= self.early_stopping_smoothing < 1:
            raise ConfigError(
                f"Invalid early_stopping_smoothing {self.early_stopping_smoothing!r}: must be in "
                "[0, 1) (0: the raw per-epoch figure)."
            )

    def to_hyperparameters(self) -> dict[str, str]:
        """The SageMaker form: every value a string (JSON for non-strings)."""
        out: dict[str, str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "extra":
                out.update(value)
            else:
                out[f.name] = value if isinstance(value, str) else json.dumps(value)
        return out

    @classmethod
    def from_hyperparameters(cls, hyperparameters: dict[str, str]) -> TrainConfig:
        """Parse SageMaker's string hyperparameters; unknown names are kept in ``extra``."""
        return _from_strings(cls, hyperparameters)

    @classmethod
    def from_mapping(
        cls, values: Mapping[str, Any], *, accepted: Collection[str] | None = None, source: str = ""
    ) -> TrainConfig:
        """Validate typed values (a YAML recipe): unknown names are refused, not kept.

        ``accepted`` narrows the names further (those a pipeline can pass on); the rest keep
        their defaults. ``source`` names where the values came from, for the error message.
        """
        names = [f.name for f in dataclasses.fields(cls) if f.name != "extra"]
        allowed = [n for n in names if accepted is None or n in accepted]
        where = f" in {source}" if source else ""
        unknown = sorted(k for k in values if k not in allowed)
        if unknown:
            raise ConfigError(
                f"Unknown training settings {unknown}{where}. Accepted: {', '.join(allowed)}."
            )
        strings = {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}
        try:
            return _from_strings(cls, strings)
        except ConfigError as error:
            raise ConfigError(f"{error} ({source})" if source else str(error)) from None


def _from_strings(cls: Any, values: dict[str, str]) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
    kwargs: dict[str, Any] = {}
    extra: dict[str, str] = {}
    for key, raw in values.items():
        if key not in known:
            extra[key] = raw
            continue
        kwargs[key] = _coerce(key, raw, hints[key])
    if "extra" in {f.name for f in dataclasses.fields(cls)}:
        kwargs["extra"] = extra
    elif extra:
        raise ConfigError(
            f"Unknown settings {sorted(extra)}. Accepted: {', '.join(sorted(known))}."
        )
    return cls(**kwargs)


def _coerce(name: str, raw: str, hint: Any) -> Any:
    target = hint if hint in (int, float, bool, str) else str
    if get_args(hint):
        target = str
    if target is str:
        return raw if not (raw.startswith('"') and raw.endswith('"')) else json.loads(raw)
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        if target is bool and raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        raise ConfigError(f"Invalid {name} {raw!r}: expected a {target.__name__}.") from None
    if target is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"Invalid {name} {raw!r}: expected true or false.")
        return value
    if target is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ConfigError(f"Invalid {name} {raw!r}: expected a {target.__name__}.")
    if target is int and not isinstance(value, int):
        raise ConfigError(f"Invalid {name} {raw!r}: expected an integer.")
    return target(value)
