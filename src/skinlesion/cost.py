"""Cost estimates from the price table kept in the repository (``sagemaker_prices.json``).

A job's cost is its instances times its billable seconds (spot savings already in them) times
the on-demand hourly price of its instance type in its region and usage (training, processing,
inference, transform). Prices are estimates: the table says where each came from and which are
unconfirmed.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from importlib import resources
from typing import Any

log = logging.getLogger(__name__)

PRICES_FILE = "sagemaker_prices.json"
USAGES = ("training", "processing", "inference", "transform")


class PriceNotFoundError(KeyError):
    """No price for this region, usage and instance type; the message lists those there are."""


@functools.lru_cache(maxsize=1)
def price_table() -> dict[str, Any]:
    """The price table shipped with the package."""
    text = resources.files("skinlesion").joinpath(PRICES_FILE).read_text(encoding="utf-8")
    table: dict[str, Any] = json.loads(text)
    return table


def hourly_price(region: str, usage: str, instance_type: str) -> float:
    """On-demand USD per instance-hour."""
    regions = price_table()["regions"]
    if region not in regions:
        raise PriceNotFoundError(
            f"No prices for region {region!r} in {PRICES_FILE}. Known: {', '.join(sorted(regions))}."
        )
    if usage not in USAGES:
        raise PriceNotFoundError(f"Invalid usage {usage!r}. Accepted: {', '.join(USAGES)}.")
    prices = regions[region][usage]
    if instance_type not in prices:
        raise PriceNotFoundError(
            f"No {usage} price for {instance_type} in {region} in {PRICES_FILE}. Known: "
            f"{', '.join(sorted(prices))}. Add it from the AWS SageMaker pricing page."
        )
    return float(prices[instance_type]["usd_per_hour"])


@dataclass(frozen=True)
class JobCost:
    """What one job cost: its instances, its billable time and the estimate."""

    usage: str
    instance_type: str
    instance_count: int
    billable_seconds: float
    usd: float
    spot_savings: float = 0.0  # 1 - billable / training seconds (managed spot training)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form recorded with the job."""
        return {
            "usage": self.usage,
            "instance_type": self.instance_type,
            "instance_count": self.instance_count,
            "billable_seconds": self.billable_seconds,
            "usd": round(self.usd, 4),
            "spot_savings": self.spot_savings,
        }


def job_cost(
    region: str,
    usage: str,
    instance_type: str,
    instance_count: int,
    billable_seconds: float,
    *,
    spot_savings: float = 0.0,
) -> JobCost:
    """Instances x billable hours x the hourly price."""
    usd = instance_count * billable_seconds / 3600 * hourly_price(region, usage, instance_type)
    return JobCost(usage, instance_type, instance_count, billable_seconds, usd, spot_savings)


def total_usd(costs: list[dict[str, Any]]) -> float:
    """The sum of recorded job costs (``JobCost.as_dict``)."""
    return round(sum(float(c.get("usd", 0.0)) for c in costs), 4)


# --- the standing monthly cost of an environment (make cost ENV=...) ------------------------------
HOURS_PER_MONTH = 730  # AWS's own monthly figure (365 * 24 / 12)
MINUTES_PER_MONTH = 30 * 24 * 60


@dataclass(frozen=True)
class MonthlyAssumptions:
    """What the estimate cannot read from the params and schedules: typical job lengths, storage."""

    region: str = "us-east-1"
    processing_instance_type: str = "ml.m5.xlarge"  # Settings.processing_instance_type's default
    training_instance_type: str = "ml.g4dn.xlarge"  # Settings.training_instance_type's default
    monitoring_job_minutes: float = 10.0
    training_run_hours: float = 1.0  # the training job; its processing jobs are counted below
    training_processing_minutes: float = 30.0  # preprocess + evaluate + baseline per run
    storage_gb: float = 50.0


def _field_matches(field: str, value: int) -> bool:
    for part in field.split(","):
        step = 1
        if "/" in part:
            part, raw_step = part.split("/", 1)
            step = int(raw_step)
        if part == "*":
            if value % step == 0:
                return True
            continue
        low, _, high = part.partition("-")
        start, end = int(low), int(high or low)
        if start <= value <= end and (value - start) % step == 0:
            return True
    return False


def runs_per_month(cron: str) -> int:
    """How many times a six-field KFP cron (seconds first) fires in a 30-day month (each minute
    that matches counts once; day-of-month and weekday are read as AND, weekday ignored if '*')."""
    fields = cron.split()
    if len(fields) != 6:
        raise ValueError(f"Invalid cron {cron!r}: expected six fields (second minute hour ...).")
    _, minute, hour, day, month, weekday = fields
    if month != "*" or weekday != "*":
        raise ValueError(f"Cron {cron!r}: month and weekday fields other than '*' are not counted.")
    count = 0
    for minute_of_month in range(MINUTES_PER_MONTH):
        d, rest = divmod(minute_of_month, 24 * 60)
        h, m = divmod(rest, 60)
        if _field_matches(minute, m) and _field_matches(hour, h) and _field_matches(day, d + 1):
            count += 1
    return count


