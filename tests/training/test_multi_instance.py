"""Two training instances on one machine: the image's launcher, SageMaker's resource config per
"host", torchrun over gloo; one model, written by rank 0 only, close to what one instance trains.

Each process gets its own ``/opt/ml`` (as each SageMaker instance has its own), a
``resourceconfig.json`` naming both hosts and itself, and ``SKINLESION_MASTER_ADDR=127.0.0.1``
standing in for SageMaker's resolvable host name ``algo-1``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from skinlesion.models import Predictor
from skinlesion.training.checkpointing import CHECKPOINT_FILE

from .conftest import ml_root_layout, run_train_job

pytestmark = pytest.mark.slow

LAUNCHER = Path(__file__).resolve().parents[2] / "containers" / "training" / "train.py"
PER_HOST_BATCH = 8
# Plain mean loss, no augmentation: the two ranks' batches together are the one-process batch.
TINY = {
    "architecture": "mobilenet_v2",
    "pretrained": "none",
    "epochs": "2",
    "image_size": "32",
    "deterministic": "true",
    "max_steps_per_epoch": "3",
    "balancing": "none",
    "augment": "false",
    "schedule": "cosine",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _host_env(root: Path, dataset: Path, host: str, port: int) -> dict[str, str]:
    env = ml_root_layout(
        root, dataset, {**TINY, "batch_size": str(PER_HOST_BATCH), "instance_count": "2"}
    )
    (root / "input" / "config" / "resourceconfig.json").write_text(
        json.dumps({"current_host": host, "hosts": ["algo-1", "algo-2"]})
    )
    env.update(
        {
            "SM_NUM_GPUS": "0",
            "SKINLESION_MASTER_ADDR": "127.0.0.1",
            "SKINLESION_MASTER_PORT": str(port),
            "PYTHONPATH": os.pathsep.join(sys.path),
        }
    )
    return env


def test_two_hosts_train_one_model_like_one_host(tmp_path: Path, synthetic_dataset: Path) -> None:
    port = _free_port()
    hosts = {name: tmp_path / name for name in ("algo-1", "algo-2")}
    processes = {
        name: subprocess.Popen(
            [sys.executable, str(LAUNCHER), "train"],
            env=_host_env(root, synthetic_dataset, name, port),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, root in hosts.items()
    }
    logs = {name: p.communicate(timeout=300)[0] for name, p in processes.items()}
    for name, process in processes.items():
        assert process.returncode == 0, f"{name}:\n{logs[name][-3000:]}"
    assert "--nnodes=2" in logs["algo-1"] and "--node-rank=0" in logs["algo-1"]
    assert "--node-rank=1" in logs["algo-2"]
    assert "rank 1 of 2" in logs["algo-2"]

    # Rank 0 (algo-1) writes the model, the outputs and the checkpoint; algo-2 writes none.
    assert (hosts["algo-1"] / "model" / "model.pt").exists()
    assert (hosts["algo-1"] / "checkpoints" / CHECKPOINT_FILE).exists()
    assert not (hosts["algo-2"] / "model").exists()
    assert not (hosts["algo-2"] / "checkpoints" / CHECKPOINT_FILE).exists()
    history = json.loads((hosts["algo-1"] / "output" / "data" / "history.json").read_text())
    assert history[-1]["images"] == 2 * 3 * PER_HOST_BATCH  # both hosts' images are counted

    # One instance with the global batch sees the same images per step.
    single = tmp_path / "single"
    env = ml_root_layout(single, synthetic_dataset, {**TINY, "batch_size": str(2 * PER_HOST_BATCH)})
    result = run_train_job(env)
    assert result.returncode == 0, result.stderr[-3000:]
    two = json.loads((hosts["algo-1"] / "output" / "data" / "metrics.json").read_text())
    one = json.loads((single / "output" / "data" / "metrics.json").read_text())
    # Batch norm sees half the batch per process, so the runs differ a little, not by much.
    assert abs(two["val_loss"] - one["val_loss"]) < 0.02 * one["val_loss"], (two, one)
    a = Predictor.load(hosts["algo-1"] / "model").model.state_dict()
    b = Predictor.load(single / "model").model.state_dict()
    weights = [k for k, v in a.items() if v.dtype.is_floating_point and "running" not in k]
    distance = torch.norm(torch.stack([torch.norm(a[k] - b[k]) for k in weights]))
    scale = torch.norm(torch.stack([torch.norm(b[k]) for k in weights]))
    # Measured: 0.04 (batch norm statistics per half batch); independent hosts would not agree.
    assert float(distance / scale) < 0.1
