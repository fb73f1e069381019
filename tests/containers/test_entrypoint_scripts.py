"""The scripts the images carry: the training launcher and the inference health check."""

from __future__ import annotations

import http.server
import importlib.util
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from tests.containers.helpers import CONTAINERS, REPO_ROOT


def load_script(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


train = load_script(CONTAINERS / "training" / "train.py")
healthcheck = load_script(CONTAINERS / "inference" / "healthcheck.py")


def resource_config(
    tmp_path: Path, hosts: list[str], current: str, interface: str = "eth0"
) -> Path:
    path = tmp_path / "resourceconfig.json"
    path.write_text(
        json.dumps({"current_host": current, "hosts": hosts, "network_interface_name": interface})
    )
    return path


# --- train: one process or torchrun -----------------------------------------------------------------


def test_single_gpu_single_host_runs_the_job_directly(tmp_path: Path) -> None:
    cluster = train.read_cluster(
        {"SM_NUM_GPUS": "1"}, resource_config(tmp_path, ["algo-1"], "algo-1")
    )
    assert cluster.world_size == 1
    command = train.launch_command(cluster, ["--epochs", "2"], python="python")
    assert command == ["python", "-m", "skinlesion.jobs.train", "--epochs", "2"]


def test_cpu_host_without_resource_config_runs_one_process(tmp_path: Path) -> None:
    cluster = train.read_cluster({}, tmp_path / "absent.json", nvidia_gpus_dir=tmp_path / "none")
    assert (cluster.hosts, cluster.current_host, cluster.gpus) == (("algo-1",), "algo-1", 0)
    assert train.launch_command(cluster, python="python") == [
        "python",
        "-m",
        "skinlesion.jobs.train",
    ]


def test_several_gpus_on_one_host_use_torchrun_standalone(tmp_path: Path) -> None:
    cluster = train.read_cluster(
        {"SM_NUM_GPUS": "4"}, resource_config(tmp_path, ["algo-1"], "algo-1")
    )
    command = train.launch_command(cluster, python="python")
    assert command == [
        "python", "-m", "torch.distributed.run", "--nproc-per-node=4", "--standalone",
        "-m", "skinlesion.jobs.train",
    ]  # fmt: skip


def test_several_hosts_rendezvous_on_the_first_host(tmp_path: Path) -> None:
    config = resource_config(tmp_path, ["algo-2", "algo-1", "algo-3"], "algo-3")
    cluster = train.read_cluster({"SM_NUM_GPUS": "8"}, config)
    assert (cluster.world_size, cluster.node_rank, cluster.master_host) == (24, 2, "algo-1")
    command = train.launch_command(cluster, ["--seed", "1"], python="python", master_port="29600")
    assert command == [
        "python", "-m", "torch.distributed.run", "--nproc-per-node=8", "--nnodes=3",
        "--node-rank=2", "--master-addr=algo-1", "--master-port=29600",
        "-m", "skinlesion.jobs.train", "--seed", "1",
    ]  # fmt: skip
    env = train.launch_environment(cluster, {"KEEP": "1"})
    assert env == {"KEEP": "1", "NCCL_SOCKET_IFNAME": "eth0", "GLOO_SOCKET_IFNAME": "eth0"}


def test_cpu_only_hosts_run_one_process_each(tmp_path: Path) -> None:
    config = resource_config(tmp_path, ["algo-1", "algo-2"], "algo-1")
    cluster = train.read_cluster({"SM_NUM_GPUS": "0"}, config)
    command = train.launch_command(cluster, python="python")
    assert "--nproc-per-node=1" in command and "--nnodes=2" in command


def test_gpu_count_comes_from_the_driver_without_sm_num_gpus(tmp_path: Path) -> None:
    gpus = tmp_path / "gpus"
    for address in ("0000:00:1e.0", "0000:00:1f.0"):
        (gpus / address).mkdir(parents=True)
    assert train.gpu_count({}, gpus) == 2
    assert train.gpu_count({"SM_NUM_GPUS": "1"}, gpus) == 1


@pytest.mark.parametrize("raw", ["two", "-1"])
def test_invalid_gpu_count_is_named(raw: str) -> None:
    with pytest.raises(train.LaunchError, match=f"Invalid SM_NUM_GPUS '{raw}'"):
        train.gpu_count({"SM_NUM_GPUS": raw})


def test_resource_config_errors_say_what_is_expected(tmp_path: Path) -> None:
    broken = tmp_path / "resourceconfig.json"
    broken.write_text("{not json")
    with pytest.raises(train.LaunchError, match="is not JSON"):
        train.read_cluster({}, broken)
    with pytest.raises(train.LaunchError, match="'algo-9' is not one of hosts"):
        train.read_cluster({}, resource_config(tmp_path, ["algo-1"], "algo-9"))


def test_launcher_execs_the_training_job(tmp_path: Path) -> None:
    # End to end on one CPU host: the launcher replaces itself with `python -m
    # skinlesion.jobs.train --help`, which must exist and answer.
    (tmp_path / "input" / "config").mkdir(parents=True)
    resource_config(tmp_path / "input" / "config", ["algo-1"], "algo-1")
    result = subprocess.run(
        [sys.executable, str(CONTAINERS / "training" / "train.py"), "train", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={
            "PATH": str(Path(sys.executable).parent),
            "SKINLESION_ML_ROOT": str(tmp_path),
            "SM_NUM_GPUS": "0",
            "PYTHONPATH": str(REPO_ROOT / "src"),
        },
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "world size 1" in result.stderr
    assert "usage:" in result.stdout.lower()


# --- healthcheck: GET /ping ---------------------------------------------------------------------


class PingHandler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/ping" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def ping_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), PingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    PingHandler.status = 200


def test_ping_url_honours_sagemaker_bind_to_port() -> None:
    assert healthcheck.ping_url({}) == "http://127.0.0.1:8080/ping"
    assert healthcheck.ping_url({"SAGEMAKER_BIND_TO_PORT": "9090"}) == "http://127.0.0.1:9090/ping"


def test_healthy_only_when_ping_answers_200(ping_server: http.server.HTTPServer) -> None:
    port = ping_server.server_address[1]
    url = healthcheck.ping_url({"SAGEMAKER_BIND_TO_PORT": str(port)})
    assert healthcheck.healthy(url)
    PingHandler.status = 503
    assert not healthcheck.healthy(url)


def test_unhealthy_when_nothing_listens(ping_server: http.server.HTTPServer) -> None:
    port = ping_server.server_address[1]
    ping_server.shutdown()
    ping_server.server_close()
    assert not healthcheck.healthy(f"http://127.0.0.1:{port}/ping", timeout=1.0)


def test_healthcheck_exit_status(ping_server: http.server.HTTPServer) -> None:
    script = str(CONTAINERS / "inference" / "healthcheck.py")
    port = str(ping_server.server_address[1])
    ok = subprocess.run([sys.executable, script], env={"SAGEMAKER_BIND_TO_PORT": port}, check=False)
    assert ok.returncode == 0
    PingHandler.status = 500
    bad = subprocess.run(
        [sys.executable, script], env={"SAGEMAKER_BIND_TO_PORT": port}, check=False
    )
    assert bad.returncode == 1
