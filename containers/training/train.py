#!/usr/bin/env python3
"""SageMaker training entrypoint: ``skinlesion.jobs.train``, under torchrun when it spans GPUs.

SageMaker starts a training container as ``docker run <image> train``; the image installs this
file as ``/usr/local/bin/train``. It reads the cluster from ``resourceconfig.json`` (hosts, this
host, the network interface) and the GPU count from ``SM_NUM_GPUS`` or the driver, then replaces
itself with either ``python -m skinlesion.jobs.train`` (one process) or ``torchrun ... -m
skinlesion.jobs.train`` (one process per GPU on every host). Arguments are passed through.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

JOB_MODULE = "skinlesion.jobs.train"
# The same root as skinlesion.contract: /opt/ml in a container, a run directory locally.
ML_ROOT_ENV = "SKINLESION_ML_ROOT"
DEFAULT_ML_ROOT = "/opt/ml"
DEFAULT_MASTER_PORT = "29500"
NVIDIA_GPUS_DIR = "/proc/driver/nvidia/gpus"

log = logging.getLogger("skinlesion.train")


class LaunchError(RuntimeError):
    """The cluster description is unusable; the message says what was read and what is expected."""


@dataclass(frozen=True)
class Cluster:
    """Where this container runs: the hosts of the job, this host, and its GPUs."""

    hosts: tuple[str, ...]
    current_host: str
    gpus: int
    network_interface: str = ""

    @property
    def world_size(self) -> int:
        """Training processes in the whole job: one per GPU (or one per CPU-only host)."""
        return len(self.hosts) * max(self.gpus, 1)

    @property
    def node_rank(self) -> int:
        """This host's place among the sorted hosts (every host sorts the same list)."""
        return sorted(self.hosts).index(self.current_host)

    @property
    def master_host(self) -> str:
        """The host that runs rank 0 and the rendezvous."""
        return sorted(self.hosts)[0]


def read_cluster(
    env: Mapping[str, str], resource_config: Path, nvidia_gpus_dir: Path = Path(NVIDIA_GPUS_DIR)
) -> Cluster:
    """The cluster as SageMaker describes it; one host named algo-1 when there is no file."""
    # SM_HOSTS / SM_CURRENT_HOST (the training toolkit's variables) when set; the file wins.
    hosts: tuple[str, ...] = ("algo-1",)
    current_host = env.get("SM_CURRENT_HOST") or "algo-1"
    if env.get("SM_HOSTS"):
        try:
            hosts = tuple(json.loads(env["SM_HOSTS"]))
        except json.JSONDecodeError:
            raise LaunchError(
                f"SM_HOSTS {env['SM_HOSTS']!r} is not JSON; expected a list such as "
                '["algo-1", "algo-2"].'
            ) from None
    interface = ""
    if resource_config.exists():
        try:
            config = json.loads(resource_config.read_text())
        except json.JSONDecodeError as error:
            raise LaunchError(
                f"{resource_config} is not JSON ({error}); expected SageMaker's resource config "
                '{"current_host": "algo-1", "hosts": ["algo-1", ...]}.'
            ) from None
        hosts = tuple(config.get("hosts") or hosts)
        current_host = config.get("current_host") or current_host
        interface = config.get("network_interface_name") or ""
    if current_host not in hosts:
        raise LaunchError(
            f"current_host {current_host!r} is not one of hosts {list(hosts)} in {resource_config}."
        )
    return Cluster(hosts, current_host, gpu_count(env, nvidia_gpus_dir), interface)


def gpu_count(env: Mapping[str, str], nvidia_gpus_dir: Path = Path(NVIDIA_GPUS_DIR)) -> int:
    """``SM_NUM_GPUS`` when set, else the GPUs that the NVIDIA driver lists (0 without one)."""
    raw = env.get("SM_NUM_GPUS", "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            raise LaunchError(f"Invalid SM_NUM_GPUS {raw!r}: expected an integer >= 0.") from None
        if value < 0:
            raise LaunchError(f"Invalid SM_NUM_GPUS {raw!r}: expected an integer >= 0.")
        return value
    if nvidia_gpus_dir.is_dir():
        return sum(1 for entry in nvidia_gpus_dir.iterdir() if entry.is_dir())
    return 0


def launch_command(
    cluster: Cluster,
    args: Sequence[str] = (),
    *,
    python: str = sys.executable,
    master_port: str = DEFAULT_MASTER_PORT,
    master_addr: str = "",
) -> list[str]:
    """The command that trains on ``cluster``: plain python for one process, else torchrun."""
    if cluster.world_size == 1:
        return [python, "-m", JOB_MODULE, *args]
    torchrun = [python, "-m", "torch.distributed.run", f"--nproc-per-node={max(cluster.gpus, 1)}"]
    if len(cluster.hosts) == 1:
        torchrun.append("--standalone")
    else:
        torchrun += [
            f"--nnodes={len(cluster.hosts)}",
            f"--node-rank={cluster.node_rank}",
            f"--master-addr={master_addr or cluster.master_host}",
            f"--master-port={master_port}",
        ]
    return [*torchrun, "-m", JOB_MODULE, *args]


def launch_environment(cluster: Cluster, env: Mapping[str, str]) -> dict[str, str]:
    """The child's environment: NCCL and Gloo talk over SageMaker's interface between hosts."""
    child = dict(env)
    if cluster.network_interface and len(cluster.hosts) > 1:
        child.setdefault("NCCL_SOCKET_IFNAME", cluster.network_interface)
        child.setdefault("GLOO_SOCKET_IFNAME", cluster.network_interface)
    return child


def main(argv: Sequence[str] | None = None) -> None:
    """Replace this process with the training command (signals then reach it directly)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = list(sys.argv[1:] if argv is None else argv)
    # `docker run <image> train` reaches us as `train`; a leading "train" is not a job argument.
    if args[:1] == ["train"]:
        args = args[1:]
    env = os.environ
    resource_config = Path(
        env.get(ML_ROOT_ENV, DEFAULT_ML_ROOT), "input/config/resourceconfig.json"
    )
    cluster = read_cluster(env, resource_config)
    # SKINLESION_MASTER_ADDR stands in for SageMaker's host names when processes on one machine
    # play the hosts (tests/training/test_multi_instance.py); SageMaker resolves algo-N itself.
    command = launch_command(
        cluster,
        args,
        master_port=env.get("SKINLESION_MASTER_PORT", DEFAULT_MASTER_PORT),
        master_addr=env.get("SKINLESION_MASTER_ADDR", ""),
    )
    log.info(
        "host %s of %s, %d GPU(s), world size %d: %s",
        cluster.current_host,
        list(cluster.hosts),
        cluster.gpus,
        cluster.world_size,
        " ".join(command),
    )
    os.execvpe(command[0], command, launch_environment(cluster, env))


if __name__ == "__main__":
    main()
