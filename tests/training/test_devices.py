"""The training device: a GPU request that CUDA cannot honour fails the job at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from skinlesion.config import ConfigError, TrainConfig
from skinlesion.training.devices import (
    DeviceUnavailableError,
    current_instance_type,
    gpu_evidence,
    is_gpu_instance_type,
    select_device,
)
from skinlesion.training.loop import fit

from .conftest import ml_root_layout, run_train_job

TINY = {
    "architecture": "mobilenet_v2",
    "pretrained": "none",
    "epochs": "1",
    "batch_size": "16",
    "image_size": "32",
    "max_steps_per_epoch": "1",
}


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    # This machine has no GPU; the patch also makes the tests mean the same on one that has.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def resource_config(root: Path, instance_type: str) -> dict[str, str]:
    """SageMaker's resourceconfig.json for one host of ``instance_type``; the job's env."""
    config = root / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "resourceconfig.json").write_text(
        json.dumps(
            {
                "current_host": "algo-1",
                "current_instance_type": instance_type,
                "hosts": ["algo-1"],
                "network_interface_name": "eth0",
            }
        )
    )
    return {"SKINLESION_ML_ROOT": str(root)}


@pytest.mark.parametrize(
    ("instance_type", "gpu"),
    [
        ("ml.g4dn.xlarge", True),
        ("ml.p3.2xlarge", True),
        ("ml.p4d.24xlarge", True),
        ("ml.g5.12xlarge", True),
        ("ml.m5.xlarge", False),
        ("ml.c6g.large", False),  # Graviton: the g is a suffix
        ("ml.trn1.2xlarge", False),  # Trainium: not CUDA
        ("", False),
        ("g4dn.xlarge", False),  # not a SageMaker name
    ],
)
def test_gpu_instance_types(instance_type: str, gpu: bool) -> None:
    assert is_gpu_instance_type(instance_type) is gpu


@pytest.mark.usefixtures("no_cuda")
def test_device_cuda_without_cuda_names_the_request_and_what_torch_reports() -> None:
    with pytest.raises(DeviceUnavailableError) as caught:
        select_device("cuda", evidence=[])
    message = str(caught.value)
    assert "device=cuda" in message
    assert f"torch.version.cuda={torch.version.cuda}" in message
    assert "torch.cuda.is_available()=False" in message
    assert "set device=cpu" in message


@pytest.mark.usefixtures("no_cuda")
def test_auto_on_a_sagemaker_gpu_instance_without_cuda_fails(tmp_path: Path) -> None:
    env = resource_config(tmp_path, "ml.g4dn.xlarge")
    assert current_instance_type(env) == "ml.g4dn.xlarge"
    evidence = gpu_evidence(env)
    assert evidence == ["SageMaker instance type ml.g4dn.xlarge"]
    with pytest.raises(DeviceUnavailableError, match=r"SageMaker instance type ml\.g4dn\.xlarge"):
        select_device("auto", evidence=evidence)
    assert gpu_evidence({"SM_NUM_GPUS": "4"}) == ["SM_NUM_GPUS=4"]


@pytest.mark.usefixtures("no_cuda")
def test_auto_on_a_cpu_host_and_cpu_anywhere_train_on_the_cpu(tmp_path: Path) -> None:
    env = resource_config(tmp_path, "ml.m5.xlarge")
    assert gpu_evidence(env) == []
    assert gpu_evidence({"SKINLESION_ML_ROOT": str(tmp_path / "absent")}) == []
    assert select_device("auto", evidence=gpu_evidence(env)) == torch.device("cpu")
    assert select_device("cpu", evidence=["SM_NUM_GPUS=1"]) == torch.device("cpu")


def test_device_is_a_validated_setting() -> None:
    assert TrainConfig().device == "auto"
    with pytest.raises(ConfigError, match=r"Invalid device 'gpu'\. Accepted: auto, cpu, cuda\."):
        TrainConfig.from_hyperparameters({"device": "gpu"})


@pytest.mark.usefixtures("no_cuda")
def test_fit_fails_before_building_anything(tmp_path: Path) -> None:
    config = TrainConfig.from_hyperparameters({**TINY, "device": "cuda"})
    # The dataset folder does not exist: the device check must come first to be what fails.
    with pytest.raises(DeviceUnavailableError, match="device=cuda"):
        fit(config, tmp_path / "no-dataset")


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a host where CUDA is unavailable")
def test_the_job_on_a_gpu_instance_without_cuda_fails_once_with_its_reason(
    tmp_path: Path, synthetic_dataset: Path
) -> None:
    env = ml_root_layout(tmp_path, synthetic_dataset, TINY)
    resource_config(tmp_path, "ml.p3.2xlarge")
    result = run_train_job(env)
    assert result.returncode == 1
    failure = (tmp_path / "output" / "failure").read_text()
    assert failure.startswith("DeviceUnavailableError: GPUs were requested")
    assert "SageMaker instance type ml.p3.2xlarge" in failure
    assert "torch.cuda.is_available()=False" in failure
    assert "epoch=1" not in result.stderr  # not one step on the CPU
    assert not (tmp_path / "model").exists()
