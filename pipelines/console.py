"""What ``make demo`` shows while the pipeline runs: a line per stage, progress and key figures.

Everything the run writes (kfp.local's executor dumps and warnings, every job's log) goes to a
log file; a reader thread follows the file and echoes only the lines a person wants to see:
stage start and end, progress with ETA (the ``skinlesion.progress`` logger), each epoch's
figures, the headline metric, and a job's failure reason. ``--verbose`` echoes everything.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

ANSI = re.compile(r"\x1b\[[0-9;]*m")
TASK_START = re.compile(r"Executing task '?([\w-]+)'?")
TASK_END = re.compile(r"Task '?([\w-]+)'? finished with status (\w+)")
# (logger, message) of a job's log line, whatever prefix kfp.local put before it.
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (\w+) ([\w.]+): (.*)$")
SHOWN_LOGGERS = {
    "skinlesion.progress": "  ",
    "skinlesion.steps": "  ",
}
EPOCH = re.compile(r"^epoch=\d+ ")
# The tasks that only write a record or wire the graph are not stages a person waits for.
QUIET_TASKS = ("exit-status", "record-decision", "condition", "exit-handler", "training")


@dataclass
class ConsoleState:
    """What the reader saw: running stages, finished ones with their time, the failure lines."""

    started: dict[str, float] = field(default_factory=dict)
    finished: dict[str, tuple[str, float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def story_line(raw: str, state: ConsoleState, now: float) -> str | None:
    """The console line for one log line, or None when it stays in the log file."""
    line = ANSI.sub("", raw).rstrip()
    if match := TASK_START.search(line):
        task = match.group(1)
        state.started[task] = now
        return None if task.startswith(QUIET_TASKS) else f"-> {task}"
    if match := TASK_END.search(line):
        task, status = match.group(1), match.group(2)
        seconds = now - state.started.get(task, now)
        state.finished[task] = (status, seconds)
        if task.startswith(QUIET_TASKS) and status == "SUCCESS":
            return None
        word = "ok" if status == "SUCCESS" else status
        return f"   {task}: {word} in {seconds:.1f} s"
    match = LOG_LINE.search(line)
    if match is None:
        return None
    level, logger, message = match.groups()
    if logger in SHOWN_LOGGERS:
        return SHOWN_LOGGERS[logger] + message
    if logger == "skinlesion.training.loop" and EPOCH.match(message):
        return "  " + message
    if level == "ERROR" and " failed: " in message:
        state.failures.append(message)
        return "  " + message
    return None


class Console:
    """Send this process's stdout and stderr (and its children's) to ``log_file``; print the
    story to the real terminal. Use as a context manager around the pipeline run."""

    def __init__(self, log_file: Path, *, verbose: bool = False, poll: float = 0.2) -> None:
        self.log_file = log_file
        self.verbose = verbose
        self.poll = poll
        self.state = ConsoleState()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._out: TextIO = sys.stdout
        self._saved: tuple[int, int] | None = None

    def say(self, text: str) -> None:
        """Print one line to the person (not to the log file)."""
        self._out.write(text + "\n")
        self._out.flush()

    @contextlib.contextmanager
    def capture(self) -> Iterator[Console]:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        saved = (os.dup(1), os.dup(2))
        self._saved = saved
        self._out = os.fdopen(os.dup(saved[0]), "w", buffering=1)
        log_fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        self._thread = threading.Thread(target=self._follow, name="demo-console", daemon=True)
        self._thread.start()
        try:
            yield self
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            self._stop.set()
            self._thread.join(timeout=10)
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            self._out.close()
            self._out = sys.stdout

    def _follow(self) -> None:
        with self.log_file.open(encoding="utf-8", errors="replace") as handle:
            handle.seek(0, os.SEEK_END)
            pending = ""
            while True:
                chunk = handle.read()
                if chunk:
                    pending += chunk
                    *lines, pending = pending.split("\n")
                    for line in lines:
                        self._echo(line)
                elif self._stop.is_set():
                    if pending:
                        self._echo(pending)
                    return
                else:
                    time.sleep(self.poll)

    def _echo(self, line: str) -> None:
        shown = story_line(line, self.state, time.monotonic())
        if self.verbose:
            self._out.write(line + "\n")
        elif shown is not None:
            self._out.write(shown + "\n")
        self._out.flush()
