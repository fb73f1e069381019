"""What ``make demo`` shows a person: a short story, and a failure that stops at once.

The failure test is the real thing: ``python -m pipelines.demo`` on an ISIC folder where one
image in eight is broken (above the 5 % that validation tolerates). The preprocess job must run
once (a data error cannot succeed on retry), and the job's own message must be the last line.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.console import ANSI, ConsoleState, story_line

pytestmark = pytest.mark.slow


def test_the_console_keeps_stages_progress_and_failures_and_drops_the_rest() -> None:
    state = ConsoleState()
    lines = [
        "\x1b[1;96mExecuting task 'preprocess'\x1b[0m",
        '    "executor_input": {"inputs": {}}',
        "[KFP Executor 2026-12-05 08:07:56,001 INFO]: Looking for component `preprocess`",
        "2026-12-05 08:07:56,100 INFO skinlesion.progress: check: 500/1000 images (50%), "
        "900 images/s, ETA 1 s",
        "2026-12-05 08:07:56,200 INFO skinlesion.backends.local.jobs: job preprocess-x: python",
        "2026-12-05 08:07:56,300 ERROR skinlesion.contract: Preprocessing failed: "
        "DataValidationError: 8 of 64 rows (12.5%) are invalid",
        "Task 'preprocess' finished with status \x1b[91mFAILURE\x1b[0m",
    ]
    shown = [story_line(line, state, float(n)) for n, line in enumerate(lines)]
    assert shown == [
        "-> preprocess",
        None,
        None,
        "  check: 500/1000 images (50%), 900 images/s, ETA 1 s",
        None,
        "  Preprocessing failed: DataValidationError: 8 of 64 rows (12.5%) are invalid",
        "   preprocess: FAILURE in 6.0 s",
    ]
    assert state.failures == [
        "Preprocessing failed: DataValidationError: 8 of 64 rows (12.5%) are invalid"
    ]


def test_a_data_error_fails_once_with_its_message_last(tmp_path: Path, repo_root: Path) -> None:
    from skinlesion.data.sample import write_sample

    data = tmp_path / "isic"
    write_sample(data, n_per_class=8, image_size=48, seed=3)
    images = sorted((data / "images").glob("*.jpg"))
    broken = images[:: len(images) // 8][:8]  # 8 of 64: 12.5 %
    for path in broken:
        path.write_bytes(b"this is not a JPEG")
    workdir = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.demo", "--workdir", str(workdir), "--data", str(data)],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "DataValidationError" in last and "12.5" in last, done.stderr
    assert "Traceback" not in done.stdout + done.stderr  # the traceback is in the log file
    # One attempt: one preprocess job ran, and kfp.local started the task once.
    jobs = sorted(p.name for p in (workdir / "local" / "jobs").iterdir())
    assert len(jobs) == 1 and jobs[0].startswith("preprocess"), jobs
    log = ANSI.sub("", (workdir / "demo.log").read_text())
    assert log.count("Executing task 'preprocess'") == 1 and "Traceback" in log
    assert len((done.stdout + done.stderr).splitlines()) < 30


def test_the_demo_reports_a_refused_image_instead_of_failing(tmp_path: Path) -> None:
    """An endpoint that answers ``assessable: false`` (over real HTTP) is shown with its reason."""
    import http.server
    import json
    import threading

    from pipelines.demo import classify_over_http

    answers = iter(
        [
            {"predictions": [{"assessable": False, "reason": "blank frame: std 0.0 < 4"}]},
            {
                "predictions": [
                    {"assessable": True, "top_class": "NV", "probabilities": {"NV": 0.9}}
                ]
            },
        ]
    )

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps(next(answers)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        images = []
        for name in ("a", "b"):
            path = tmp_path / f"{name}.jpg"
            path.write_bytes(b"\xff\xd8not-really")
            images.append((path, "NV"))
        results = classify_over_http(f"http://127.0.0.1:{server.server_port}", images)
    finally:
        server.shutdown()
    (first, refused, prob), second = results
    assert first == "a"
    assert refused == "refused: blank frame: std 0.0 < 4" and prob != prob  # NaN
    assert second == ("b", "NV", 0.9)
