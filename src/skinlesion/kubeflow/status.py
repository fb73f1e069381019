"""The exit handler's record of how a pipeline run ended (state, run, error)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from skinlesion.logs import configure_logging

log = logging.getLogger(__name__)

# KFP's final states for the task group an exit handler watches.
SUCCESS_STATES = ("SUCCEEDED",)


@dataclass(frozen=True)
class FinalStatus:
    """What ``dsl.PipelineTaskFinalStatus`` tells an exit task, plus the pipeline's name."""

    pipeline: str
    state: str
    run: str
    task: str
    error_code: int | None
    error_message: str | None

    @classmethod
    def from_kfp(cls, pipeline: str, status: Any) -> FinalStatus:
        """From a ``dsl.PipelineTaskFinalStatus`` (kfp.local gives the error code as a float)."""
        code = getattr(status, "error_code", None)
        return cls(
            pipeline=pipeline,
            state=str(status.state),
            run=str(status.pipeline_job_resource_name or ""),
            task=str(status.pipeline_task_name or ""),
            error_code=int(code) if code is not None else None,
            error_message=getattr(status, "error_message", None) or None,
        )

    @property
    def succeeded(self) -> bool:
        return self.state in SUCCESS_STATES


def record_final_status(status: FinalStatus, destination: str | Path) -> str:
    """Log the run's final state and write it as ``status.json`` under ``destination``.

    Returns the state, so the exit task's output shows it in the UI.
    """
    configure_logging()
    folder = Path(destination)
    folder.mkdir(parents=True, exist_ok=True)
    record = asdict(status)
    (folder / "status.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    if status.succeeded:
        log.info("pipeline %s run %s finished: %s", status.pipeline, status.run, status.state)
    else:
        log.error(
            "pipeline %s run %s finished: %s (task %s, error %s: %s)",
            status.pipeline,
            status.run,
            status.state,
            status.task,
            status.error_code,
            status.error_message,
        )
    return status.state
