"""Which inference runtime to serve with: ms per image by batch size, on the same model.

Compares the app's runtimes (ONNX Runtime, TorchScript frozen, eager PyTorch fp32) and eager
PyTorch with bf16 autocast + channels_last (the Predictor's ``auto`` precision on CPUs with
native bf16). Example::

    python -m bench.serving.runtimes --image-size 96 224 --threads 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np


def time_runtime(
    run: Callable[[np.ndarray], np.ndarray], images: np.ndarray, repeats: int
) -> float:
    """Median ms per call after two warm-up calls."""
    run(images)
    run(images)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run(images)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serving.runtimes", description=__doc__)
    parser.add_argument("--architecture", default="efficientnet_lite0")
    parser.add_argument("--image-size", type=int, nargs="+", default=[96, 224])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="append JSON lines here")
    args = parser.parse_args(argv)

    import torch

    from bench.serving.__main__ import build_bundle
    from skinlesion.models import Predictor, cpu_has_fast_bf16
    from skinlesion.serving.runtime import build_runtime

    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for size in args.image_size:
            bundle = build_bundle(args.architecture, size, Path(scratch) / str(size))
            fp32 = Predictor.load(bundle, precision="fp32")
            runtimes: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
            for kind in ("onnx", "torchscript", "torch"):
                runtimes[kind if kind != "torch" else "eager fp32"] = build_runtime(
                    fp32, kind, threads=args.threads, cache_dir=Path(scratch) / "onnx"
                )[1]
            if cpu_has_fast_bf16():
                bf16 = Predictor.load(bundle, precision="bf16")
                runtimes["eager bf16 channels_last"] = build_runtime(bf16, "torch")[1]
            rng = np.random.default_rng(0)
            for batch in args.batch_sizes:
                images = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
                for name, run in runtimes.items():
                    ms = time_runtime(run, images, args.repeats)
                    row = {
                        "architecture": args.architecture,
                        "image_size": size,
                        "batch": batch,
                        "runtime": name,
                        "threads": args.threads,
                        "ms_per_batch": round(ms, 2),
                        "ms_per_image": round(ms / batch, 3),
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
    print("\n| size | batch | " + " | ".join(dict.fromkeys(r["runtime"] for r in rows)) + " |")
    names = list(dict.fromkeys(r["runtime"] for r in rows))
    print("| ---: | ---: | " + " | ".join("---:" for _ in names) + " |")
    for size in args.image_size:
        for batch in args.batch_sizes:
            cells = [
                f"{r['ms_per_image']:g}"
                for name in names
                for r in rows
                if r["runtime"] == name and r["image_size"] == size and r["batch"] == batch
            ]
            print(f"| {size} | {batch} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
