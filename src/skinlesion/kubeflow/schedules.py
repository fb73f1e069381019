"""``make schedule``: the recurring runs of ``pipelines/schedules.yaml``, applied idempotently.

A schedule is identified by its name (the recurring run's display name) in the environment's
experiment. Applying the file creates each enabled schedule from a freshly uploaded pipeline
version and then deletes the older recurring runs of the same name, so a second
``make schedule`` replaces a schedule instead of adding one (and a failed create leaves the old
schedule running). Pause, resume and delete act on every recurring run with that name.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from skinlesion.kubeflow.client import KubeflowClient
from skinlesion.kubeflow.submit import PreparedPipeline

log = logging.getLogger(__name__)

DEFAULT_SCHEDULES_FILE = Path("pipelines/schedules.yaml")
SCHEDULE_KEYS = (
    "name",
    "pipeline",
    "description",
    "cron",
    "interval_seconds",
    "max_concurrency",
    "catchup",
    "enable_caching",
    "arguments",
    "enabled",
    "paused",
    "environments",
)
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# KFP's ScheduledWorkflow parses cron with a seconds field first (robfig/cron, 6 fields).
CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("second", 0, 59, ()),
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, MONTHS),
    ("day of week", 0, 6, WEEKDAYS),
)
CRON_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
NAME_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class ScheduleError(ValueError):
    """A schedule definition is invalid or names nothing; the message says what is accepted."""


def _cron_value(token: str, low: int, high: int, names: tuple[str, ...], what: str) -> int:
    if token.upper() in names:
        return names.index(token.upper()) + (low if low == 1 else 0)
    if not token.isdigit():
        raise ScheduleError(f"cron {what} field: {token!r} is not a number.")
    value = int(token)
    if not low <= value <= high:
        raise ScheduleError(f"cron {what} field: {value} is outside {low}-{high}.")
    return value


def check_cron(expression: str) -> str:
    """Return ``expression`` if KFP accepts it (6 fields, seconds first), else raise."""
    expression = expression.strip()
    if expression in CRON_DESCRIPTORS:
        return expression
    parts = expression.split()
    if len(parts) == 5:
        raise ScheduleError(
            f"cron {expression!r} has 5 fields; KFP cron has a seconds field first: "
            f"'0 {expression}'."
        )
    if len(parts) != 6:
        raise ScheduleError(
            f"cron {expression!r} has {len(parts)} fields; expected 6 (second minute hour "
            f"day-of-month month day-of-week) or one of {', '.join(CRON_DESCRIPTORS)}."
        )
    for part, (what, low, high, names) in zip(parts, CRON_FIELDS, strict=True):
        for item in part.split(","):
            base, _, step = item.partition("/")
            if step and (not step.isdigit() or int(step) == 0):
                raise ScheduleError(f"cron {what} field: step {step!r} must be a positive number.")
            if base in ("*", "?"):
                if base == "?" and what not in ("day of month", "day of week"):
                    raise ScheduleError(f"cron {what} field: '?' is only for the day fields.")
                continue
            start, dash, end = base.partition("-")
            first = _cron_value(start, low, high, names, what)
            if dash:
                last = _cron_value(end, low, high, names, what)
                if last < first:
                    raise ScheduleError(f"cron {what} field: range {base!r} runs backwards.")
    return expression


@dataclass(frozen=True)
class Schedule:
    """One recurring run of the schedules file."""

    name: str
    pipeline: str
    cron: str = ""
    interval_seconds: int = 0
    description: str = ""
    max_concurrency: int = 1
    catchup: bool = False
    enable_caching: bool | None = None  # None: the tasks' own caching options
    arguments: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True  # false: `make schedule` skips it
    paused: bool = False  # true: created disabled (resume it in the UI or with schedule-resume)
    environments: tuple[str, ...] = ()  # empty: every environment

    def __post_init__(self) -> None:
        if not NAME_PATTERN.match(self.name):
            raise ScheduleError(
                f"Invalid schedule name {self.name!r}: lower-case letters, digits and '-', "
                "at most 63 characters."
            )
        if bool(self.cron) == bool(self.interval_seconds):
            raise ScheduleError(
                f"Schedule {self.name}: give exactly one of cron or interval_seconds."
            )
        if self.cron:
            check_cron(self.cron)
        if self.interval_seconds and self.interval_seconds < 60:
            raise ScheduleError(f"Schedule {self.name}: interval_seconds must be >= 60.")
        if self.max_concurrency < 1:
            raise ScheduleError(f"Schedule {self.name}: max_concurrency must be >= 1.")

    def applies_to(self, env: str) -> bool:
        return not self.environments or env in self.environments


def load_schedules(path: Path = DEFAULT_SCHEDULES_FILE) -> list[Schedule]:
    """Parse and check the schedules file."""
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, Mapping) or not isinstance(raw.get("schedules", []), list):
        raise ScheduleError(f"{path}: expected 'schedules:' with a list of schedules.")
    schedules: list[Schedule] = []
    for index, item in enumerate(raw.get("schedules") or []):
        where = f"{path}: schedules[{index}]"
        if not isinstance(item, Mapping):
            raise ScheduleError(f"{where}: expected a mapping.")
        unknown = sorted(set(item) - set(SCHEDULE_KEYS))
        if unknown:
            raise ScheduleError(
                f"{where}: unknown keys {', '.join(unknown)}. Accepted: {', '.join(SCHEDULE_KEYS)}."
            )
        for required in ("name", "pipeline"):
            if not item.get(required):
                raise ScheduleError(f"{where}: {required!r} is required.")
        values = dict(item)
        values["environments"] = tuple(values.get("environments") or ())
        values["arguments"] = dict(values.get("arguments") or {})
        try:
            schedules.append(Schedule(**values))
        except ScheduleError as error:
            raise ScheduleError(f"{where}: {error}") from None
        except TypeError as error:
            raise ScheduleError(f"{where}: {error}") from None
    names = [s.name for s in schedules]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ScheduleError(
            f"{path}: schedule names must be unique; repeated: {', '.join(duplicates)}."
        )
    return schedules


@dataclass(frozen=True)
class AppliedSchedule:
    name: str
    recurring_run_id: str
    replaced: tuple[str, ...]  # ids of the recurring runs it replaced
    url: str


def find_by_name(client: KubeflowClient, experiment_id: str, name: str) -> list[Any]:
    return [r for r in client.recurring_runs(experiment_id) if r.display_name == name]


def apply_schedule(
    client: KubeflowClient,
    schedule: Schedule,
    prepared: PreparedPipeline,
    *,
    experiment_id: str,
    pipeline_root: str,
    service_account: str,
    link: Callable[[str], str],
) -> AppliedSchedule:
    """Create ``schedule`` from the prepared pipeline, then delete older ones of its name."""
    existing = find_by_name(client, experiment_id, schedule.name)
    version = client.ensure_pipeline_version(
        str(prepared.path),
        prepared.compiled.pipeline_name,
        prepared.version_name,
        prepared.description,
    )
    created = client.create_recurring_run(
        experiment_id=experiment_id,
        job_name=schedule.name,
        description=schedule.description or None,
        cron_expression=schedule.cron or None,
        interval_second=schedule.interval_seconds or None,
        max_concurrency=schedule.max_concurrency,
        no_catchup=not schedule.catchup,
        params=prepared.arguments,
        pipeline_id=version.pipeline_id,
        version_id=version.version_id,
        enabled=not schedule.paused,
        pipeline_root=pipeline_root or None,
        service_account=service_account or None,
    )
    new_id = str(created.recurring_run_id)
    replaced = []
    for old in existing:
        if str(old.recurring_run_id) != new_id:
            client.delete_recurring_run(str(old.recurring_run_id))
            replaced.append(str(old.recurring_run_id))
    action = f"replaced {', '.join(replaced)}" if replaced else "new"
    log.info("schedule %s -> recurring run %s (%s)", schedule.name, new_id, action)
    return AppliedSchedule(
        name=schedule.name,
        recurring_run_id=new_id,
        replaced=tuple(replaced),
        url=link(f"recurringrun/details/{new_id}"),
    )


@dataclass(frozen=True)
class ScheduleRow:
    """One line of ``make schedules``."""

    name: str
    recurring_run_id: str
    status: str
    trigger: str
    pipeline_version_id: str
    created_at: str


def describe(recurring_run: Any) -> ScheduleRow:
    trigger = getattr(recurring_run, "trigger", None)
    text = ""
    if trigger is not None and getattr(trigger, "cron_schedule", None) is not None:
        text = f"cron {trigger.cron_schedule.cron}"
    elif trigger is not None and getattr(trigger, "periodic_schedule", None) is not None:
        text = f"every {trigger.periodic_schedule.interval_second} s"
    reference = getattr(recurring_run, "pipeline_version_reference", None)
    return ScheduleRow(
        name=str(recurring_run.display_name),
        recurring_run_id=str(recurring_run.recurring_run_id),
        status=str(getattr(recurring_run, "status", "") or getattr(recurring_run, "mode", "")),
        trigger=text,
        pipeline_version_id=str(getattr(reference, "pipeline_version_id", "") or ""),
        created_at=str(getattr(recurring_run, "created_at", "") or ""),
    )


def act_by_name(client: KubeflowClient, experiment_id: str, name: str, action: str) -> list[str]:
    """Pause, resume or delete every recurring run named ``name``; return their ids."""
    actions = {
        "pause": client.pause_recurring_run,
        "resume": client.resume_recurring_run,
        "delete": client.delete_recurring_run,
    }
    if action not in actions:
        raise ScheduleError(f"Unknown action {action!r}. Accepted: {', '.join(actions)}.")
    runs = client.recurring_runs(experiment_id)
    matches = [r for r in runs if r.display_name == name]
    if not matches:
        known = ", ".join(sorted({str(r.display_name) for r in runs})) or "none"
        raise ScheduleError(f"No schedule named {name!r} in the experiment. Schedules: {known}.")
    ids = [str(r.recurring_run_id) for r in matches]
    for recurring_run_id in ids:
        actions[action](recurring_run_id)
        log.info("%s schedule %s (%s)", action, name, recurring_run_id)
    return ids
