"""bench.gpu_train's recipe epoch: the recipe read from a params file, the synthetic dataset in
the preprocess format, and one tiny epoch through the real trainer on CPU (no timing asserted)."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import gpu_train
from skinlesion import patient
from skinlesion.config import ConfigError, TrainConfig
from skinlesion.data.store import read_manifest, read_split, read_split_metadata
from skinlesion.labels import CLASSES

REPO_ROOT = Path(__file__).resolve().parents[2]
PROD = REPO_ROOT / "pipelines" / "params" / "prod.yaml"

PARAMS = """\
kubeflow:
  host: ${KFP_HOST}
pipelines:
  training:
    backend: sagemaker
    data_uri: s3://${tf:data_bucket}/isic2019
    architecture: resnet50
    epochs: 3
    metadata: true
    threshold: 0.7
"""


def test_recipe_settings_keep_train_config_names_and_skip_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "env.yaml"
    path.write_text(PARAMS)
    assert gpu_train.recipe_settings(path) == {
        "architecture": "resnet50",
        "epochs": 3,
        "metadata": True,
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pipelines:\n  monitoring:\n    epochs: 3\n", "no pipelines.training mapping"),
        (
            "pipelines:\n  training:\n    architecture: ${ARCH}\n",
            "settings ['architecture'] hold ${...} placeholders",
        ),
    ],
)
def test_recipe_settings_refuse_what_they_cannot_use(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "env.yaml"
    path.write_text(text)
    with pytest.raises(
        gpu_train.RecipeError, match=f"^{re.escape(str(path))}.*{re.escape(message)}"
    ):
        gpu_train.recipe_settings(path)


def test_prod_recipe_builds_a_train_config_with_the_pretrained_override() -> None:
    import torch

    config, recipe_pretrained = gpu_train.recipe_config(
        PROD, device=torch.device("cpu"), pretrained="none", overrides={"image_size": "32"}
    )
    settings = gpu_train.recipe_settings(PROD)
    assert isinstance(config, TrainConfig)
    assert config.pretrained == "none" and recipe_pretrained == settings["pretrained"]
    assert config.image_size == 32 and config.device == "cpu"
    for name in ("architecture", "epochs", "batch_size", "balancing", "metadata"):
        assert getattr(config, name) == settings[name]
    with pytest.raises(ConfigError, match="Unknown training settings \\['nosuch'\\]"):
        gpu_train.recipe_config(PROD, device=torch.device("cpu"), overrides={"nosuch": "1"})


def test_recipe_dataset_is_in_the_preprocess_format_with_metadata(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gpu_train.write_recipe_dataset(tmp_path, train=40, val=12, size=16)
    manifest = read_manifest(tmp_path)
    assert manifest["classes"] == list(CLASSES) and manifest["image_size"] == 16
    assert manifest["source"]["generated"] is True
    for split, count in (("train", 40), ("val", 12)):
        data = read_split(tmp_path, split)
        assert data.images.shape == (count, 16, 16, 3) and data.images.dtype == np.uint8
        assert set(data.labels.tolist()) == set(range(len(CLASSES)))
        rows = read_split_metadata(tmp_path, split)
        assert rows is not None and set(rows) == set(data.image_ids)
        with caplog.at_level(logging.WARNING, logger="skinlesion.patient"):
            matrix = patient.encode_rows(data.image_ids, rows)
        assert "outside the vocabulary" not in caplog.text
        assert all(share > 0.5 for share in patient.coverage(matrix).values())


@pytest.mark.slow
def test_recipe_epoch_on_cpu_writes_its_row(tmp_path: Path) -> None:
    results, out = tmp_path / "results", tmp_path / "out"
    gpu_train.main(
        [
            "--architectures",  # none: only the recipe epoch
            *["--device", "cpu", "--recipe", str(PROD), "--recipe-epochs", "1"],
            *["--images", "64", "--val-images", "16", "--recipe-set", "image_size=32"],
            *["--pretrained", "none", "--results-dir", str(results), "--out", str(out)],
        ]
    )
    record = json.loads((out / f"{gpu_train.NAME}.jsonl").read_text())
    assert record == json.loads((results / f"{gpu_train.NAME}.jsonl").read_text())
    (row,) = record["rows"]
    settings = gpu_train.recipe_settings(PROD)
    assert row["part"] == "recipe_epoch" and row["epoch"] == 1
    assert row["architecture"] == settings["architecture"] and row["image_size"] == 32
    assert row["batch"] == settings["batch_size"] and row["metadata"] is True
    assert row["pretrained"] == "none" and row["recipe_pretrained"] == settings["pretrained"]
    assert (row["train_rows"], row["val_rows"]) == (64, 16)
    for name in ("build_s", "epoch_s", "train_s", "train_images_per_s", "val_s", "end_epoch_s"):
        assert row[name] > 0, name
    assert row["epoch_s"] >= row["train_s"] + row["val_s"]
    assert row["recipe_epochs"] == settings["epochs"]
    assert row["full_run_s"] == pytest.approx(row["build_s"] + settings["epochs"] * row["epoch_s"])
    assert row["isic2019_full_run_s"] > row["build_s"]
    assert row["peak_gpu_memory_gib"] is None  # CPU: no GPU memory to report
    assert record["summary"]["recipe full run, extrapolated (s)"] == pytest.approx(
        row["full_run_s"]
    )
    markdown = (results / f"{gpu_train.NAME}.md").read_text()
    assert "| recipe_epoch | " in markdown
    assert "random initial weights (pretrained none" in markdown


@pytest.mark.slow
def test_gpu_script_times_the_recipe_from_random_weights_after_the_step_rates(
    tmp_path: Path,
) -> None:
    """bench/gpu.sh as the GPU machine runs it, tiny and on CPU: both parts land in one record,
    and the script itself asks for --pretrained none (the GPU machine may be offline)."""
    env = os.environ | {"PYTHON": sys.executable, "OUT": str(tmp_path / "out")}
    result = subprocess.run(
        [
            str(REPO_ROOT / "bench" / "gpu.sh"),
            *["--device", "cpu", "--architectures", "mobilenet_v2", "--steps", "1"],
            *["--warmup", "1", "--batch-size", "2", "--image-size", "32", "--epochs", "1"],
            *["--workers", "1", "--images", "64", "--val-images", "16"],
            *["--recipe-epochs", "1", "--recipe-set", "image_size=32"],
            *["--results-dir", str(tmp_path / "results")],
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "out" / f"{gpu_train.NAME}.jsonl").read_text())
    steps, recipe = record["rows"]
    assert "| mobilenet_v2 | 2 |" in result.stdout
    assert steps["part"] == "step_rates" and steps["amp_real_loader_images_per_s"] > 0
    assert steps["loader_alone_images_per_s"] > 0
    assert recipe["part"] == "recipe_epoch" and recipe["pretrained"] == "none"
    assert recipe["train_images_per_s"] > 0 and recipe["epoch_s"] > 0
    assert "random initial weights" in result.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--recipe-set", "nosuch=1"], "Unknown training settings ['nosuch']"),
        (["--recipe-set", "image_size"], "Invalid --recipe-set 'image_size'"),
        (["--recipe-epochs", "99"], "--recipe-epochs 99 is more than the recipe's epochs"),
        (["--recipe-epochs", "0"], "nothing to measure"),
    ],
)
def test_bad_recipe_arguments_fail_before_measuring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as raised:
        gpu_train.main(
            [
                *["--architectures", "--device", "cpu", "--recipe-epochs", "1"],
                *["--results-dir", str(tmp_path), *arguments],
            ]
        )
    assert raised.value.code == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing measured, nothing written
