"""The pipeline's own stage times in ``make demo``: the job.json records its steps write.

Each step of the pipeline (preprocess, train, evaluate) writes ``job.json`` next to its output
artifact with the job's ``wall_seconds`` and metrics. This reads the newest run under each demo
work directory and tabulates stage times, the training images/s and the test-split scores. With
``--run-demo`` it first runs ``pipelines.demo`` on the generated sample (the fresh-clone demo)
and times it end to end. Run::

    python -m bench.stages --run-demo --workdir build/bench-demo --also build/demo-real
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.results import REPO_ROOT, RESULTS_DIR, write_result, write_skipped
from skinlesion.labels import CLASSES

log = logging.getLogger("bench.stages")
NAME = "demo_stages"
TITLE = "Stage wall times of `make demo` (from the steps' job.json records)"
RECORD = "job.json"


def latest_run(workdir: Path) -> Path | None:
    """The newest pipeline run folder under ``workdir/pipeline-root`` (None when there is none)."""
    root = workdir / "pipeline-root"
    runs = (
        [p for p in root.glob("*") if p.is_dir() and any(p.rglob(RECORD))] if root.is_dir() else []
    )
    return max(runs, key=lambda p: p.stat().st_mtime) if runs else None


def stage_records(run_dir: Path) -> dict[str, dict[str, Any]]:
    """``{stage: job.json payload}`` for every step of one run that wrote a record."""
    records: dict[str, dict[str, Any]] = {}
    for path in sorted(run_dir.rglob(RECORD)):
        payload = json.loads(path.read_text())
        if "wall_seconds" in payload:
            records[path.parent.parent.name] = payload
    return records


def summarise(label: str, run_dir: Path, demo_seconds: float | None) -> list[dict[str, Any]]:
    """One row per stage plus a total row; train and evaluate rows carry their key metrics."""
    rows: list[dict[str, Any]] = []
    total = 0.0
    for stage, payload in stage_records(run_dir).items():
        seconds = float(payload["wall_seconds"])
        total += seconds
        metrics = payload.get("metrics") or {}
        detail = ""
        if "train_images_per_sec" in metrics:
            detail = (
                f"{metrics['train_images_per_sec']:.1f} training images/s, best epoch "
                f"{metrics.get('best_epoch', 0):.0f} of {metrics.get('epochs_completed', 0):.0f}"
            )
        elif "balanced_accuracy" in metrics:
            sensitivities = ", ".join(
                f"{c} {metrics[f'sensitivity_{c}']:.2f}"
                for c in CLASSES
                if metrics.get(f"sensitivity_{c}") is not None
            )
            detail = (
                f"balanced accuracy {metrics['balanced_accuracy']:.4f} on the test split; "
                f"sensitivity {sensitivities}"
            )
        rows.append({"demo": label, "stage": stage, "seconds": seconds, "detail": detail})
    rows.append({"demo": label, "stage": "sum of the stages", "seconds": total, "detail": ""})
    if demo_seconds is not None:
        rows.append(
            {
                "demo": label,
                "stage": "whole demo (wall clock)",
                "seconds": demo_seconds,
                "detail": "kfp.local start-up, register, deploy, HTTP checks included",
            }
        )
    return rows


def run_demo(workdir: Path, data: str | None, architecture: str | None) -> float:
    """Run ``pipelines.demo`` in a subprocess; its output goes to ``workdir/demo.log``."""
    workdir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pipelines.demo", "--workdir", str(workdir)]
    if data:
        command += ["--data", data]
    if architecture:
        command += ["--architecture", architecture]
    log.info("running %s (log: %s)", " ".join(command), workdir / "demo.log")
    started = time.perf_counter()
    with (workdir / "demo.log").open("w") as out:
        subprocess.run(
            command,
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
            env=os.environ.copy(),
        )
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "build" / "bench-demo")
    parser.add_argument("--run-demo", action="store_true", help="run the sample demo first")
    parser.add_argument(
        "--also", type=Path, nargs="*", default=[], help="more demo work directories to read"
    )
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS_DIR, help="where the results go"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    demo_seconds = run_demo(args.workdir, None, None) if args.run_demo else None
    rows: list[dict[str, Any]] = []
    missing = []
    for index, workdir in enumerate([args.workdir, *args.also]):
        run_dir = latest_run(workdir)
        if run_dir is None:
            missing.append(str(workdir))
            continue
        rows += summarise(workdir.name, run_dir, demo_seconds if index == 0 else None)
    if not rows:
        reason = f"no demo run found under {', '.join(missing)}; run make demo first"
        print(
            write_skipped(NAME, title=TITLE, reason=reason, results_dir=args.results_dir),
            flush=True,
        )
        return
    table = write_result(
        NAME,
        results_dir=args.results_dir,
        title=TITLE,
        rows=rows,
        columns=["demo", "stage", "seconds", "detail"],
        summary={"not found": ", ".join(missing)} if missing else None,
    )
    print(table, flush=True)


if __name__ == "__main__":
    main()
