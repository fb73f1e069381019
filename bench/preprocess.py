"""Preprocessing images/s on real 600x450 JPEGs: a naive PIL loop against our decode path.

Baseline: for each file ``Image.open(path).convert("RGB").resize((S, S)).save(out.jpg)``, one
process, the way a first script does it. Ours: ``skinlesion.data.images.load_images`` (libjpeg
DCT-domain downscaling through ``Image.draft``, one antialiased resize from the centre square,
one process per core) into one uint8 array, saved with ``np.save`` as the preprocess job does.
Also ours on one process, to separate the decode gain from the parallel gain.

The 150 full-resolution HAM10000 JPEGs are repeated to ``--images`` paths; all paths are read
once before timing, so every path reads the file from the page cache. Run::

    python -m bench.preprocess --images 3000 --image-size 224
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.results import RESULTS_DIR, fullres_dir, write_result, write_skipped
from skinlesion.data.images import load_images, resolve_workers

log = logging.getLogger("bench.preprocess")
NAME = "preprocess"
TITLE = "Preprocessing images/s: 600x450 JPEG to a square training image"


def naive_loop(paths: list[Path], size: int, out_dir: Path) -> None:
    """Open, convert, resize, save: one image after another."""
    for i, path in enumerate(paths):
        image = Image.open(path).convert("RGB")
        image = image.resize((size, size))
        image.save(out_dir / f"{i}.jpg")


def ours(paths: list[Path], size: int, out_dir: Path, workers: int) -> None:
    """The preprocess job's decode: parallel drafted decode into one array, then np.save."""
    loaded = load_images(paths, size, workers=workers, progress=False)
    if loaded.errors:
        raise RuntimeError(f"{len(loaded.errors)} images failed to decode: {loaded.errors}")
    np.save(out_dir / "images.npy", loaded.images)


def timed(fn: Any, *args: Any) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def run(source: Path, count: int, size: int, baseline_count: int) -> list[dict[str, Any]]:
    files = sorted(source.rglob("*.jpg"))
    paths = [files[i % len(files)] for i in range(count)]
    for path in files:  # warm the page cache: the benchmark times decoding, not the disk
        path.read_bytes()
    cores = resolve_workers(0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-preprocess-") as tmp:
        out = Path(tmp)
        baseline_paths = paths[:baseline_count]
        (out / "naive").mkdir()
        (out / "one").mkdir()
        (out / "all").mkdir()
        naive_loop(files[:8], size, out / "naive")  # import and first-call costs off the clock
        seconds = {
            "naive": timed(naive_loop, baseline_paths, size, out / "naive"),
            "one": timed(ours, paths, size, out / "one", 1),
            "all": timed(ours, paths, size, out / "all", cores),
        }
        naive_rate = len(baseline_paths) / seconds["naive"]
        for key, label, n, procs in (
            ("naive", "naive PIL open/convert/resize/save loop", len(baseline_paths), 1),
            ("one", "ours: drafted decode + np.save, 1 process", count, 1),
            ("all", f"ours: drafted decode + np.save, {cores} processes", count, cores),
        ):
            rate = n / seconds[key]
            rows.append(
                {
                    "path": label,
                    "processes": procs,
                    "images": n,
                    "seconds": seconds[key],
                    "images_per_s": rate,
                    "speedup": rate / naive_rate,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=3000, help="paths timed for our path")
    parser.add_argument(
        "--baseline-images", type=int, default=1500, help="paths timed for the naive loop"
    )
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS_DIR, help="where the results go"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    source, reason = fullres_dir()
    if source is None:
        print(
            write_skipped(NAME, title=TITLE, reason=reason, results_dir=args.results_dir),
            flush=True,
        )
        return
    log.info("decoding %s repeated to %d paths at %d px", source, args.images, args.image_size)
    rows = run(source, args.images, args.image_size, min(args.baseline_images, args.images))
    best = rows[-1]
    table = write_result(
        NAME,
        results_dir=args.results_dir,
        title=f"{TITLE} ({args.image_size} px)",
        rows=rows,
        columns=["path", "processes", "images", "seconds", "images_per_s", "speedup"],
        summary={
            "source": f"{source} ({len(list(source.rglob('*.jpg')))} JPEGs, repeated)",
            "goal": ">= 3x and >= 1,000 images/s on 2 cores",
            "speedup": round(best["speedup"], 2),
            "images_per_s": round(best["images_per_s"]),
            "cores": os.cpu_count(),
        },
    )
    print(table, flush=True)


if __name__ == "__main__":
    main()
