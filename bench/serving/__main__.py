"""Serving benchmark: the app against a naive FastAPI baseline, and a soak at 80% of the peak.

Both servers run in turn (never together) as subprocesses on loopback with the same model
bundle, and face the same load: closed-loop concurrency 1, 4, 16 and 64, ``--seconds`` each.
Writes one JSON line to ``bench/results/serving.jsonl`` and the table to
``bench/results/serving.md``. Examples::

    python -m bench.serving --quick                     # 5 s per level
    python -m bench.serving                             # 20 s per level
    python -m bench.serving --soak 600                  # peak probe, then 10 min at 80% of it
    python -m bench.serving --seconds 20 --soak 600     # the sweep's peak, then the soak
    python -m bench.serving --model-dir build/train/model --image-size 224
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.serving.loadgen import LoadResult, load

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS = REPO_ROOT / "bench" / "results"
LEVELS = (1, 4, 16, 64)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.serving", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="per concurrency level (default 20; with --soak, no sweep unless given)",
    )
    parser.add_argument("--quick", action="store_true", help="5 s per level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(LEVELS))
    parser.add_argument("--model-dir", type=Path, default=None, help="default: built here")
    parser.add_argument("--architecture", default="efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=96, help="of the built model")
    parser.add_argument("--images", type=Path, default=None, help="JPEG folder to send")
    parser.add_argument(
        "--runtime", default="auto", help="of the app: auto, onnx, torchscript, torch"
    )
    parser.add_argument("--workers", type=int, default=0, help="of the app (0: sized to CPUs)")
    parser.add_argument("--threads", type=int, default=0, help="of the app (0: sized to CPUs)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--soak", type=float, default=0.0, help="soak seconds (0: no soak)")
    parser.add_argument("--soak-rate", type=float, default=0.0, help="req/s (0: 80%% of peak)")
    parser.add_argument("--soak-concurrency", type=int, default=64)
    parser.add_argument(
        "--server-cpus", default="", help="pin the servers to these CPUs, e.g. 0-3 (default: all)"
    )
    parser.add_argument(
        "--client-cpus", default="", help="pin the load generator to these CPUs, e.g. 4-7"
    )
    parser.add_argument("--label", default="", help="free text stored with the results")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--name", default="", help="results file stem (default serving, or serving-soak)"
    )
    return parser


# --- the model and the images ---------------------------------------------------------------


def build_bundle(architecture: str, image_size: int, folder: Path) -> Path:
    """A bundle of ``architecture`` with ImageNet weights where they ship offline."""
    from skinlesion.labels import CLASSES
    from skinlesion.models import build_model, save_model, spec_for

    pretrained = "imagenet" if architecture == "efficientnet_lite0" else "none"
    model = build_model(architecture, len(CLASSES), pretrained, image_size)
    spec = spec_for(architecture, image_size, CLASSES)
    return save_model(model, spec, folder / "model")


def request_images(folder: Path | None, count: int = 32) -> tuple[list[bytes], str]:
    """JPEGs to send: ``folder``, else full-resolution HAM10000 (600x450) if present, else
    generated 600x450 lesions."""
    candidates = [folder] if folder else []
    real = os.environ.get("SKINLESION_REAL_DATA")
    if real:
        candidates.append(Path(real).parent / "ham10000-fullres" / "images")
    candidates.append(REPO_ROOT.parent / "shared" / "data" / "ham10000-fullres" / "images")
    for candidate in candidates:
        files = sorted(candidate.glob("*.jpg"))[:count] if candidate and candidate.is_dir() else []
        if files:
            return [f.read_bytes() for f in files], str(candidate)
    import io

    from PIL import Image

    from skinlesion.data.sample import render_lesion_image

    bodies = []
    for seed in range(count):
        square = render_lesion_image("NV" if seed % 2 else "MEL", size=600, seed=seed)
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(square[75:525])).save(buffer, "JPEG", quality=90)
        bodies.append(buffer.getvalue())
    return bodies, "generated 600x450"


# --- servers ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def rss_mib(self) -> float:
        """Resident memory of the server and its worker processes."""
        pids = [self.process.pid]
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        if children.exists():
            pids += [int(p) for p in children.read_text().split()]
        total = 0
        for pid in pids:
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        return total / 1024


def _wait_healthy(server: Server, timeout: float = 300.0) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited:\n{server.log.read_text()[-3000:]}")
        url = f"http://127.0.0.1:{server.port}/ping"
        with (
            contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
            urllib.request.urlopen(url, timeout=2) as answer,
        ):
            if answer.status == 200:
                return
        time.sleep(0.25)
    raise RuntimeError(f"{server.name} did not become healthy:\n{server.log.read_text()[-3000:]}")


def cpu_set(text: str) -> set[int]:
    """``"0-3,8"`` -> {0, 1, 2, 3, 8}; empty -> empty (no pinning)."""
    cpus: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


@contextlib.contextmanager
def running(
    name: str, command: list[str], env: dict[str, str], workdir: Path, cpus: set[int]
) -> Iterator[Server]:
    port = free_port()
    log = workdir / f"{name}.log"
    full = [part.replace("{port}", str(port)) for part in command]
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    with log.open("wb") as handle:
        process = subprocess.Popen(
            full,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            cwd=REPO_ROOT,
            preexec_fn=pin,  # only sched_setaffinity, before exec
        )
    server = Server(name, port, process, log)
    try:
        _wait_healthy(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def app_command(args: argparse.Namespace, model_dir: Path) -> list[str]:
    return [
        sys.executable, "-m", "skinlesion.serving", "--log-level", "WARNING",
        "--model-dir", str(model_dir), "--host", "127.0.0.1", "--port", "{port}",
        "--runtime", args.runtime, "--workers", str(args.workers), "--threads", str(args.threads),
        "--max-wait-ms", str(args.max_wait_ms), "--max-batch-size", str(args.max_batch_size),
    ]  # fmt: skip


def baseline_command() -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "bench.serving.baseline:create_app", "--factory",
        "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip


# --- measuring --------------------------------------------------------------------------------


def sweep(
    server: Server, bodies: list[bytes], levels: Sequence[int], seconds: float
) -> list[dict[str, Any]]:
    warm = load("127.0.0.1", server.port, bodies, concurrency=4, seconds=min(3.0, seconds))
    if warm.errors or not warm.completed:
        raise RuntimeError(
            f"{server.name} answered {warm.statuses} ({warm.transport_errors} transport errors) "
            f"during warm-up:\n{server.log.read_text()[-3000:]}"
        )
    rows = []
    for level in levels:
        result = load("127.0.0.1", server.port, bodies, concurrency=level, seconds=seconds)
        row = {"server": server.name, **result.summary(), "rss_mib": round(server.rss_mib(), 1)}
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)
    ping = load(
        "127.0.0.1", server.port, [b""], concurrency=16, seconds=min(3.0, seconds), path="/ping"
    )
    rows.append({"server": server.name, "route": "/ping", **ping.summary()})
    return rows


def soak(
    server: Server, bodies: list[bytes], seconds: float, rate: float, concurrency: int
) -> dict[str, Any]:
    """Paced load at ``rate`` for ``seconds``, in 10 s slices, sampling the server's RSS."""
    samples: list[tuple[float, float]] = []
    total = LoadResult(concurrency=concurrency, seconds=0.0)
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        part = load(
            "127.0.0.1",
            server.port,
            bodies,
            concurrency=concurrency,
            seconds=min(10.0, seconds - (time.perf_counter() - started)),
            rate=rate,
        )
        total.latencies_ms += part.latencies_ms
        total.transport_errors += part.transport_errors
        for status, count in part.statuses.items():
            total.statuses[status] = total.statuses.get(status, 0) + count
        total.seconds += part.seconds
        samples.append((round(time.perf_counter() - started, 1), round(server.rss_mib(), 1)))
        print(
            json.dumps({"soak_t": samples[-1][0], "rss_mib": samples[-1][1], **part.summary()}),
            file=sys.stderr,
            flush=True,
        )
    times = np.array([t for t, _ in samples])
    rss = np.array([r for _, r in samples])
    settled = rss[times >= min(60.0, times.max() / 4)] if len(rss) > 2 else rss
    settled_times = times[-len(settled) :]
    slope = float(np.polyfit(settled_times / 60, settled, 1)[0]) if len(settled) > 2 else 0.0
    return {
        "server": server.name,
        "target_rps": round(rate, 2),
        **total.summary(),
        "statuses": {str(k): v for k, v in sorted(total.statuses.items())},
        "rss_first_mib": float(rss[0]),
        "rss_settled_start_mib": float(settled[0]),
        "rss_end_mib": float(rss[-1]),
        "rss_max_mib": float(rss.max()),
        "rss_slope_mib_per_min": round(slope, 3),
        "rss_samples": samples,
    }


