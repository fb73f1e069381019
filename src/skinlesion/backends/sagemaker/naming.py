"""Deterministic SageMaker resource names, so a retried pipeline step finds its own job again.

A job name is ``<prefix>-<stage>-<digest>`` where the digest hashes the pipeline run id and the
task name: the same step of the same run always gets the same name, a different run or task
never does. Attempts after a failed or stopped job add ``-a2``, ``-a3``, ...
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from datetime import UTC, datetime

log = logging.getLogger(__name__)

MAX_NAME = 63  # SageMaker's limit for job, model, endpoint config and endpoint names
DIGEST_CHARS = 10
ATTEMPT_RESERVE = 3  # room for "-a2" .. "-a9"
_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*")
_INVALID = re.compile(r"[^a-zA-Z0-9-]+")


class JobNameError(ValueError):
    """A job name breaks SageMaker's naming rule."""


def digest(*parts: str, chars: int = DIGEST_CHARS) -> str:
    """A short, stable hex digest of ``parts`` (joined unambiguously)."""
    joined = "\x1f".join(parts).encode()
    return hashlib.sha256(joined).hexdigest()[:chars]


def sanitize(text: str) -> str:
    """``text`` reduced to letters, digits and single hyphens, without hyphens at the ends."""
    return _INVALID.sub("-", text).strip("-")


def resource_name(*parts: str, limit: int = MAX_NAME) -> str:
    """Join parts with hyphens; the first part is cut so the whole fits ``limit``."""
    clean = [sanitize(p) for p in parts if sanitize(p)]
    if not clean:
        raise JobNameError("A resource name needs at least one letter or digit.")
    tail = "-".join(clean[1:])
    room = limit - (len(tail) + 1 if tail else 0)
    if room < 1:
        raise JobNameError(f"Name parts {parts!r} do not fit in {limit} characters.")
    head = clean[0][:room].rstrip("-")
    return f"{head}-{tail}" if tail else head


def job_name(
    stage: str, *, prefix: str, run_id: str, task_name: str = "", explicit: str = ""
) -> str:
    """The job name of one pipeline step: explicit if given, else derived from run and task.

    Without a run id there is nothing stable to derive from; the name is then unique (time and a
    random suffix) and a retried step cannot find its job again, which is logged.
    """
    if explicit:
        check_job_name(explicit, reserve=0)
        return explicit
    limit = MAX_NAME - ATTEMPT_RESERVE
    if not run_id:
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        name = resource_name(prefix, stage, stamp, secrets.token_hex(3), limit=limit)
        log.warning(
            "No pipeline run id for the %s step: job %s gets a unique name, so a retry of this "
            "step would start a new job. Pass run_id (dsl.PIPELINE_JOB_ID_PLACEHOLDER) or set "
            "SKINLESION_RUN_ID.",
            stage,
            name,
        )
        return name
    return resource_name(prefix, stage, digest(run_id, task_name or stage), limit=limit)


def attempt_name(base: str, attempt: int) -> str:
    """The name of the ``attempt``-th job of a step: ``base``, then ``base-a2``, ``base-a3``..."""
    if attempt < 1 or attempt > 9:
        raise JobNameError(f"Invalid attempt {attempt}: 1 to 9.")
    return base if attempt == 1 else f"{base[: MAX_NAME - ATTEMPT_RESERVE]}-a{attempt}"


def check_job_name(name: str, *, reserve: int = ATTEMPT_RESERVE) -> None:
    """Raise JobNameError unless ``name`` is a valid SageMaker name (with room for attempts)."""
    limit = MAX_NAME - reserve
    if not _NAME.fullmatch(name) or len(name) > limit:
        raise JobNameError(
            f"Invalid job name {name!r}: 1 to {limit} letters, digits and hyphens, "
            "starting and ending with a letter or digit."
        )
