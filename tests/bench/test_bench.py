"""Benchmarks: result files, skipping without real data, stage parsing, and tiny real runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench import loader, preprocess, results, stages, train_step

REPO_ROOT = Path(__file__).resolve().parents[2]


def write_jpegs(folder: Path, count: int, size: tuple[int, int] = (120, 90)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"ISIC_{i:07d}.jpg", quality=90)


def test_markdown_table_formats_numbers_and_blanks() -> None:
    table = results.markdown_table(
        [{"a": "x", "b": 1234.5}, {"a": "y", "b": 0.12345}, {"a": "z"}], ["a", "b"]
    )
    assert table.splitlines() == [
        "| a | b |",
        "|---|---|",
        "| x | 1,234 |",
        "| y | 0.12 |",
        "| z |  |",
    ]


def test_write_result_appends_json_lines_and_keeps_the_newest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(results, "KEEP_LINES", 3)
    for run in range(5):
        table = results.write_result(
            "demo",
            title="A title",
            rows=[{"name": "x", "value": float(run)}],
            columns=["name", "value"],
            summary={"run": run},
            results_dir=tmp_path,
        )
    lines = (tmp_path / "demo.jsonl").read_text().splitlines()
    assert [json.loads(line)["summary"]["run"] for line in lines] == [2, 3, 4]
    record = json.loads(lines[-1])
    assert record["rows"] == [{"name": "x", "value": 4.0}]
    assert record["machine"]["cores"] == os.cpu_count()
    assert len(record["machine"]["load_average"]) == 3
    markdown = (tmp_path / "demo.md").read_text()
    assert markdown.startswith("# A title\n")
    assert "| x | 4.00 |" in markdown and "- run: 4" in markdown
    assert "| x | 4.00 |" in table


def test_real_data_lookups_give_a_reason_when_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(results.REAL_DATA_ENV, str(tmp_path / "nothing"))
    monkeypatch.setenv(results.FULLRES_ENV, str(tmp_path / "nothing"))
    assert results.real_data_dir() == (
        None,
        f"no labels.csv in {tmp_path / 'nothing'} (set SKINLESION_REAL_DATA to the HAM10000 folder)",
    )
    path, reason = results.fullres_dir()
    assert path is None and "no JPEGs under" in reason


def test_preprocess_benchmark_skips_with_the_reason_without_real_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(results.FULLRES_ENV, str(tmp_path / "absent"))
    preprocess.main(["--results-dir", str(tmp_path)])
    record = json.loads((tmp_path / "preprocess.jsonl").read_text())
    assert record["skipped"].startswith(f"no JPEGs under {tmp_path / 'absent'}")
    assert "skipped: no JPEGs" in (tmp_path / "preprocess.md").read_text()


def test_preprocess_benchmark_decodes_every_image_on_both_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_jpegs(tmp_path / "jpegs", 5)
    monkeypatch.setenv(results.FULLRES_ENV, str(tmp_path / "jpegs"))
    arguments = ["--images", "80", "--baseline-images", "20", "--image-size", "32", "--results-dir"]
    preprocess.main([*arguments, str(tmp_path / "out")])
    rows = json.loads((tmp_path / "out" / "preprocess.jsonl").read_text())["rows"]
    assert [r["images"] for r in rows] == [20, 80, 80]
    assert rows[0]["speedup"] == 1.0
    assert all(r["images_per_s"] > 0 for r in rows)


def _write_record(run_dir: Path, stage: str, artifact: str, payload: dict[str, object]) -> None:
    folder = run_dir / stage / artifact
    folder.mkdir(parents=True)
    (folder / stages.RECORD).write_text(json.dumps(payload))


def test_stage_times_come_from_the_newest_run(tmp_path: Path) -> None:
    root = tmp_path / "pipeline-root"
    old = root / "skinlesion-training-old"
    _write_record(old, "train", "model", {"wall_seconds": 1.0, "metrics": {}})
    os.utime(old, (1, 1))
    new = root / "skinlesion-training-new"
    _write_record(new, "preprocess", "dataset", {"wall_seconds": 2.5, "metrics": {}})
    _write_record(
        new,
        "train",
        "model",
        {
            "wall_seconds": 30.0,
            "metrics": {"train_images_per_sec": 12.34, "best_epoch": 3.0, "epochs_completed": 4.0},
        },
    )
    _write_record(
        new,
        "evaluate",
        "evaluation",
        {
            "wall_seconds": 4.0,
            "metrics": {"balanced_accuracy": 0.8, "sensitivity_MEL": 0.5, "sensitivity_NV": 0.9},
        },
    )
    assert stages.latest_run(tmp_path) == new
    rows = stages.summarise("demo", new, demo_seconds=50.0)
    by_stage = {r["stage"]: r for r in rows}
    assert by_stage["preprocess"]["seconds"] == 2.5
    assert by_stage["sum of the stages"]["seconds"] == 36.5
    assert by_stage["whole demo (wall clock)"]["seconds"] == 50.0
    assert by_stage["train"]["detail"] == "12.3 training images/s, best epoch 3 of 4"
    assert by_stage["evaluate"]["detail"] == (
        "balanced accuracy 0.8000 on the test split; sensitivity MEL 0.50, NV 0.90"
    )


def test_stage_benchmark_skips_when_no_demo_ran(tmp_path: Path) -> None:
    stages.main(["--workdir", str(tmp_path / "none"), "--results-dir", str(tmp_path)])
    record = json.loads((tmp_path / "demo_stages.jsonl").read_text())
    assert "no demo run found" in record["skipped"]


@pytest.mark.slow
def test_train_step_times_both_paths_on_the_same_model() -> None:
    import torch

    row = train_step.measure("mobilenet_v2", 32, 4, steps=1, warmup=1, device=torch.device("cpu"))
    assert row["architecture"] == "mobilenet_v2"
    assert row["baseline_images_per_s"] > 0 and row["ours_images_per_s"] > 0
    assert row["speedup"] == pytest.approx(row["baseline_step_s"] / row["ours_step_s"])


@pytest.mark.slow
def test_loader_benchmark_reads_every_row_once(tmp_path: Path) -> None:
    loader.write_arrays(tmp_path, 24, 16)
    rate = loader.loader_rate(tmp_path, 8, 0)
    assert rate > 0
    with_augment = loader.loader_rate(tmp_path, 8, 0, augment_size=16)
    assert with_augment > 0
