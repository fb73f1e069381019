"""The inference runtimes the app can run a Predictor's network on, built once at start-up.

Each runtime maps a uint8 batch (N, S, S, 3) to an (N, C + 1) float32 array: the calibrated
class probabilities (columns 0..C-1) and the out-of-distribution score (column C, 0.0 when the
bundle has no OOD fit). It computes exactly what :meth:`skinlesion.models.Predictor.predict_with_embeddings`
and :meth:`~skinlesion.models.Predictor.ood_scores` compute (the same ``to_unit_float`` and
``normalize``, the same network, logits divided by the bundle's temperature, a softmax, the
Mahalanobis score of the features), only faster; :func:`split_output` separates the two:

- ``onnx``: the network, normalisation and softmax exported to ONNX and run by ONNX Runtime
  (fused convolutions, its own thread pool). The fastest on CPU; see docs/serving.md.
- ``torchscript``: the same graph traced and frozen with ``torch.jit.freeze``.
- ``torch``: the Predictor itself (eager PyTorch, its autocast precision): the reference.

``auto`` picks ``onnx`` when onnxruntime is installed, else ``torchscript``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from skinlesion.models import Predictor

log = logging.getLogger(__name__)

Runtime = Callable[[np.ndarray], np.ndarray]
ONNX_CACHE_ENV = "SKINLESION_ONNX_CACHE"  # where exported graphs are kept (default: temp dir)


class RuntimeUnavailableError(RuntimeError):
    """A runtime was asked for that this installation cannot build."""


def split_output(output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A runtime's (N, C + 1) output as (probabilities (N, C), OOD scores (N,))."""
    return output[:, :-1], output[:, -1]


def _serving_graph(predictor: Predictor) -> torch.nn.Module:
    """uint8 (N, S, S, 3) -> [calibrated probabilities | OOD score]: the Predictor as one module.

    The temperature and the OOD statistics are part of the graph, so the ONNX and TorchScript
    exports carry them and no runtime can forget them.
    """
    import torch

    from skinlesion.models import normalize, to_unit_float

    spec = predictor.spec
    stats = predictor.model.ood_stats
    temperature = float(spec.temperature)

    class ServingGraph(torch.nn.Module):
        def __init__(self, network: torch.nn.Module):
            super().__init__()
            self.network = network
            self.ood: torch.nn.Module | None = stats.module() if stats is not None else None

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            x = normalize(to_unit_float(images), spec.mean, spec.std)
            x = x.contiguous(memory_format=torch.channels_last)
            logits, features = self.network.forward_with_features(x)  # type: ignore[operator]
            probabilities = torch.softmax(logits.float() / temperature, dim=1)
            if self.ood is None:
                score = probabilities[:, :1] * 0.0  # zeros, batch size kept dynamic
            else:
                score = self.ood(features.float()).unsqueeze(1)
            return torch.cat([probabilities, score], dim=1)

    return ServingGraph(predictor.model).eval()


def _example(predictor: Predictor, batch: int = 2) -> torch.Tensor:
    import torch

    size = predictor.spec.image_size
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=generator)


def onnx_bytes(predictor: Predictor, cache_dir: Path | None = None) -> bytes:
    """The serving graph as ONNX (opset 17, dynamic batch), cached by the weights' hash.

    The cache lets the workers of one server, and restarts, skip the export (seconds).
    """
    import torch

    digest = hashlib.sha256()
    for name, tensor in predictor.model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(repr(predictor.spec).encode())
    if predictor.model.ood_stats is not None:
        digest.update(predictor.model.ood_stats.means.tobytes())
        digest.update(predictor.model.ood_stats.whitening.tobytes())
    digest.update(b"serving-graph-v2")  # probabilities + OOD score
    digest.update(torch.__version__.encode())
    default = os.environ.get(ONNX_CACHE_ENV) or Path(tempfile.gettempdir()) / "skinlesion-onnx"
    cache = Path(cache_dir or default)
    path = cache / f"{digest.hexdigest()[:32]}.onnx"
    if path.exists():
        log.info("Using the cached ONNX graph %s", path)
        return path.read_bytes()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="skinlesion-onnx-") as scratch:
        exported = Path(scratch) / "serving.onnx"
        # The tracer warns about the Python-level shape checks in to_unit_float: they hold for
        # every uint8 (N, S, S, 3) batch, which is all the graph is ever given.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _serving_graph(predictor),
                (_example(predictor),),
                exported,
                input_names=["images"],
                output_names=["scores"],
                dynamic_axes={"images": {0: "batch"}, "scores": {0: "batch"}},
                opset_version=17,
                dynamo=False,  # the TorchScript exporter: no onnxscript needed, dynamic batch
            )
        data = exported.read_bytes()
    try:
        cache.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{time.monotonic_ns()}.part")
        partial.write_bytes(data)
        partial.replace(path)  # atomic: several workers may export at once
    except OSError as error:
        log.warning("Could not cache the ONNX graph in %s: %s", cache, error)
    log.info("Exported the serving graph to ONNX in %.1f s", time.perf_counter() - started)
    return data


def build_onnx(predictor: Predictor, threads: int, cache_dir: Path | None = None) -> Runtime:
    """An ONNX Runtime session over the serving graph (CPU, ``threads`` intra-op threads)."""
    try:
        import onnxruntime as ort
    except ImportError as error:
        raise RuntimeUnavailableError(
            "Runtime 'onnx' needs onnxruntime (pip install 'skinlesion[serve]'). "
            "Accepted without it: torchscript, torch."
        ) from error
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(
        onnx_bytes(predictor, cache_dir), options, providers=["CPUExecutionProvider"]
    )

    def run(images: np.ndarray) -> np.ndarray:
        (scores,) = session.run(None, {"images": np.ascontiguousarray(images)})
        return np.asarray(scores, dtype=np.float32)

    return run


def build_torchscript(predictor: Predictor) -> Runtime:
    """The serving graph traced and frozen (constant-folded, conv+bn fused) with TorchScript."""
    import torch

    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(_serving_graph(predictor), (_example(predictor),))
        frozen = torch.jit.freeze(traced.eval())

    def run(images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out: Any = frozen(torch.from_numpy(np.ascontiguousarray(images)))
        return np.asarray(out.numpy(), dtype=np.float32)

    return run


def build_torch(predictor: Predictor) -> Runtime:
    """The Predictor as is (eager PyTorch, its own precision): the reference runtime."""

    def run(images: np.ndarray) -> np.ndarray:
        probabilities, embeddings = predictor.predict_with_embeddings(
            images, batch_size=max(1, len(images))
        )
        scores = predictor.ood_scores(embeddings)
        return np.concatenate([probabilities, scores[:, None]], axis=1).astype(np.float32)

    return run


def build_runtime(
    predictor: Predictor, kind: str = "auto", *, threads: int = 1, cache_dir: Path | None = None
) -> tuple[str, Runtime]:
    """Build the runtime ``kind`` (auto, onnx, torchscript or torch); returns (name, runtime)."""
    import torch

    torch.set_num_threads(threads)
    if kind == "auto":
        try:
            return "onnx", build_onnx(predictor, threads, cache_dir)
        except RuntimeUnavailableError:
            log.info("onnxruntime is not installed; using TorchScript")
            return "torchscript", build_torchscript(predictor)
    if kind == "onnx":
        return "onnx", build_onnx(predictor, threads, cache_dir)
    if kind == "torchscript":
        return "torchscript", build_torchscript(predictor)
    if kind == "torch":
        return "torch", build_torch(predictor)
    raise ValueError(f"Invalid runtime {kind!r}. Accepted: auto, onnx, torchscript, torch.")
