"""Run the jobs that moto only records, so a pipeline on the SageMaker backend does real work.

moto answers CreateProcessingJob / CreateTrainingJob by storing the request and calling the job
Completed; nothing runs and nothing reaches S3. ``JobSimulator`` hooks the in-process moto server
(``MotoServer``): each created job is marked InProgress and runs in a thread as SageMaker would
run it, with the container contract laid out in a work folder: the inputs (channels, processing
inputs, checkpoints) downloaded from moto's S3, ``python -m <module>`` as a subprocess, its lines
written to moto's CloudWatch Logs under the job's stream, its outputs (model.tar.gz packed by
``skinlesion.artifacts``, processing outputs, checkpoints) uploaded, then Completed, or Failed
with the job's own failure reason. What it does not simulate: instances, spot interruptions,
VPCs, KMS, IAM; the job's wall time is the subprocess's.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

from skinlesion.artifacts import MODEL_ARCHIVE, pack_model
from skinlesion.backends.sagemaker.job_requests import TRAIN_ENTRYPOINT
from skinlesion.contract import ML_ROOT_ENV

log = logging.getLogger(__name__)

PROCESSING_ROOT = "/opt/ml/processing"
CHECKPOINTS = "/opt/ml/checkpoints"
TRAIN_LAUNCHER = Path(__file__).resolve().parents[2] / "containers" / "training" / "train.py"


class JobSimulator:
    """Executes moto's SageMaker jobs locally while the ``with`` block lasts."""

    def __init__(
        self,
        endpoint_url: str,
        workdir: Path,
        *,
        region: str = "us-east-1",
        python: str = sys.executable,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.workdir = Path(workdir)
        self.region = region
        self.python = python
        self.extra_env = dict(extra_env or {})
        self.started: list[str] = []
        self._threads: list[threading.Thread] = []

    # --- hooking moto -------------------------------------------------------------------------
    @contextmanager
    def active(self) -> Iterator[JobSimulator]:
        """Patch moto's SageMaker backend for the duration; wait for running jobs at the end."""
        from moto.sagemaker.models import SageMakerModelBackend

        original_processing = SageMakerModelBackend.create_processing_job
        original_training = SageMakerModelBackend.create_training_job
        simulator = self

        def create_processing_job(backend: Any, **kwargs: Any) -> Any:
            job = original_processing(backend, **kwargs)
            simulator._start(
                job, simulator._run_processing, "processing_job_status", "ProcessingJobs"
            )
            return job

        def create_training_job(backend: Any, **kwargs: Any) -> Any:
            # moto replaces MetricDefinitions with a sample of its own; keep the request's.
            specification = copy.deepcopy(kwargs["algorithm_specification"])
            job = original_training(backend, **kwargs)
            job.algorithm_specification = specification
            simulator._start(job, simulator._run_training, "training_job_status", "TrainingJobs")
            return job

        SageMakerModelBackend.create_processing_job = create_processing_job  # type: ignore[method-assign]
        SageMakerModelBackend.create_training_job = create_training_job  # type: ignore[method-assign]
        try:
            yield self
        finally:
            SageMakerModelBackend.create_processing_job = original_processing  # type: ignore[method-assign]
            SageMakerModelBackend.create_training_job = original_training  # type: ignore[method-assign]
            for thread in self._threads:
                thread.join(timeout=600)

    def _start(
        self, job: Any, run: Callable[[Any, Path], None], status_field: str, group: str
    ) -> None:
        name = (
            job.processing_job_name
            if status_field.startswith("processing")
            else job.training_job_name
        )
        setattr(job, status_field, "InProgress")
        if hasattr(job, "secondary_status"):
            job.secondary_status = "Training"
        self.started.append(name)

        def target() -> None:
            folder = self.workdir / name
            try:
                run(job, folder)
            except JobFailed as failure:
                job.failure_reason = str(failure)[:1024]
                setattr(job, status_field, "Failed")
                if hasattr(job, "secondary_status"):
                    job.secondary_status = "Failed"
                return
            except Exception as error:  # the simulator's own failure: say so in the job
                log.exception("Simulating %s failed", name)
                job.failure_reason = f"InternalServerError: job simulator: {error}"[:1024]
                setattr(job, status_field, "Failed")
                return
            setattr(job, status_field, "Completed")
            if hasattr(job, "secondary_status"):
                job.secondary_status = "Completed"

        thread = threading.Thread(target=target, name=f"simulate-{name}", daemon=True)
        self._threads.append(thread)
        thread.start()

    # --- clients --------------------------------------------------------------------------------
    def _client(self, service: str) -> Any:
        return boto3.client(service, region_name=self.region, endpoint_url=self.endpoint_url)

    def _download(self, uri: str, destination: Path) -> None:
        s3 = self._client("s3")
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        prefix = key if not key or key.endswith("/") else key + "/"
        destination.mkdir(parents=True, exist_ok=True)
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        found = [obj["Key"] for page in pages for obj in page.get("Contents", [])]
        if not found and key and not key.endswith("/"):  # an object, if there is one
            with contextlib.suppress(s3.exceptions.ClientError):
                s3.download_file(bucket, key, str(destination / key.rsplit("/", 1)[-1]))
        for item in found:
            target = destination / item[len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item, str(target))

    def _upload(self, source: Path, uri: str) -> None:
        s3 = self._client("s3")
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            s3.upload_file(
                str(path),
                bucket,
                "/".join(filter(None, [key.rstrip("/"), path.relative_to(source).as_posix()])),
            )

    def _execute(self, name: str, group: str, command: list[str], env: dict[str, str]) -> list[str]:
        """Run the job's process, writing each line to moto's CloudWatch Logs as it comes (the
        backend streams them while the job runs); returns the lines."""
        logs = self._client("logs")
        log_group = f"/aws/sagemaker/{group}"
        stream = f"{name}/algo-1-{int(time.time())}"
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_group(logGroupName=log_group)
        logs.create_log_stream(logGroupName=log_group, logStreamName=stream)
        lines: list[str] = []
        with subprocess.Popen(
            command,
            env={**os.environ, **self.extra_env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ) as process:
            assert process.stdout is not None
            for raw in process.stdout:
                line = raw.rstrip("\n")
                lines.append(line)
                event = {"timestamp": int(time.time() * 1000), "message": line or " "}
                logs.put_log_events(logGroupName=log_group, logStreamName=stream, logEvents=[event])
        if process.returncode != 0:
            raise JobFailed(lines, process.returncode)
        return lines

    # --- the two kinds of job -------------------------------------------------------------------
    def _run_processing(self, job: Any, folder: Path) -> None:
        local = folder / "processing"
        for item in job.processing_inputs:
            s3_input = item["S3Input"]
            self._download(s3_input["S3Uri"], _under(local, s3_input["LocalPath"]))
        entrypoint = job.app_specification["ContainerEntrypoint"]
        arguments = [
            str(_under(local, a)) if a.startswith(PROCESSING_ROOT) else a
            for a in job.app_specification.get("ContainerArguments", [])
        ]
        self._execute(
            job.processing_job_name,
            "ProcessingJobs",
            [self.python, *entrypoint[1:], *arguments],
            {},
        )
        for output in job.processing_output_config["Outputs"]:
            s3_output = output["S3Output"]
            self._upload(_under(local, s3_output["LocalPath"]), s3_output["S3Uri"])

    def _run_training(self, job: Any, folder: Path) -> None:
        root = folder / "opt" / "ml"
        config = root / "input" / "config"
        config.mkdir(parents=True, exist_ok=True)
        (config / "hyperparameters.json").write_text(json.dumps(job.hyper_parameters))
        env = {ML_ROOT_ENV: str(root)}
        for channel in job.input_data_config:
            path = root / "input" / "data" / channel["ChannelName"]
            self._download(channel["DataSource"]["S3DataSource"]["S3Uri"], path)
            env[f"SM_CHANNEL_{channel['ChannelName'].upper()}"] = str(path)
        checkpoints = root / "checkpoints"
        checkpoint_uri = (job.checkpoint_config or {}).get("S3Uri", "")
        if checkpoint_uri:
            self._download(checkpoint_uri, checkpoints)  # a resumed job finds its checkpoints
        env.update(
            {
                "SM_MODEL_DIR": str(root / "model"),
                "SM_OUTPUT_DATA_DIR": str(root / "output" / "data"),
                "SM_CHECKPOINT_DIR": str(checkpoints),
            }
        )
        entrypoint = job.algorithm_specification.get("ContainerEntrypoint") or TRAIN_ENTRYPOINT
        command = [self.python, *entrypoint[1:]]
        if entrypoint == TRAIN_ENTRYPOINT:  # the image's /usr/local/bin/train, as the image runs it
            command = [self.python, str(TRAIN_LAUNCHER), "train"]
        started = time.monotonic()
        try:
            lines = self._execute(job.training_job_name, "TrainingJobs", command, env)
        except JobFailed as failure:
            reason = root / "output" / "failure"
            if reason.exists():
                raise JobFailed(
                    [f"AlgorithmError: {reason.read_text().strip()}"], failure.returncode
                ) from None
            raise
        finally:
            if checkpoint_uri and checkpoints.exists():
                self._upload(checkpoints, checkpoint_uri)
        archive = pack_model(root / "model", folder / MODEL_ARCHIVE)
        self._upload_file(archive, job.model_artifacts["S3ModelArtifacts"])
        job.final_metric_data_list = _final_metrics(
            job.algorithm_specification.get("MetricDefinitions", []), lines
        )
        seconds = max(1, int(time.monotonic() - started))
        job.training_time_in_seconds = seconds
        job.billable_time_in_seconds = seconds

    def _upload_file(self, path: Path, uri: str) -> None:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        self._client("s3").upload_file(str(path), bucket, key)


class JobFailed(RuntimeError):
    """The job's process exited non-zero; the message is what SageMaker would call the reason."""

    def __init__(self, lines: list[str], returncode: int) -> None:
        self.returncode = returncode
        tail = "\n".join(lines[-5:])
        super().__init__(
            tail
            if lines and lines[0].startswith("AlgorithmError")
            else f"AlgorithmError: exit code {returncode}: {tail}"
        )


def _under(root: Path, container_path: str) -> Path:
    return root / container_path.removeprefix(PROCESSING_ROOT).lstrip("/")


def _final_metrics(definitions: list[dict[str, str]], lines: list[str]) -> list[dict[str, Any]]:
    """The last value of each metric definition found in the log, as FinalMetricDataList."""
    last: dict[str, float] = {}
    for line in lines:
        for definition in definitions:
            match = re.search(definition["Regex"], line)
            if match:
                last[definition["Name"]] = float(match.group(1))
    now = datetime.now(UTC)
    return [{"MetricName": name, "Value": value, "Timestamp": now} for name, value in last.items()]
