"""Serving settings: SageMaker's variables, sizing to the CPUs, the CLI and the ``serve`` entry."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from skinlesion.cli import build_parser
from skinlesion.serving.commands import sagemaker_serve, settings_from_args
from skinlesion.serving.settings import (
    ServingConfigError,
    ServingSettings,
    available_cpus,
    default_workers,
)


def test_sagemaker_environment_is_honoured(tmp_path: Path) -> None:
    settings = ServingSettings.from_sagemaker_environment(
        {
            "SAGEMAKER_BIND_TO_PORT": "9090",
            "SAGEMAKER_MODEL_SERVER_WORKERS": "3",
            "SKINLESION_ML_ROOT": str(tmp_path),
            "SKINLESION_MODEL_VERSION": "group/7",
        }
    )
    assert settings.port == 9090 and settings.workers == 3
    assert settings.model_dir == tmp_path / "model"
    assert settings.model_version == "group/7"
    plain = ServingSettings.from_sagemaker_environment({})
    assert plain.port == 8080 and plain.model_dir == Path("/opt/ml/model")


def test_bad_environment_names_the_variables() -> None:
    with pytest.raises(ServingConfigError, match="SAGEMAKER_BIND_TO_PORT"):
        ServingSettings.from_sagemaker_environment({"SAGEMAKER_BIND_TO_PORT": "http"})


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("runtime", "tensorrt", "Accepted: auto, onnx, torchscript, torch"),
        ("port", 0, "1..65535"),
        ("max_batch_size", 0, ">= 1"),
        ("max_wait_ms", -1, "0..1000"),
        ("capture_percentage", 150, "0..100"),
        ("workers", -1, ">= 0"),
    ],
)
def test_out_of_range_settings_are_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(ServingConfigError, match=message):
        ServingSettings(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cpus", "workers", "threads"), [(1, 1, 1), (2, 1, 2), (4, 1, 4), (16, 4, 4)]
)
def test_workers_and_threads_follow_the_cpus(cpus: int, workers: int, threads: int) -> None:
    resolved = ServingSettings().resolved(cpus)
    assert (resolved.workers, resolved.threads) == (workers, threads)
    assert default_workers(cpus) == workers
    explicit = ServingSettings(workers=2, threads=3).resolved(cpus)
    assert (explicit.workers, explicit.threads) == (2, 3)


def test_available_cpus_is_positive() -> None:
    assert available_cpus() >= 1


def test_settings_round_trip_through_json(tmp_path: Path) -> None:
    settings = ServingSettings(model_dir=tmp_path, capture_dir=tmp_path / "c", workers=2, threads=2)
    assert ServingSettings.from_json(settings.to_json()) == settings
    with pytest.raises(ServingConfigError, match="Unknown serving settings"):
        ServingSettings.from_json('{"model_dir": "/m", "colour": "blue"}')


def test_cli_options_win_over_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SAGEMAKER_BIND_TO_PORT", "9191")
    monkeypatch.setenv("SKINLESION_MODEL_VERSION", "env-version")
    args = build_parser().parse_args(
        ["serve", "--model-dir", str(tmp_path), "--capture-dir", str(tmp_path / "cap"),
         "--capture-percentage", "20", "--endpoint-name", "ep", "--runtime", "torchscript"]
    )  # fmt: skip
    settings = settings_from_args(args)
    assert settings.port == 9191  # from the environment
    assert settings.model_version == "env-version"
    assert settings.model_dir == tmp_path and settings.capture_dir == tmp_path / "cap"
    assert (settings.capture_percentage, settings.endpoint_name, settings.runtime) == (
        20,
        "ep",
        "torchscript",
    )
    args = build_parser().parse_args(["serve", "--port", "7000", "--model-version", "cli"])
    settings = settings_from_args(args)
    assert (settings.port, settings.model_version) == (7000, "cli")


def test_container_serve_entry_reports_a_missing_model(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # SageMaker runs `serve` with no arguments; without a model in /opt/ml/model it must fail
    # fast with a clear message rather than serve 503 forever.
    monkeypatch.setenv("SKINLESION_ML_ROOT", str(tmp_path))
    assert sagemaker_serve([]) == 2
    assert sagemaker_serve(["serve"]) == 2


def test_serve_is_a_registered_command() -> None:
    parser = build_parser()
    args = parser.parse_args(["serve", "--model-dir", "/m"])
    assert isinstance(args, argparse.Namespace) and callable(args.func)
