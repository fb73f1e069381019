"""Task settings that a production run needs, applied by the pipelines to their tasks.

A pipeline file only wires tasks; it passes each task through :func:`aws_step` (a step that
calls AWS through the backend) or :func:`note_step` (a step that only writes a record), and
decorates itself with :func:`pipeline_config`. What they set, and why:

- retries with exponential backoff on every AWS step: throttling, a spot interruption or an
  evicted pod should not fail a monthly run (the SageMaker backend names its jobs after the run
  and task, so a retried step re-attaches to its job instead of starting a second one);
- caching keyed by inputs on preprocess/train/evaluate (a resubmitted run reuses them), never on
  register/deploy (each run must register and deploy for real);
- small CPU/memory requests: on Kubeflow the pod only orchestrates, SageMaker does the work;
- the AWS settings (region, roles, buckets, images: ``skinlesion.settings``) injected as
  environment variables from the namespace's ConfigMap with kfp-kubernetes, so the compiled YAML
  carries no account details;
- a label on every pod, and a TTL after which Argo deletes the finished workflow and its pods.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, fields

from kfp import dsl, kubernetes

# The ConfigMap that manifests/ creates in each profile namespace: its keys are the variables of
# skinlesion.settings (SKINLESION_<FIELD>), so each key maps to the variable of the same name.
SETTINGS_CONFIG_MAP = "skinlesion-settings"
# Settings a namespace-wide ConfigMap must never carry (they differ per run).
PER_RUN_SETTINGS = ("run_id",)
# Variables read outside skinlesion.settings.
EXTRA_SETTINGS_ENV = ("SKINLESION_LOG_LEVEL",)


def settings_env() -> tuple[str, ...]:
    """The variables a step takes from the ConfigMap: every setting of the SageMaker backend."""
    from skinlesion.settings import Settings, env_name

    names = [env_name(f.name) for f in fields(Settings) if f.name not in PER_RUN_SETTINGS]
    return (*names, *EXTRA_SETTINGS_ENV)


# part-of for cost allocation and selection; skinlesion/settings=true lets Kubeflow's PodDefault
# (manifests/base/poddefault.yaml) inject the whole ConfigMap as well, which covers settings added
# after this pipeline was compiled. The explicit variables below work without Kubeflow's webhook.
POD_LABELS: dict[str, str] = {
    "app.kubernetes.io/part-of": "skinlesion",
    "skinlesion/settings": "true",
}

# The label that Kubeflow's access-ml-pipeline PodDefault selects (manifests/base/
# access-ml-pipeline.yaml): it projects a service-account token for the KFP API into the pod, which
# a step that starts a run (retraining) signs in with. Pod labels reach the pod on every supported
# backend: the 2.2.0 Argo compiler copies podMetadata into the executor template's metadata
# (backend/src/v2/compiler/argocompiler/container.go, extendPodMetadata).
KFP_API_ACCESS_LABEL = ("access-ml-pipeline", "true")

# Argo deletes a finished run's workflow, and with it the pods, after this long; the run's
# record, metrics and artifacts stay in the KFP database and the S3 pipeline root.
FINISHED_RUN_TTL_SECONDS = 3 * 24 * 3600


@dataclass(frozen=True)
class RetryPolicy:
    """``PipelineTask.set_retry`` arguments (durations as KFP writes them, e.g. ``"30s"``)."""

    num_retries: int = 2
    backoff_duration: str = "30s"
    backoff_factor: float = 2.0
    backoff_max_duration: str = "600s"


@dataclass(frozen=True)
class PodResources:
    """Kubernetes requests and limits of a step's pod."""

    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str


AWS_RETRY = RetryPolicy()
# A local run (make demo) has no throttling, capacity or eviction to wait out: a job that fails
# there fails on its data, parameters or code, and would fail the same way again.
NO_RETRY = RetryPolicy(num_retries=0)
_retry_policy: list[RetryPolicy] = [AWS_RETRY]


@contextlib.contextmanager
def retry_policy(policy: RetryPolicy) -> Iterator[None]:
    """Build the pipelines called inside this block with ``policy`` on their AWS steps."""
    _retry_policy.append(policy)
    try:
        yield
    finally:
        _retry_policy.pop()


# The pod starts a SageMaker job and streams its logs: a quarter core is plenty.
ORCHESTRATION_RESOURCES = PodResources("250m", "512Mi", "1", "2Gi")
# With backend=local on a cluster the jobs run inside the step's pod (``compile
# --jobs-in-pod`` raises these steps to this size; see docs/kubeflow.md).
IN_POD_JOB_RESOURCES = PodResources("2", "8Gi", "4", "16Gi")
# tune: the local backend trains its trials one after another in the same pod.
IN_POD_JOB_COMPONENTS: tuple[str, ...] = ("preprocess", "train", "tune", "evaluate")


def _small_pod(task: dsl.PipelineTask) -> None:
    resources = ORCHESTRATION_RESOURCES
    task.set_cpu_request(resources.cpu_request).set_cpu_limit(resources.cpu_limit)
    task.set_memory_request(resources.memory_request).set_memory_limit(resources.memory_limit)
    for key, value in POD_LABELS.items():
        kubernetes.add_pod_label(task, key, value)


def aws_step(task: dsl.PipelineTask, *, cache: bool) -> dsl.PipelineTask:
    """Settings of a step that calls AWS: retries with backoff, caching as given, a small pod
    and the AWS settings from the ConfigMap. Returns ``task``."""
    retry = _retry_policy[-1]
    task.set_retry(
        num_retries=retry.num_retries,
        backoff_duration=retry.backoff_duration,
        backoff_factor=retry.backoff_factor,
        backoff_max_duration=retry.backoff_max_duration,
    )
    task.set_caching_options(cache)
    _small_pod(task)
    # Not optional: KFP before 2.15 has no such switch, so manifests/base/settings.yaml carries
    # every key (empty = the default in settings.py); tests check that the two agree.
    kubernetes.use_config_map_as_env(
        task,
        config_map_name=SETTINGS_CONFIG_MAP,
        config_map_key_to_env={name: name for name in settings_env()},
    )
    return task


def note_step(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Settings of a step that only writes a record: never cached, a small pod. Returns ``task``."""
    task.set_caching_options(False)
    _small_pod(task)
    return task


def kfp_api_step(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Let the task's pod call the KFP API with its service-account token, and tell it its own
    service account (the one runs it starts should use). Returns ``task``."""
    from skinlesion.kubeflow.settings import RUN_SERVICE_ACCOUNT_ENV

    key, value = KFP_API_ACCESS_LABEL
    kubernetes.add_pod_label(task, key, value)
    # fieldPathAsEnv exists in every supported backend (kubernetes_executor_config.proto and the
    # driver at 2.2.0).
    kubernetes.use_field_path_as_env(
        task, env_name=RUN_SERVICE_ACCOUNT_ENV, field_path="spec.serviceAccountName"
    )
    return task


def pipeline_config() -> dsl.PipelineConfig:
    """Pipeline-level settings: the TTL of a finished run's workflow and pods."""
    return dsl.PipelineConfig(ttl_seconds_after_finished=FINISHED_RUN_TTL_SECONDS)
