"""Running the app under uvicorn: one process, or a supervisor with one worker per 4 CPUs."""

from __future__ import annotations

import logging
import os
import signal
import tempfile
from pathlib import Path

from skinlesion.serving.settings import SETTINGS_ENV, ServingSettings

log = logging.getLogger(__name__)

FAILURE_ENV = "SKINLESION_SERVING_FAILURE"  # where a worker notes that its model failed to load


def _uvicorn_options(settings: ServingSettings, log_level: str) -> dict[str, object]:
    return {
        "host": settings.host,
        "port": settings.port,
        "lifespan": "on",
        "loop": "auto",  # uvloop when installed
        "http": "auto",  # httptools when installed
        "limit_concurrency": settings.max_concurrency,
        "timeout_keep_alive": 60,  # SageMaker's front end reuses its connections
        "access_log": False,
        "log_level": log_level.lower(),
        "server_header": False,
    }


def serve(settings: ServingSettings, *, log_level: str = "INFO") -> int:
    """Serve until SIGINT/SIGTERM; non-zero when the model could not be loaded."""
    import uvicorn

    from skinlesion.serving.app import ServingApp

    settings = settings.resolved()
    log.info(
        "Serving %s on %s:%d: %d worker(s) x %d thread(s), runtime %s, batches <= %d, wait <= %g ms",
        settings.model_dir,
        settings.host,
        settings.port,
        settings.workers,
        settings.threads,
        settings.runtime,
        settings.max_batch_size,
        settings.max_wait_ms,
    )
    options = _uvicorn_options(settings, log_level)
    if settings.workers > 1:
        with tempfile.TemporaryDirectory(prefix="skinlesion-serve-") as scratch:
            failure = Path(scratch) / "failed"
            os.environ[SETTINGS_ENV] = settings.to_json()
            os.environ[FAILURE_ENV] = str(failure)
            uvicorn.run(
                "skinlesion.serving.server:worker_app",
                factory=True,
                workers=settings.workers,
                **options,  # type: ignore[arg-type]
            )
            return 3 if failure.exists() else 0

    failed: list[BaseException] = []
    server: uvicorn.Server | None = None

    def on_fatal(error: BaseException) -> None:
        failed.append(error)
        if server is not None:
            server.should_exit = True

    app = ServingApp(settings, on_fatal=on_fatal)
    server = uvicorn.Server(uvicorn.Config(app, **options))  # type: ignore[arg-type]
    server.run()
    return 3 if failed else 0


def worker_app() -> object:
    """The app of one worker process (uvicorn's factory); a failed load stops the whole server."""
    from skinlesion.serving.app import ServingApp

    settings = ServingSettings.from_json(os.environ[SETTINGS_ENV])

    def on_fatal(error: BaseException) -> None:
        # Restarting would fail the same way: stop the supervisor, which stops every worker,
        # and leave it a note so that it exits non-zero.
        Path(os.environ[FAILURE_ENV]).write_text(f"{type(error).__name__}: {error}")
        os.kill(os.getppid(), signal.SIGTERM)

    # Loaded before this worker accepts connections: the kernel hands the shared socket's
    # connections only to workers that are ready.
    return ServingApp(settings, on_fatal=on_fatal, load_in_background=False)
