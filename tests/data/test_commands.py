"""The data sub-commands of the ``skinlesion`` CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skinlesion.cli import main
from skinlesion.data.commands import isic_2019_plan


def test_fetch_isic_plan_uses_isic_cli_and_the_challenge_csvs(tmp_path: Path) -> None:
    plan = isic_2019_plan(tmp_path / "isic")
    assert plan.commands == [
        ["isic", "image", "download", "--collections", "65", str(tmp_path / "isic" / "images")]
    ]
    assert plan.downloads == [
        (
            "https://isic-challenge-data.s3.amazonaws.com/2019/ISIC_2019_Training_GroundTruth.csv",
            tmp_path / "isic" / "labels.csv",
        ),
        (
            "https://isic-challenge-data.s3.amazonaws.com/2019/ISIC_2019_Training_Metadata.csv",
            tmp_path / "isic" / "metadata.csv",
        ),
    ]


def test_fetch_isic_dry_run_prints_and_runs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "isic dir"
    assert main(["fetch-isic", str(out), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"isic image download --collections 65 '{out}/images'"
    assert lines[1].startswith(f"curl -fL -o '{out}/labels.csv' https://isic-challenge-data")
    assert lines[2].endswith("ISIC_2019_Training_Metadata.csv")
    assert not out.exists()


def test_fetch_isic_without_isic_cli_says_how_to_install(tmp_path: Path) -> None:
    # cli.main turns the FileNotFoundError into exit code 2 with the message logged.
    assert main(["fetch-isic", str(tmp_path), "--isic-binary", "no-such-isic-binary"]) == 2


def test_sample_data_then_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "sample"
    assert (
        main(["sample-data", str(data), "--per-class", "3", "--image-size", "24", "--seed", "1"])
        == 0
    )
    assert (data / "labels.csv").exists() and len(list((data / "images").iterdir())) == 24
    capsys.readouterr()
    assert main(["validate", str(data), "--workers", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["valid_rows"] == 24
    (data / "images" / "SAMPLE_0000000.jpg").unlink()
    assert main(["validate", str(data), "--no-decode", "--max-invalid-fraction", "0.01"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["problems"]["missing_image"]["examples"] == ["SAMPLE_0000000"]
