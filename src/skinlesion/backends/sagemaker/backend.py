"""The SageMaker backend: each pipeline stage as a SageMaker job, registry call, endpoint
operation, SNS message or CloudWatch metric."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from skinlesion.aws import AwsClients
from skinlesion.backends.base import (
    ApprovalStatus,
    Backend,
    BaselineRequest,
    BatchScoreRequest,
    DeployRequest,
    Endpoint,
    EvaluateRequest,
    JobResult,
    JobStatus,
    ModelVersion,
    MonitorRequest,
    Notification,
    PreprocessRequest,
    RegisterRequest,
    TrainRequest,
    Trial,
    TuneRequest,
    TuneResult,
    Variant,
)
from skinlesion.backends.errors import (
    EndpointNotFoundError,
    JobOutputMissingError,
    ModelNotApprovedError,
    MonitoringSetupError,
)
from skinlesion.backends.sagemaker.capture_windows import capture_prefix, manifest, window_objects
from skinlesion.backends.sagemaker.deployment import EndpointDeployer, invocation_url
from skinlesion.backends.sagemaker.job_requests import (
    RUN_ID_TAG,
    JobContext,
    baseline_job_request,
    evaluate_job_request,
    monitor_job_request,
    preprocess_job_request,
    training_job_request,
    transform_job_request,
)
from skinlesion.backends.sagemaker.naming import job_name
from skinlesion.backends.sagemaker.notifications import publish_notification, put_metrics
from skinlesion.backends.sagemaker.registry import METRICS_FILE, ModelRegistry
from skinlesion.backends.sagemaker.runners import (
    JobRunner,
    JobState,
    ProcessingJobRunner,
    TrainingJobRunner,
    TransformJobRunner,
)
from skinlesion.backends.sagemaker.s3 import S3DataPlane, S3Uri, is_s3_uri, join_uri
from skinlesion.backends.sagemaker.tuning import (
    OBJECTIVE_METRIC,
    TuningJobRunner,
    list_trials,
    tuning_job_name,
    tuning_job_request,
)
from skinlesion.batch import PREDICTIONS_FILE, TRANSFORM_SUFFIX, check_image_names, prediction_line
from skinlesion.cost import PriceNotFoundError, job_cost
from skinlesion.monitoring.files import STATISTICS_FILE as BASELINE_STATISTICS_FILE
from skinlesion.settings import Settings

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
# Where jobs write what a step hands on: outside the pipeline root (KFP's launcher downloads an
# input artifact's whole URI prefix into the pod) and outside staging/ (which expires, while the
# registry points at model.tar.gz and the dataset for good).
JOB_OUTPUTS_PREFIX = "job-outputs"
REQUIRED_FOR_JOBS = (
    "region",
    "sagemaker_execution_role_arn",
    "models_bucket",
    "training_image_repository_url",
)
REQUIRED_FOR_REGISTRY = ("region", "models_bucket", "inference_image_repository_url")
REQUIRED_FOR_DEPLOY = ("region", "sagemaker_execution_role_arn")


def tagged_with_run(tag_value: str, run_id: str) -> bool:
    """True when a job's ``skinlesion:run-id`` tag names the run: the run id itself, or (what the
    steps tag) an output artifact URI, whose path holds the run id as one segment in KFP's
    layout ``<pipeline_root>/<pipeline>/<run id>/<task>/<output>``."""
    return tag_value == run_id or run_id in tag_value.split("/")


def console_url(region: str, kind: str, name: str) -> str:
    """The SageMaker console page of a job (``processing-jobs`` or ``jobs``)."""
    return f"https://{region}.console.aws.amazon.com/sagemaker/home?region={region}#/{kind}/{name}"


class SageMakerBackend(Backend):
    """Runs the pipeline's stages on SageMaker through boto3."""

    name = "sagemaker"

    def __init__(
        self,
        settings: Settings,
        clients: AwsClients,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        log_page_size: int | None = None,
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.sleep = sleep
        self.clock = clock
        self.log_page_size = log_page_size

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> SageMakerBackend:
        """Settings from Terraform's outputs and SKINLESION_* (read now), and their clients."""
        settings = Settings.from_environment(env)
        settings.require("region")
        return cls(settings, AwsClients.from_settings(settings))

    # --- parts, built on first use ------------------------------------------------------------
    @property
    def data_plane(self) -> S3DataPlane:
        return S3DataPlane(
            self.clients.client("s3"),
            self.settings.staging_root,
            output_root=self.job_outputs_root,
            kms_key_id=self.settings.kms_key_arn,
        )

    @property
    def job_outputs_root(self) -> str:
        """Where a job writes the data its step's artifact points at:
        ``<root>/<job name>/<output name>/``, the same for every attempt of the step."""
        return f"s3://{self.settings.models_bucket}/{JOB_OUTPUTS_PREFIX}"

    @property
    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.clients.client("sagemaker"), self.data_plane, self.settings)

    @property
    def deployer(self) -> EndpointDeployer:
        return EndpointDeployer(
            self.clients.client("sagemaker"),
            self.clients.client("application-autoscaling"),
            self.clients.client("cloudwatch"),
            self.settings,
            sleep=self.sleep,
            clock=self.clock,
        )

    def _runner(self, runner: type[JobRunner]) -> JobRunner:
        return runner(
            self.clients.client("sagemaker"),
            self.clients.client("logs"),
            poll_seconds=self.settings.poll_seconds,
            timeout_seconds=self.settings.effective_job_timeout_seconds,
            max_attempts=self.settings.max_job_attempts,
            log_page_size=self.log_page_size,
            sleep=self.sleep,
            clock=self.clock,
        )

    def default_model_group(self) -> str:
        """Terraform's model package group: its name is inside the IAM name prefix."""
        self.settings.require("model_package_group_name")
        return self.settings.model_package_group_name

    def default_endpoint_name(self) -> str:
        """Terraform's endpoint name (``<name_prefix>-endpoint``), inside the IAM name prefix."""
        return self.settings.default_endpoint_name

    def artifact_location(self, path: str, uri: str) -> str:
        """The artifact's local path, never its URI: the artifact receives only a pointer.

        KFP's launcher downloads every input artifact's URI prefix into the next pod, so data
        written there would travel into pods that only pass URIs on. A job handed this local
        path writes under ``job_outputs_root`` instead and nothing is downloaded back; the step
        hands the next one that S3 URI (``skinlesion.handoff``).
        """
        return path

    def s3_client(self) -> Any:
        return self.clients.client("s3")

    def job_name_for(
        self, stage: str, explicit: str, run_id: str, task_name: str
    ) -> tuple[str, JobContext]:
        """The job name of a step (explicit, or derived from run and task) and its tags."""
        run = run_id or self.settings.run_id
        context = JobContext(stage=stage, run_id=run, task_name=task_name or stage)
        name = job_name(
            stage,
            prefix=self.settings.name_prefix,
            run_id=run,
            task_name=task_name,
            explicit=explicit,
        )
        return name, context

    # --- jobs -----------------------------------------------------------------------------
    def _run_processing(
        self,
        stage: str,
        request: PreprocessRequest | EvaluateRequest | BaselineRequest | MonitorRequest,
        requested_output: str,
        output_name: str,
        build: Callable[[str, JobContext, S3DataPlane, str], dict[str, Any]],
    ) -> tuple[JobState, str]:
        """The one life of every processing stage: name the job, stage its inputs, build and run
        the request. Returns the final state and the output's S3 URI (left in S3)."""
        self.settings.require(*REQUIRED_FOR_JOBS)
        name, context = self.job_name_for(
            stage, request.job_name, request.run_id, request.task_name
        )
        plane = self.data_plane
        output_uri = plane.output_uri(requested_output, job_name=name, name=output_name)
        state = self._runner(ProcessingJobRunner).run(build(name, context, plane, output_uri))
        return state, output_uri

    def _processing_result(
        self,
        state: JobState,
        output_uri: str,
        metrics: Mapping[str, Any] | None = None,
        **details: Any,
    ) -> JobResult:
        return JobResult(
            job_name=state.name,
            status=state.status,
            output_uri=output_uri,
            remote_output_uri=output_uri,
            metrics={
                k: float(v) for k, v in (metrics or {}).items() if isinstance(v, (int, float))
            },
            details={
                **self._job_details(state, "processing-jobs"),
                "cost": self._processing_cost(state),
                **details,
            },
        )

    def preprocess(self, request: PreprocessRequest) -> JobResult:
        """A processing job running ``skinlesion.jobs.preprocess``."""

        def build(
            name: str, context: JobContext, plane: S3DataPlane, output: str
        ) -> dict[str, Any]:
            data_uri = plane.input_uri(request.data_uri, job_name=name, name="data")
            return preprocess_job_request(
                self.settings, request, job_name=name, data_uri=data_uri, output_uri=output,
                context=context,
            )  # fmt: skip

        state, output = self._run_processing(
            "preprocess", request, request.output_uri, "dataset", build
        )
        splits = self._read_json(join_uri(output, MANIFEST_FILE)).get("splits", {})
        return self._processing_result(state, output, splits=splits)

    def evaluate(self, request: EvaluateRequest) -> JobResult:
        """A processing job running ``skinlesion.jobs.evaluate``; returns metrics.json's numbers."""

        def build(
            name: str, context: JobContext, plane: S3DataPlane, output: str
        ) -> dict[str, Any]:
            return evaluate_job_request(
                self.settings,
                request,
                job_name=name,
                dataset_uri=plane.input_uri(request.dataset_uri, job_name=name, name="dataset"),
                model_uri=plane.input_uri(request.model_uri, job_name=name, name="model"),
                output_uri=output,
                context=context,
            )

        state, output = self._run_processing(
            "evaluate", request, request.output_uri, "evaluation", build
        )
        metrics = self._read_json(join_uri(output, METRICS_FILE))
        return self._processing_result(state, output, metrics)

    def baseline(self, request: BaselineRequest) -> JobResult:
        """A processing job running ``skinlesion.jobs.baseline``."""

        def build(
            name: str, context: JobContext, plane: S3DataPlane, output: str
        ) -> dict[str, Any]:
            raw = request.raw_uri
            return baseline_job_request(
                self.settings,
                request,
                job_name=name,
                dataset_uri=plane.input_uri(request.dataset_uri, job_name=name, name="dataset"),
                model_uri=plane.model_archive_uri(request.model_uri, staging_name=name),
                output_uri=output,
                raw_uri=plane.input_uri(raw, job_name=name, name="data") if raw else "",
                context=context,
            )

        state, output = self._run_processing(
            "baseline", request, request.output_uri, "baseline", build
        )
        return self._processing_result(state, output)

    def capture_root(self, request: MonitorRequest) -> str:
        capture_root = request.capture_uri or self.settings.default_capture_uri
        if not capture_root:
            raise MonitoringSetupError(
                "No capture destination: pass capture_uri or set SKINLESION_CAPTURE_URI / the "
                "Terraform output capture_bucket."
            )
        return capture_root

    def run_monitor_job(
        self, request: MonitorRequest, capture_uri: str, files: list[str]
    ) -> JobResult:
        """A processing job running ``skinlesion.jobs.monitor`` over the window's capture files
        (a ManifestFile input)."""
        baseline_uri = request.baseline_uri or self.deployed_baseline(request.endpoint_name)
        if not baseline_uri:
            raise MonitoringSetupError(
                f"No baseline: the version endpoint {request.endpoint_name} serves records none "
                "in the registry (registered before baselines were kept?). Pass baseline_uri: "
                "the S3 folder the training run's Baseline step wrote for that model."
            )
        request = dataclasses.replace(request, baseline_uri=baseline_uri)
        objects = files
        model_uri = request.model_uri or str(
            self._read_json(join_uri(request.baseline_uri, BASELINE_STATISTICS_FILE))["model"][
                "uri"
            ]
        )

        def build(
            name: str, context: JobContext, plane: S3DataPlane, output: str
        ) -> dict[str, Any]:
            manifest_uri = S3Uri.parse(self.settings.staging_root).join(name, "capture.manifest")
            plane.put_json(manifest_uri, manifest(objects))
            labels = request.labels_uri
            log.info("Monitoring %d capture files with processing job %s", len(objects), name)
            return monitor_job_request(
                self.settings,
                request,
                job_name=name,
                baseline_uri=plane.input_uri(request.baseline_uri, job_name=name, name="baseline"),
                model_uri=plane.model_archive_uri(model_uri, staging_name=name),
                manifest_uri=str(manifest_uri),
                output_uri=output,
                labels_uri=plane.input_uri(labels, job_name=name, name="labels") if labels else "",
                context=context,
            )

        state, output = self._run_processing(
            "monitor", request, request.output_uri, "monitor", build
        )
        return self._processing_result(state, output, files=len(objects))

    def list_capture_files(
        self, endpoint_name: str, capture_uri: str, start: datetime | None, end: datetime | None
    ) -> list[str]:
        return window_objects(
            self.clients.client("s3"), capture_prefix(capture_uri, endpoint_name), start, end
        )

    def train(self, request: TrainRequest) -> JobResult:
        """A (spot) training job running ``skinlesion.jobs.train``; checkpoints survive retries."""
        self.settings.require(*REQUIRED_FOR_JOBS)
        name, context = self.job_name_for(
            "train", request.job_name, request.run_id, request.task_name
        )
        plane = self.data_plane
        dataset_uri = plane.input_uri(request.dataset_uri, job_name=name, name="dataset")
        output_path = plane.output_uri(request.model_uri, job_name=name, name="model")
        # One checkpoint prefix per step, shared by its attempts: a retry resumes where the
        # previous attempt (or the spot instance that was reclaimed) stopped.
        checkpoint_uri = request.checkpoint_uri or str(
            S3Uri.parse(self.settings.checkpoint_root).join(name)
        )
        params = training_job_request(
            self.settings,
            request,
            job_name=name,
            dataset_uri=dataset_uri,
            output_path=output_path,
            checkpoint_uri=checkpoint_uri,
            context=context,
        )
        state = self._runner(TrainingJobRunner).run(params)
        description = state.description
        archive = str(description.get("ModelArtifacts", {}).get("S3ModelArtifacts", ""))
        if not archive:
            raise JobOutputMissingError(
                f"Training job {state.name} completed without ModelArtifacts."
            )
        metrics = {
            m["MetricName"]: float(m["Value"]) for m in description.get("FinalMetricDataList", [])
        }
        details = self._job_details(state, "jobs")
        training_seconds = description.get("TrainingTimeInSeconds")
        billable_seconds = description.get("BillableTimeInSeconds")
        if training_seconds and billable_seconds is not None:
            details["spot_savings"] = round(1 - billable_seconds / training_seconds, 4)
        resources = description.get("ResourceConfig", {})
        details["cost"] = self._cost(
            "training",
            str(resources.get("InstanceType", self.settings.training_instance_type)),
            int(resources.get("InstanceCount", 1)),
            float(billable_seconds if billable_seconds is not None else training_seconds or 0),
            spot_savings=float(details.get("spot_savings", 0.0)),
        )
        details.update(
            {
                "checkpoint_uri": checkpoint_uri,
                "training_seconds": training_seconds or 0,
                "billable_seconds": billable_seconds or 0,
            }
        )
        return JobResult(
            job_name=state.name,
            status=state.status,
            output_uri=archive,
            remote_output_uri=archive,
            metrics=metrics,
            details=details,
        )

    def batch_score(self, request: BatchScoreRequest) -> JobResult:
        """Batch Transform over the images with the version's Model (created from the package
        once, as deploy does); the .out answers become ``predictions.jsonl``."""
        self.settings.require(*REQUIRED_FOR_JOBS)
        sagemaker = self.clients.client("sagemaker")
        package = sagemaker.describe_model_package(ModelPackageName=request.model_version_arn)
        status = package.get("ModelApprovalStatus", "")
        if status == ApprovalStatus.REJECTED.value:
            raise ModelNotApprovedError(
                f"Model package {request.model_version_arn} is Rejected; batch scoring takes "
                "Approved or PendingManualApproval versions."
            )
        name, context = self.job_name_for(
            "batch", request.job_name, request.run_id, request.task_name
        )
        plane = self.data_plane
        images_uri = plane.input_uri(request.images_uri, job_name=name, name="images")
        images_uri = images_uri if images_uri.endswith("/") else images_uri + "/"
        prefix = S3Uri.parse(images_uri)
        keys = plane.list_keys(images_uri)
        # Batch Transform would send every object; refuse a non-JPEG before paying for a job.
        check_image_names((k[len(prefix.prefix) :] for k in keys), images_uri)
        model_name = self.deployer.ensure_model(f"{self.settings.name_prefix}-batch", package)
        output_uri = plane.output_uri(request.output_uri, job_name=name, name="predictions")
        transform_uri = join_uri(output_uri, "transform") + "/"
        params = transform_job_request(
            self.settings,
            request,
            job_name=name,
            model_name=model_name,
            images_uri=images_uri,
            output_uri=transform_uri,
            context=context,
        )
        state = self._runner(TransformJobRunner).run(params)
        lines = []
        for key in sorted(keys):
            image = key[len(prefix.prefix) :]
            answer = join_uri(transform_uri, image + TRANSFORM_SUFFIX)
            lines.append(prediction_line(image, self._read_json(answer), request.model_version_arn))
        body = "".join(json.dumps(line) + "\n" for line in lines)
        destination = S3Uri.parse(join_uri(output_uri, PREDICTIONS_FILE))
        plane.put_bytes(destination, body.encode())
        log.info("Scored %d images with transform job %s", len(lines), state.name)
        return JobResult(
            job_name=state.name,
            status=state.status,
            output_uri=output_uri,
            remote_output_uri=output_uri,
            details={
                "images": len(lines),
                "model": model_name,
                "job_arn": str(state.description.get("TransformJobArn", "")),
                "console_url": console_url(self.settings.region, "transform-jobs", state.name),
            },
        )

    def stop_jobs(self, run_id: str) -> list[str]:
        """Stop the InProgress training and processing jobs tagged with the run ``run_id``."""
        if not run_id:
            raise ValueError("stop_jobs needs the pipeline run id; got an empty one.")
        sagemaker = self.clients.client("sagemaker")
        stopped: list[str] = []
        kinds: list[tuple[type[JobRunner], str, str, str, str]] = [
            (TrainingJobRunner, "list_training_jobs", "TrainingJobSummaries",
             "TrainingJobName", "TrainingJobArn"),
            (ProcessingJobRunner, "list_processing_jobs", "ProcessingJobSummaries",
             "ProcessingJobName", "ProcessingJobArn"),
        ]  # fmt: skip
        for runner_type, operation, key, name_key, arn_key in kinds:
            runner = self._runner(runner_type)
            pages = sagemaker.get_paginator(operation).paginate(
                StatusEquals="InProgress", NameContains=self.settings.name_prefix
            )
            for summary in (s for page in pages for s in page.get(key, [])):
                tags = sagemaker.list_tags(ResourceArn=summary[arn_key]).get("Tags", [])
                values = [t["Value"] for t in tags if t["Key"] == RUN_ID_TAG]
                if any(tagged_with_run(v, run_id) for v in values):
                    runner.stop(summary[name_key])
                    stopped.append(str(summary[name_key]))
        log.info("Run %s: stopped %d running jobs %s", run_id, len(stopped), stopped)
        return stopped

    # --- registry -------------------------------------------------------------------------
    def register(self, request: RegisterRequest) -> ModelVersion:
        """A Model Package version in its group; approval decided against the approved ones."""
        self.settings.require(*REQUIRED_FOR_REGISTRY)
        return self.registry.register(request)

    def list_versions(self, model_group: str, *, details: bool = False) -> list[ModelVersion]:
        """Every version of the group, oldest first."""
        return self.registry.list_versions(
            model_group or self.settings.model_package_group_name, details=details
        )

    def describe_version(self, model_version_arn: str) -> ModelVersion:
        """DescribeModelPackage as a ModelVersion (metrics and metadata included)."""
        return self.registry.describe(model_version_arn)

    def set_approval_status(self, model_version_arn: str, status: ApprovalStatus) -> ModelVersion:
        """Approve or reject a version by hand."""
        return self.registry.set_approval_status(model_version_arn, status)

    # --- alarms and metrics -----------------------------------------------------------------
    def notify(self, subject: str, message: str) -> Notification:
        """Publish to the settings' SNS topic."""
        return publish_notification(
            self.clients.client("sns"), self.settings.sns_topic_arn, subject, message
        )

    def publish_metrics(self, metric_data: list[dict[str, Any]]) -> int:
        """PutMetricData into the settings' metrics namespace."""
        return put_metrics(
            self.clients.client("cloudwatch"), self.settings.metrics_namespace, metric_data
        )

    # --- endpoints ------------------------------------------------------------------------
    def deploy(self, request: DeployRequest) -> Endpoint:
        """Deploy an Approved version: create or blue/green update, InService, autoscaling."""
        self.settings.require(*REQUIRED_FOR_DEPLOY)
        return self.deployer.deploy(request)

    def describe_endpoint(self, endpoint_name: str) -> Endpoint:
        """DescribeEndpoint as an ``Endpoint``. The model version it serves is read from the tags
        of its current endpoint config (one per deployment), not the endpoint's own tags, which
        keep the version it was created with through every blue/green update."""
        description = self.deployer.describe_endpoint(endpoint_name)
        if description is None:
            raise EndpointNotFoundError(
                f"No SageMaker endpoint named {endpoint_name!r} in {self.settings.region}."
            )
        sagemaker = self.clients.client("sagemaker")
        config = sagemaker.describe_endpoint_config(
            EndpointConfigName=description["EndpointConfigName"]
        )
        tags = sagemaker.list_tags(ResourceArn=config["EndpointConfigArn"])
        version = next(
            (t["Value"] for t in tags.get("Tags", []) if t["Key"] == "skinlesion:model-package"),
            "",
        )
        capture = description.get("DataCaptureConfig", {}).get("DestinationS3Uri", "")
        return Endpoint(
            name=endpoint_name,
            url=invocation_url(self.settings.region, endpoint_name),
            status=str(description["EndpointStatus"]),
            model_version_arn=version,
            capture_uri=capture,
            details={
                "endpoint_arn": description["EndpointArn"],
                "endpoint_config": description["EndpointConfigName"],
            },
        )

    def delete_endpoint(self, endpoint_name: str) -> None:
        """Delete the endpoint, its autoscaling and its config."""
        if self.deployer.describe_endpoint(endpoint_name) is None:
            raise EndpointNotFoundError(
                f"No SageMaker endpoint named {endpoint_name!r} in {self.settings.region}."
            )
        self.deployer.delete(endpoint_name)

    # --- champion and challenger ------------------------------------------------------------
    def describe_variants(self, endpoint_name: str) -> list[Variant]:
        """The endpoint's production variants (DescribeEndpoint), champion first."""
        if self.deployer.describe_endpoint(endpoint_name) is None:
            raise EndpointNotFoundError(
                f"No SageMaker endpoint named {endpoint_name!r} in {self.settings.region}."
            )
        return self.deployer.describe_variants(endpoint_name)

    def set_traffic(self, endpoint_name: str, weights: Mapping[str, float]) -> list[Variant]:
        """Shift traffic between the variants (UpdateEndpointWeightsAndCapacities)."""
        if self.deployer.describe_endpoint(endpoint_name) is None:
            raise EndpointNotFoundError(
                f"No SageMaker endpoint named {endpoint_name!r} in {self.settings.region}."
            )
        return self.deployer.set_traffic(endpoint_name, weights)

    # --- helpers --------------------------------------------------------------------------
    def _cost(
        self,
        usage: str,
        instance_type: str,
        count: int,
        seconds: float,
        *,
        spot_savings: float = 0.0,
    ) -> dict[str, Any]:
        """The job's cost record; an instance type missing from the price table costs the step
        nothing but a warning (usd None): an estimate must not fail a run."""
        try:
            return job_cost(
                self.settings.region, usage, instance_type, count, seconds,
                spot_savings=spot_savings,
            ).as_dict()  # fmt: skip
        except PriceNotFoundError as error:
            log.warning("No cost estimate: %s", error)
            return {"usage": usage, "instance_type": instance_type, "instance_count": count,
                    "billable_seconds": seconds, "usd": None, "spot_savings": spot_savings}  # fmt: skip

    def _processing_cost(self, state: JobState) -> dict[str, Any]:
        description = state.description
        cluster = description.get("ProcessingResources", {}).get("ClusterConfig", {})
        start, end = description.get("ProcessingStartTime"), description.get("ProcessingEndTime")
        seconds = (end - start).total_seconds() if start and end else 0.0
        return self._cost(
            "processing",
            str(cluster.get("InstanceType", self.settings.processing_instance_type)),
            int(cluster.get("InstanceCount", 1)),
            seconds,
        )

    def _job_details(self, state: JobState, console_kind: str) -> dict[str, Any]:
        arn_key = "TrainingJobArn" if console_kind == "jobs" else "ProcessingJobArn"
        return {
            "job_arn": str(state.description.get(arn_key, "")),
            "console_url": console_url(self.settings.region, console_kind, state.name),
        }

    def _read_json(self, uri: str) -> dict[str, Any]:
        if is_s3_uri(uri):
            value = self.data_plane.read_json(uri)
        else:
            path = Path(uri)
            if not path.exists():
                raise JobOutputMissingError(f"No {path.name} at {uri}.")
            value = json.loads(path.read_text())
        if not isinstance(value, dict):
            raise JobOutputMissingError(f"{uri} holds a {type(value).__name__}, not a JSON object.")
        return value

    # --- tuning -----------------------------------------------------------------------------
    def tune(self, request: TuneRequest) -> TuneResult:
        """A hyperparameter tuning job (Bayesian, early stopping Auto) over the train stage's
        training job; the best trial's model.tar.gz is handed on as the train step's would be."""
        self.settings.require(*REQUIRED_FOR_JOBS)
        run = request.run_id or self.settings.run_id
        context = JobContext(stage="tune", run_id=run, task_name=request.task_name or "tune")
        name = request.job_name or tuning_job_name(
            self.settings.name_prefix, run, request.task_name
        )
        plane = self.data_plane
        dataset_uri = plane.input_uri(request.dataset_uri, job_name=name, name="dataset")
        output_path = plane.output_uri(request.model_uri, job_name=name, name="model")
        training = training_job_request(
            self.settings,
            TrainRequest(
                dataset_uri=dataset_uri, model_uri=request.model_uri, config=request.config
            ),
            job_name=name,
            dataset_uri=dataset_uri,
            output_path=output_path,
            checkpoint_uri=str(S3Uri.parse(self.settings.checkpoint_root).join(name)),
            context=context,
        )
        params = tuning_job_request(request, name=name, training=training)
        state = self._runner(TuningJobRunner).run(params)
        best_summary = state.description.get("BestTrainingJob") or {}
        best_name = str(best_summary.get("TrainingJobName", ""))
        if not best_name:
            raise JobOutputMissingError(
                f"Tuning job {state.name} completed without a BestTrainingJob: no trial reported "
                f"{OBJECTIVE_METRIC}."
            )
        sagemaker = self.clients.client("sagemaker")
        described: dict[str, Mapping[str, Any]] = {}
        trials: list[Trial] = []
        for summary in list_trials(sagemaker, state.name):
            trial_name = str(summary["TrainingJobName"])
            described[trial_name] = sagemaker.describe_training_job(TrainingJobName=trial_name)
            final = summary.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
            trials.append(
                Trial(
                    job_name=trial_name,
                    status=str(summary["TrainingJobStatus"]),
                    hyperparameters={
                        k: float(v) for k, v in summary.get("TunedHyperParameters", {}).items()
                    },
                    objective=float(final["Value"]) if "Value" in final else None,
                )
            )
        best = described.get(best_name) or sagemaker.describe_training_job(
            TrainingJobName=best_name
        )
        archive = str(best.get("ModelArtifacts", {}).get("S3ModelArtifacts", ""))
        if not archive:
            raise JobOutputMissingError(
                f"Best training job {best_name} of tuning job {state.name} has no ModelArtifacts."
            )
        # What the tuning job cost: every trial's billable instance time, not only the best's.
        costs = [self._training_job_cost(d) for d in described.values()]
        known = [c["usd"] for c in costs if c.get("usd") is not None]
        cost = {
            "usage": "training",
            "trials": len(costs),
            "billable_seconds": sum(float(c.get("billable_seconds", 0)) for c in costs),
            "usd": round(sum(known), 4) if known and len(known) == len(costs) else None,
        }
        objective = float(
            (best_summary.get("FinalHyperParameterTuningJobObjectiveMetric") or {}).get("Value", 0)
        )
        details = {
            "job_arn": str(state.description.get("HyperParameterTuningJobArn", "")),
            "console_url": console_url(self.settings.region, "hyper-tuning-jobs", state.name),
            "cost": cost,
        }
        result = JobResult(
            job_name=best_name,
            status=JobStatus(str(best.get("TrainingJobStatus", "Completed"))),
            output_uri=archive,
            remote_output_uri=archive,
            metrics={
                m["MetricName"]: float(m["Value"]) for m in best.get("FinalMetricDataList", [])
            },
            details={**details, "tuning_job_name": state.name},
        )
        return TuneResult(
            tuning_job_name=state.name,
            best=result,
            objective_metric=OBJECTIVE_METRIC,
            objective_value=objective,
            trials=tuple(trials),
            details=details,
        )

    def _training_job_cost(self, description: Mapping[str, Any]) -> dict[str, Any]:
        training_seconds = description.get("TrainingTimeInSeconds")
        billable = description.get("BillableTimeInSeconds")
        savings = (
            1 - billable / training_seconds if training_seconds and billable is not None else 0
        )
        resources = description.get("ResourceConfig", {})
        return self._cost(
            "training",
            str(resources.get("InstanceType", self.settings.training_instance_type)),
            int(resources.get("InstanceCount", 1)),
            float(billable if billable is not None else training_seconds or 0),
            spot_savings=round(float(savings), 4),
        )
