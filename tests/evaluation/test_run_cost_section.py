"""The evaluation report's "cost of this run" section, and the evaluate step adding it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from skinlesion import html_report
from skinlesion.evaluation_report import add_cost_section, cost_section
from skinlesion.steps import _add_run_cost

PAGE = html_report.page("Report", "meta", "<section>body</section>")


class _Artifact:
    def __init__(self, path: Path, **metadata: Any) -> None:
        self.path, self.uri, self.metadata = str(path), str(path), dict(metadata)


def test_known_costs_get_a_row_each_and_a_total() -> None:
    html = cost_section([("preprocess", 0.0123), ("train", 1.5), ("evaluate", None)])
    assert "<td>preprocess</td>" in html and ">0.0123</td>" in html
    assert ">1.5000</td>" in html
    assert '<td>evaluate</td><td class="num">unknown</td>' in html
    assert ">1.5123</td>" in html  # the known steps only
    assert "Not billed" not in html


def test_no_priced_step_reads_not_billed() -> None:
    html = cost_section([("preprocess", None), ("train", None), ("evaluate", None)])
    assert "Not billed (local backend)" in html
    assert "<table>" not in html


def test_the_section_goes_at_the_end_of_the_page_body() -> None:
    html = add_cost_section(PAGE, [("train", 2.0)])
    assert (
        html.index("<section>body</section>") < html.index('id="run-cost"') < html.index("</body>")
    )
    with pytest.raises(ValueError, match="no </body>"):
        add_cost_section("<p>not a report</p>", [])


def test_the_evaluate_step_adds_what_each_artifact_recorded(tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    report.write_text(PAGE)
    _add_run_cost(
        report,
        _Artifact(tmp_path / "d", cost_usd=0.01),
        _Artifact(tmp_path / "m", cost_usd=0.5, tuning_job_name="t"),
        _Artifact(tmp_path / "e", cost_usd=0.02),
    )
    text = report.read_text()
    assert "<td>tuning</td>" in text and ">0.5300</td>" in text
