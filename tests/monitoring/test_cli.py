"""``skinlesion monitor``: the monitor on this machine, against a local endpoint's capture."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tests.monitoring.conftest import DRIFTED_HOUR, UNDRIFTED_HOUR, MonitoringSetup

from skinlesion.cli import main


def hour_folder(setup: MonitoringSetup, hour) -> Path:  # type: ignore[no-untyped-def]
    return setup.capture_prefix / f"{hour:%Y/%m/%d/%H}"


def test_monitor_run_reports_the_alarm_and_acts_on_it(
    monitoring_setup: MonitoringSetup,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SKINLESION_LOCAL_ROOT", str(tmp_path / "local"))
    status = main(
        [
            "monitor", "run",
            "--baseline", str(monitoring_setup.baseline),
            "--capture", str(hour_folder(monitoring_setup, DRIFTED_HOUR)),
            "--output", str(tmp_path / "out"),
            "--notify", "--retrain", "--data-uri", "/data/isic-2024-05",
            "--fail-on-alarm",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert status == 1
    assert out.startswith("ALARM: data drift")
    assert f"report:     {tmp_path / 'out' / 'report.html'}" in out
    records = tmp_path / "local" / "monitoring"
    assert (records / "notifications.jsonl").exists()
    request = json.loads((records / "retraining_requests.jsonl").read_text())
    assert request["arguments"] == {"data_uri": "/data/isic-2024-05"}
    assert request["status"] == "recorded"


def test_monitor_run_finds_a_stopped_endpoints_model_and_capture(
    monitoring_setup: MonitoringSetup,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # What a local endpoint leaves behind once stopped: its model slot and its capture folder.
    endpoint = tmp_path / "local" / "endpoints" / "demo"
    shutil.copytree(monitoring_setup.model, endpoint / "v1-1714550400" / "model")
    capture = endpoint / "data-capture" / "demo" / "AllTraffic" / f"{UNDRIFTED_HOUR:%Y/%m/%d/%H}"
    shutil.copytree(hour_folder(monitoring_setup, UNDRIFTED_HOUR), capture)
    arguments = [
        "monitor", "run",
        "--endpoint", "demo",
        "--local-root", str(tmp_path / "local"),
        "--output", str(tmp_path / "out"),
        "--checks", "drift",
        "--fail-on-alarm",
    ]  # fmt: skip
    # Without the endpoint's record the dataset behind the model is unknown: said plainly.
    assert main(arguments) == 2
    assert main([*arguments, "--dataset", str(monitoring_setup.dataset)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "no drift, no quality drop"
    [baseline] = endpoint.glob("baseline-*")  # built once, kept beside the model
    assert (baseline / "statistics.json").exists()
    summary = json.loads((tmp_path / "out" / "monitoring_summary.json").read_text())
    assert summary["window"]["images"] == 96


def test_monitor_help_needs_no_heavy_imports() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from skinlesion.cli import build_parser; build_parser(); "
        "heavy = {'torch', 'scipy', 'PIL', 'matplotlib'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "scipy" not in done.stdout and "torch" not in done.stdout
