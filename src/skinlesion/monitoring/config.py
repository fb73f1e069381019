"""The monitor's decision thresholds, kept next to the baseline as ``constraints.json``.

As with Model Monitor's constraints file, the baseline job writes the defaults and a person may
edit them; the monitor reads them from the baseline unless told otherwise.

False alarms: the three drift families (image features, embedding, predictions) each get an
alpha, and an alarm is raised when any family rejects, so the chance of a false alarm on a
window that is really like the baseline is at most the sum of the three alphas (Bonferroni over
families). Inside the feature family Holm's step-down correction keeps the family's error rate
at ``alpha_features`` for all features together, whatever their correlation.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONSTRAINTS_FILE = "constraints.json"
CHECKS = ("drift", "quality", "all")
# Baseline defaults (here, not in the baseline module, so the CLI's --help needs no numpy/scipy).
DEFAULT_SPLIT = "val"
DEFAULT_COMPONENTS = 32
DEFAULT_MAX_IMAGES = 5000


class MonitorConfigError(ValueError):
    """A threshold is outside what is accepted; the message names both."""


@dataclass(frozen=True)
class MonitorConfig:
    """Thresholds of the drift and quality checks."""

    # Drift: significance per family (see the module docstring) and a minimum effect size.
    # 0.005 each: the union bound says 1.5% false alarms for windows exchangeable with the
    # baseline; production traffic never quite is (other lesions, sources, re-encoding), and
    # on held-out HAM10000 windows the rate came out about 1.5 times the bound (bench/monitoring).
    alpha_features: float = 0.005
    alpha_embedding: float = 0.005
    alpha_predictions: float = 0.005
    psi_threshold: float = 0.1  # a feature drifts only when its PSI is at least this
    permutations: int = 500  # of the MMD test; its smallest p-value is 1 / (permutations + 1)
    mmd_reference: int = 1000  # reference embeddings used by the MMD test
    min_window: int = 50  # fewer images: "insufficient data", no drift decision
    max_unreadable_fraction: float = 0.05  # more undecodable captured images: a violation
    seed: int = 0  # of the permutations and subsampling: the same window, the same answer
    # Quality: the drop that matters, and the significance that makes it more than noise.
    max_balanced_accuracy_drop: float = 0.10
    max_mel_sensitivity_drop: float = 0.10
    alpha_quality: float = 0.05
    min_labels: int = 30  # fewer labelled images: no quality decision

    def __post_init__(self) -> None:
        for name in ("alpha_features", "alpha_embedding", "alpha_predictions", "alpha_quality"):
            value = getattr(self, name)
            if not 0 < value < 1:
                raise MonitorConfigError(f"Invalid {name} {value!r}: must be in (0, 1).")
        for name in (
            "psi_threshold",
            "max_balanced_accuracy_drop",
            "max_mel_sensitivity_drop",
            "max_unreadable_fraction",
        ):
            value = getattr(self, name)
            if value < 0:
                raise MonitorConfigError(f"Invalid {name} {value!r}: must be >= 0.")
        for name in ("permutations", "mmd_reference", "min_window", "min_labels"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise MonitorConfigError(f"Invalid {name} {value!r}: must be an integer >= 1.")

    @property
    def false_alarm_bound(self) -> float:
        """The most a window like the baseline can alarm, by the union bound over families."""
        return self.alpha_features + self.alpha_embedding + self.alpha_predictions

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "constraints") -> MonitorConfig:
        """Build from a dict; unknown keys are refused with the list of accepted ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise MonitorConfigError(
                f"{where}: unknown settings {', '.join(unknown)}. Accepted: "
                f"{', '.join(sorted(known))}."
            )
        return cls(**values)


def write_constraints(folder: Path, config: MonitorConfig) -> Path:
    """``constraints.json``: the thresholds under ``monitoring_config``, as Model Monitor nests."""
    path = Path(folder) / CONSTRAINTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"version": 0, "monitoring_config": config.to_dict()}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def read_constraints(folder: Path) -> MonitorConfig:
    """The thresholds of a baseline folder (the defaults when it has no constraints.json)."""
    path = Path(folder) / CONSTRAINTS_FILE
    if not path.exists():
        return MonitorConfig()
    raw = json.loads(path.read_text())
    return MonitorConfig.from_dict(dict(raw.get("monitoring_config", {})), str(path))


def check_checks(checks: str) -> str:
    """Return ``checks`` if it is one of drift, quality or all."""
    if checks not in CHECKS:
        raise MonitorConfigError(f"Invalid checks {checks!r}. Accepted: {', '.join(CHECKS)}.")
    return checks
