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