def monthly_estimate(
    params: dict[str, Any], schedules: list[dict[str, Any]], assumptions: MonthlyAssumptions
) -> list[tuple[str, str, float]]:
    """Rows of (item, how it is counted, USD per month): the endpoint at min and max scale,
    storage, monitoring jobs and scheduled training runs."""
    region = assumptions.region
    training = params.get("pipelines", {}).get("training", {})
    endpoint_type = str(training.get("instance_type", "ml.m5.large"))
    endpoint_hour = hourly_price(region, "inference", endpoint_type)
    rows: list[tuple[str, str, float]] = []
    for label, count in (
        ("min", training.get("min_instances", 1)),
        ("max", training.get("max_instances", 1)),
    ):
        rows.append(
            (f"endpoint ({label} scale)", f"{count} x {endpoint_type} x {HOURS_PER_MONTH} h",
             int(count) * endpoint_hour * HOURS_PER_MONTH)
        )  # fmt: skip
    storage = price_table()["regions"][region]["s3_standard_usd_per_gb_month"]["usd"]
    rows.append(
        ("storage (S3)", f"{assumptions.storage_gb:g} GB", assumptions.storage_gb * storage)
    )
    processing_hour = hourly_price(region, "processing", assumptions.processing_instance_type)
    training_hour = hourly_price(region, "training", assumptions.training_instance_type)
    for entry in schedules:
        if not entry.get("enabled", True) or "cron" not in entry:
            continue
        runs = runs_per_month(str(entry["cron"]))
        if entry.get("pipeline") == "monitoring":
            minutes = assumptions.monitoring_job_minutes
            usd = runs * minutes / 60 * processing_hour
            how = f"{runs} runs x {minutes:g} min x {assumptions.processing_instance_type}"
        elif entry.get("pipeline") == "training":
            count = int(training.get("instance_count", 1))
            usd = runs * (
                count * assumptions.training_run_hours * training_hour
                + assumptions.training_processing_minutes / 60 * processing_hour
            )
            how = (
                f"{runs} runs x ({count} x {assumptions.training_run_hours:g} h "
                f"{assumptions.training_instance_type} + "
                f"{assumptions.training_processing_minutes:g} min processing)"
            )
        else:
            continue
        rows.append((str(entry["name"]), how, usd))
    return rows


def format_table(rows: list[tuple[str, str, float]]) -> str:
    """A plain-text table with the totals at min and max endpoint scale."""
    width = max(len(r[0]) for r in rows)
    how_width = max(len(r[1]) for r in rows)
    lines = [f"{'item':<{width}}  {'counted as':<{how_width}}  USD/month"]
    for item, how, usd in rows:
        lines.append(f"{item:<{width}}  {how:<{how_width}}  {usd:9.2f}")
    rest = sum(usd for item, _, usd in rows if not item.startswith("endpoint"))
    for label in ("min", "max"):
        endpoint = next(usd for item, _, usd in rows if item == f"endpoint ({label} scale)")
        lines.append(
            f"{'total (' + label + ' scale)':<{width}}  {'':<{how_width}}  {endpoint + rest:9.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m skinlesion.cost --env dev``: print the standing monthly cost of an environment."""
    import argparse
    import sys
    from pathlib import Path

    import yaml

    parser = argparse.ArgumentParser(prog="python -m skinlesion.cost", description=main.__doc__)
    parser.add_argument("--env", required=True, help="dev or prod: pipelines/params/<env>.yaml")
    parser.add_argument(
        "--region", default=MonthlyAssumptions.region, help="a region of the price table"
    )
    parser.add_argument("--params-dir", default="pipelines/params")
    parser.add_argument("--schedules", default="pipelines/schedules.yaml")
    args = parser.parse_args(argv)
    params_file = Path(args.params_dir) / f"{args.env}.yaml"
    if not params_file.exists():
        known = sorted(p.stem for p in Path(args.params_dir).glob("*.yaml"))
        parser.error(f"No {params_file}. Known environments: {', '.join(known)}.")
    params = yaml.safe_load(params_file.read_text()) or {}
    schedules = [
        s
        for s in (yaml.safe_load(Path(args.schedules).read_text()) or {}).get("schedules", [])
        if not s.get("environments") or args.env in s["environments"]
    ]
    table = price_table()
    rows = monthly_estimate(params, schedules, MonthlyAssumptions(region=args.region))
    header = f"{args.env} in {args.region}, prices of {table['read_on']} ({table['source']}):"
    sys.stdout.write(f"{header}\n{format_table(rows)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
