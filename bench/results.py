"""Shared plumbing of the benchmarks: machine facts, real-data lookup, JSON-line + Markdown output.

Each benchmark appends one JSON line per run to ``bench/results/<name>.jsonl`` (the newest
``KEEP_LINES`` are kept, so the folder stays small) and rewrites ``bench/results/<name>.md``
with the latest run's table. A part that needs the real data and cannot find it writes a
``skipped`` record with the reason instead of failing.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
REAL_DATA_ENV = "SKINLESION_REAL_DATA"
FULLRES_ENV = "SKINLESION_REAL_FULLRES"
KEEP_LINES = 20


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
            cwd=REPO_ROOT,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (other work on the machine inflates timings)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def machine() -> dict[str, Any]:
    """Facts that make a timing comparable: CPU, cores, torch, threads, load, commit."""
    facts: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "load_average": load_average(),
        "python": platform.python_version(),
        "commit": _git_commit(),
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        import torch

        facts["torch"] = torch.__version__
        facts["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            facts["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return facts


def _default_real_dir(name: str) -> Path:
    return REPO_ROOT.parent / "shared" / "data" / name


def real_data_dir() -> tuple[Path | None, str]:
    """The HAM10000 folder (``SKINLESION_REAL_DATA`` or ../shared/data/ham10000), or a reason."""
    value = os.environ.get(REAL_DATA_ENV)
    path = Path(value) if value else _default_real_dir("ham10000")
    if (path / "labels.csv").exists():
        return path, ""
    return None, f"no labels.csv in {path} (set {REAL_DATA_ENV} to the HAM10000 folder)"


def fullres_dir() -> tuple[Path | None, str]:
    """The 600x450 JPEG folder (``SKINLESION_REAL_FULLRES`` or ../shared/data/ham10000-fullres)."""
    value = os.environ.get(FULLRES_ENV)
    path = Path(value) if value else _default_real_dir("ham10000-fullres")
    found = sorted(path.rglob("*.jpg")) if path.is_dir() else []
    if found:
        return path, ""
    return None, f"no JPEGs under {path} (set {FULLRES_ENV} to the full-resolution folder)"


def median_seconds(fn: Callable[[], object], *, steps: int, warmup: int) -> list[float]:
    """Wall seconds of ``steps`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return times


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub Markdown table of ``columns`` from ``rows`` (missing cells left empty)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
        return "" if value is None else str(value)

    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_result(
    name: str,
    *,
    title: str,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    summary: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
    results_dir: Path | None = None,
) -> str:
    """Append the run's JSON line to ``<name>.jsonl``, rewrite ``<name>.md``; return the table."""
    folder = results_dir or RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    facts = machine()
    record: dict[str, Any] = {
        "benchmark": name,
        "machine": facts,
        "summary": dict(summary or {}),
        "rows": [dict(r) for r in rows],
    }
    _append_line(folder / f"{name}.jsonl", record)
    lines = [
        f"# {title}",
        "",
        f"{facts['time']}, commit {facts['commit'] or 'unknown'}: {facts['cpu']}, "
        f"{facts['cores']} cores, load average {facts['load_average']}"
        + (f", GPU {facts['gpu']}" if "gpu" in facts else ""),
        "",
        markdown_table(rows, columns),
    ]
    if summary:
        lines += ["", *[f"- {k}: {_plain(v)}" for k, v in summary.items()]]
    if notes:
        lines += ["", *notes]
    (folder / f"{name}.md").write_text("\n".join(lines) + "\n")
    log.info("Wrote %s/%s.jsonl and %s.md", folder, name, name)
    return "\n".join(lines[4:])


def write_skipped(name: str, *, title: str, reason: str, results_dir: Path | None = None) -> str:
    """Record that a benchmark part did not run, and why."""
    folder = results_dir or RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    _append_line(
        folder / f"{name}.jsonl",
        {"benchmark": name, "machine": machine(), "skipped": reason},
    )
    (folder / f"{name}.md").write_text(f"# {title}\n\nskipped: {reason}\n")
    return f"{name}: skipped: {reason}"


def _plain(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _append_line(path: Path, record: Mapping[str, Any]) -> None:
    lines = path.read_text().splitlines() if path.exists() else []
    lines.append(json.dumps(record, sort_keys=True))
    path.write_text("\n".join(lines[-KEEP_LINES:]) + "\n")