# --- reporting ----------------------------------------------------------------------------------


def environment(args: argparse.Namespace, spec: Any, images: str, cpus: int) -> dict[str, Any]:
    from skinlesion.serving.settings import ServingSettings, available_cpus

    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    resolved = ServingSettings(workers=args.workers, threads=args.threads).resolved(cpus)
    load_average = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "label": args.label,
        "cpus": cpus,
        "machine_cpus": available_cpus(),
        "server_cpus": args.server_cpus or "all",
        "client_cpus": args.client_cpus or "all",
        "cpu": cpu,
        "python": platform.python_version(),
        "load_average_before": load_average,
        "architecture": spec.architecture,
        "image_size": spec.image_size,
        "images": images,
        "app": {
            "runtime": args.runtime,
            "workers": resolved.workers,
            "threads": resolved.threads,
            "max_batch_size": args.max_batch_size,
            "max_wait_ms": args.max_wait_ms,
        },
        "baseline": "FastAPI, one request at a time, eager PyTorch fp32",
        "seconds_per_level": args.seconds,
    }


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        f"# Serving benchmark ({env['time']})",
        "",
        f"{env['architecture']} at {env['image_size']} px; servers on {env['cpus']} of "
        f"{env['machine_cpus']} CPUs ({env['cpu']}; server CPUs {env['server_cpus']}, client "
        f"CPUs {env['client_cpus']}); requests: {env['images']}; {env['seconds_per_level']:g} s "
        f"per level; client and server on one machine (loopback). App: runtime {env['app']['runtime']}, "
        f"{env['app']['workers']} worker(s) x {env['app']['threads']} thread(s), batches <= "
        f"{env['app']['max_batch_size']}, wait <= {env['app']['max_wait_ms']:g} ms. Baseline: "
        f"{env['baseline']}. Load average before: {env['load_average_before']}.",
        "",
    ]
    rows = [r for r in report.get("rows", []) if "route" not in r]
    if rows:
        by = {(r["server"], r["concurrency"]): r for r in rows}
        lines += [
            "| concurrency | app req/s | app p50 ms | app p99 ms | baseline req/s | baseline p50 ms "
            "| baseline p99 ms | speed-up | errors (app/baseline) |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for level in sorted({r["concurrency"] for r in rows}):
            app, base = by.get(("app", level)), by.get(("baseline", level))

            def cell(row: dict[str, Any] | None, key: str) -> str:
                return f"{row[key]:g}" if row else "-"

            speedup = f"{app['rps'] / base['rps']:.2f}x" if app and base and base["rps"] else "-"
            errors = f"{cell(app, 'errors')}/{cell(base, 'errors')}"
            lines.append(
                f"| {level} | {cell(app, 'rps')} | {cell(app, 'p50_ms')} | {cell(app, 'p99_ms')} | "
                f"{cell(base, 'rps')} | {cell(base, 'p50_ms')} | {cell(base, 'p99_ms')} | "
                f"{speedup} | {errors} |"
            )
        pings = [r for r in report.get("rows", []) if r.get("route") == "/ping"]
        if pings:
            lines += [
                "",
                "`GET /ping` at concurrency 16 (the app framework alone): "
                + ", ".join(
                    f"{r['server']} {r['rps']:g} req/s (p99 {r['p99_ms']:g} ms)" for r in pings
                )
                + ".",
            ]
        goal = by.get(("app", 16)), by.get(("baseline", 16))
        if all(goal):
            app16, base16 = goal
            lines += [
                "",
                f"Goal at concurrency 16: >= 3x the baseline's throughput with p99 <= 150 ms. "
                f"Measured: {app16['rps'] / max(base16['rps'], 1e-9):.2f}x, p99 {app16['p99_ms']:g} ms.",
            ]
    if "soak" in report:
        soaked = report["soak"]
        lines += [
            "",
            f"Soak: {soaked['seconds']:g} s paced at {soaked['target_rps']:g} req/s (80% of the "
            f"peak {report.get('peak_rps', 0):g}): {soaked['requests']} requests at "
            f"{soaked['rps']:g} req/s, {soaked['errors']} errors, p50 {soaked['p50_ms']:g} ms, "
            f"p99 {soaked['p99_ms']:g} ms; RSS {soaked['rss_first_mib']:g} MiB at the first "
            f"sample, {soaked['rss_settled_start_mib']:g} -> {soaked['rss_end_mib']:g} MiB after "
            f"warm-up (max {soaked['rss_max_mib']:g}), slope {soaked['rss_slope_mib_per_min']:g} "
            "MiB/min.",
        ]
    return "\n".join(lines) + "\n"


def write(report: dict[str, Any], out: Path, name: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / f"{name}.jsonl").open("a") as handle:
        handle.write(json.dumps(report) + "\n")
    (out / f"{name}.md").write_text(markdown(report))
    print(markdown(report))


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.quick:
        args.seconds = 5.0
    if args.seconds is None:
        args.seconds = 0.0 if args.soak > 0 else 20.0
    from skinlesion.artifacts import ModelSpec

    with tempfile.TemporaryDirectory(prefix="bench-serving-") as scratch:
        workdir = Path(scratch)
        model_dir = args.model_dir or build_bundle(args.architecture, args.image_size, workdir)
        spec = ModelSpec.read(model_dir)
        bodies, images = request_images(args.images)
        from skinlesion.serving.settings import available_cpus

        server_cpus, client_cpus = cpu_set(args.server_cpus), cpu_set(args.client_cpus)
        report: dict[str, Any] = {
            "environment": environment(args, spec, images, len(server_cpus) or available_cpus()),
            "rows": [],
        }
        if client_cpus:
            os.sched_setaffinity(0, client_cpus)
        python_path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        env = {"SKINLESION_ONNX_CACHE": str(workdir / "onnx"), "PYTHONPATH": python_path}
        peak = 0.0
        if args.seconds > 0 and args.concurrency:
            with running("app", app_command(args, model_dir), env, workdir, server_cpus) as app:
                report["rows"] += sweep(app, bodies, args.concurrency, args.seconds)
            if not args.skip_baseline:
                base_env = {**env, "BENCH_MODEL_DIR": str(model_dir)}
                with running(
                    "baseline", baseline_command(), base_env, workdir, server_cpus
                ) as base:
                    report["rows"] += sweep(base, bodies, args.concurrency, args.seconds)
            peak = max(
                (r["rps"] for r in report["rows"] if r["server"] == "app" and "route" not in r),
                default=0.0,
            )
        if args.soak > 0:
            with running("app", app_command(args, model_dir), env, workdir, server_cpus) as app:
                if not args.soak_rate and not peak:
                    probe = load("127.0.0.1", app.port, bodies, concurrency=16, seconds=15.0)
                    peak = probe.summary()["rps"]  # type: ignore[assignment]
                rate = args.soak_rate or 0.8 * peak
                report["peak_rps"] = peak
                report["soak"] = soak(app, bodies, args.soak, rate, args.soak_concurrency)
            report["environment"]["soak_seconds"] = args.soak
        soak_only = args.soak > 0 and not report["rows"]
        write(report, args.out, args.name or ("serving-soak" if soak_only else "serving"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
