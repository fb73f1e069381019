"""Which device a training process uses, and a hard error when it was given GPUs it cannot use.

A training image whose torch cannot reach CUDA (a CPU-only wheel, a driver mismatch) would
otherwise train on the CPU of a GPU instance: hours of GPU billing for CPU speed. The job fails
at its start instead, naming what was asked for and what torch reports.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from skinlesion.contract import ml_root

log = logging.getLogger(__name__)

# SageMaker's accelerated training families are ml.p* and ml.g* (ml.p3, ml.p4d, ml.p5, ml.g4dn,
# ml.g5, ml.g6...); CPU families never start with these letters (Graviton's "g" is a suffix:
# ml.c6g). Trainium (ml.trn*) and Inferentia are not CUDA devices.
GPU_INSTANCE_FAMILIES = ("p", "g")


class DeviceUnavailableError(RuntimeError):
    """GPUs were requested but torch cannot use CUDA; retrying on the same image cannot help."""


def is_gpu_instance_type(instance_type: str) -> bool:
    """True for SageMaker GPU instance types such as ``ml.g4dn.xlarge`` or ``ml.p3.2xlarge``."""
    parts = instance_type.split(".")
    return len(parts) >= 3 and parts[0] == "ml" and parts[1][:1] in GPU_INSTANCE_FAMILIES


def current_instance_type(env: Mapping[str, str] | None = None) -> str:
    """This host's SageMaker instance type, or "" when not on SageMaker.

    ``resourceconfig.json`` carries ``current_instance_type`` (the SageMaker SDK's container
    driver, sagemaker-python-sdk modules/train/container_drivers/scripts/environment.py, reads
    it from there into ``SM_CURRENT_INSTANCE_TYPE``).
    """
    env = os.environ if env is None else env
    if env.get("SM_CURRENT_INSTANCE_TYPE"):
        return env["SM_CURRENT_INSTANCE_TYPE"]
    config_dir = Path(env.get("SM_INPUT_CONFIG_DIR", ml_root(env) / "input" / "config"))
    try:
        resource = json.loads((config_dir / "resourceconfig.json").read_text())
    except (OSError, ValueError):
        return ""
    value = resource.get("current_instance_type", "") if isinstance(resource, dict) else ""
    return value if isinstance(value, str) else ""


def gpu_evidence(env: Mapping[str, str] | None = None) -> list[str]:
    """What says this job was given GPUs: a SageMaker GPU instance type, or SM_NUM_GPUS > 0.

    An NVIDIA driver alone is no request: a laptop with a GPU and a CPU build of torch trains
    on its CPU under ``auto``, as it always did.
    """
    env = os.environ if env is None else env
    evidence = []
    instance_type = current_instance_type(env)
    if is_gpu_instance_type(instance_type):
        evidence.append(f"SageMaker instance type {instance_type}")
    raw = env.get("SM_NUM_GPUS", "").strip()
    if raw.isdigit() and int(raw) > 0:
        evidence.append(f"SM_NUM_GPUS={raw}")
    return evidence


def torch_cuda_report() -> str:
    """What torch says about CUDA, for an error message."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return (
        f"torch {torch.__version__}, torch.version.cuda={torch.version.cuda}, "
        f"torch.cuda.is_available()={torch.cuda.is_available()}"
        + (f", CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else "")
    )


def select_device(
    requested: str, local_rank: int = 0, evidence: list[str] | None = None
) -> torch.device:
    """The device for ``requested`` (auto, cpu, cuda); raise when GPUs were asked for in vain.

    ``evidence``: what says GPUs were given (``gpu_evidence()`` when None). With ``auto`` and no
    evidence, a host without CUDA trains on the CPU, as a laptop or a CPU instance should.
    """
    if requested == "cpu":
        return torch.device("cpu")
    if requested not in ("auto", "cuda"):
        raise ValueError(f"Invalid device {requested!r}. Accepted: auto, cpu, cuda.")
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    reasons = ["device=cuda"] if requested == "cuda" else []
    reasons += gpu_evidence() if evidence is None else evidence
    if reasons:
        raise DeviceUnavailableError(
            f"GPUs were requested ({'; '.join(reasons)}) but CUDA is unavailable: "
            f"{torch_cuda_report()}. Refusing to train on the CPU of a GPU host. Use a "
            "training image with a CUDA build of torch, or set device=cpu (or a CPU instance "
            "type) to train on the CPU on purpose."
        )
    return torch.device("cpu")
