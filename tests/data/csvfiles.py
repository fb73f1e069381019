"""CSV helpers for the data tests."""

from __future__ import annotations

import csv
from pathlib import Path


def read_rows(csv_path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV."""
    with csv_path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def write_rows(csv_path: Path, header: list[str], rows: list[list[str]]) -> None:
    """Write a CSV."""
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
