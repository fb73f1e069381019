"""`skinlesion kubeflow wait` (make e2e-wait): the run ids that `submit --run-id-file` wrote,
polled against the KFP API stand-in until they end; the exit status says how they ended."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tests.kubeflow.fake_kfp import FakeKfp

Cli = Callable[..., tuple[int, str]]


@pytest.mark.parametrize(
    ("states", "expected_status", "outcome"),
    [
        (["PENDING", "RUNNING", "SUCCEEDED"], 0, "SUCCEEDED"),
        (["RUNNING", "FAILED"], 1, "FAILED"),
    ],
)
def test_wait_reads_the_run_id_that_submit_wrote_and_reports_its_end(
    cli: Cli,
    fake_kfp: FakeKfp,
    tmp_path: Path,
    states: list[str],
    expected_status: int,
    outcome: str,
) -> None:
    run_file = tmp_path / "e2e" / "training.run"
    status, _ = cli("submit", "--run-id-file", str(run_file))
    assert status == 0
    run_id = run_file.read_text().strip()
    assert run_id in fake_kfp.state.runs
    fake_kfp.state.run_states = states
    status, out = cli("wait", "--run-id-file", str(run_file), "--poll", "0.01", "--timeout", "60")
    assert status == expected_status, out
    assert f"run {run_id}: {outcome} after" in out
    assert len(fake_kfp.state.api_requests("GET", f"/runs/{run_id}")) == len(states)


def test_wait_without_runs_or_with_a_missing_file_says_what_to_give(
    cli: Cli, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert cli("wait")[0] != 0
    assert "Give the runs to wait for" in caplog.text
    assert cli("wait", "--run-id-file", str(tmp_path / "none.run"))[0] != 0
    assert "submit --run-id-file" in caplog.text
