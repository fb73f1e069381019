"""The training pipeline under kfp.local on the SageMaker backend, against moto's server.

Each component runs in its own subprocess (KFP's SubprocessRunner) and makes its SageMaker calls
over HTTP to moto: CreateProcessingJob, CreateTrainingJob, CreateModelPackage, CreateModel,
CreateEndpointConfig, CreateEndpoint, RegisterScalableTarget, PutScalingPolicy. moto only
records jobs (they finish at once and write nothing); ``JobSimulator`` executes each recorded
job's module with SageMaker's container layout, so the outputs that flow from step to step are
real. Endpoints on moto serve nothing: the deploy step is checked through the API's records.

It also measures what KFP's launcher would download into each pod (``artifact_bytes``): the
bytes of every input artifact. The steps hand each other pointers to the jobs' S3 outputs, so
that is kilobytes, where it was the whole dataset and model.tar.gz (docs/kubeflow.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.aws.artifact_bytes import input_bytes
from tests.aws.helpers import BUCKETS, make_settings
from tests.aws.job_simulator import JobSimulator

from skinlesion.aws import AwsClients
from skinlesion.backends.sagemaker.s3 import S3DataPlane, S3Uri
from skinlesion.settings import env_name

GROUP = "skinlesion-kfp-moto"
ENDPOINT = "skinlesion-kfp-moto"
# What a pod may download for one input artifact: a pointer and the step's job record, never data.
POINTER_LIMIT = 64 * 1024


@pytest.mark.slow
def test_training_pipeline_makes_its_sagemaker_calls(
    endpoint: str,
    sample_data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kfp import local

    from pipelines.training import training_pipeline

    settings = make_settings(endpoint, poll_seconds=0.2)
    clients = AwsClients.from_settings(settings)
    s3 = clients.client("s3")
    for bucket in BUCKETS.values():
        s3.create_bucket(Bucket=bucket)
    # The component subprocesses read their settings from the environment, as the pods do from
    # the settings ConfigMap.
    for name, value in settings.as_dict().items():
        if value not in ("", None, []):
            text = (
                ",".join(value)
                if isinstance(value, list)
                else str(value).lower()
                if isinstance(value, bool)
                else str(value)
            )
            monkeypatch.setenv(env_name(name), text)
    data = S3Uri.parse(f"s3://{BUCKETS['data_bucket']}/isic-sample")
    S3DataPlane(s3, "s3://unused/").upload(sample_data_dir, data)

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    with JobSimulator(endpoint, tmp_path / "jobs").active() as simulator:
        training_pipeline(
            data_uri=str(data),
            backend="sagemaker",
            architecture="mobilenet_v2",
            pretrained="none",
            epochs=1,
            batch_size=32,
            image_size=32,
            threshold=0.0,
            model_group=GROUP,
            endpoint_name=ENDPOINT,
        )
    measured = input_bytes(tmp_path / "root", training_pipeline.pipeline_spec)
    print(f"input artifact bytes per task: {measured}")
    assert set(measured) == {"train", "evaluate", "baseline", "register"}, measured
    oversized = {
        f"{task}.{name}": size
        for task, inputs in measured.items()
        for name, size in inputs.items()
        if size > POINTER_LIMIT
    }
    assert not oversized, f"input artifacts carry data, not pointers: {measured}"
    # Each artifact holds a pointer to its job's output in S3 (and the job record, where the
    # step keeps one), under job-outputs/<job>/: outside the pipeline root and outside the
    # expiring staging/.
    [run] = (tmp_path / "root").iterdir()
    plane = S3DataPlane(s3, "s3://unused/")
    outputs = f"s3://{BUCKETS['models_bucket']}/job-outputs/"
    recorded = ["job.json", "pointer.json"]
    for folder, files, data_file in (
        ("preprocess/dataset", recorded, "manifest.json"),
        ("train/model", recorded, ""),
        ("evaluate/evaluation", recorded, "metrics.json"),
        ("baseline/baseline", ["pointer.json"], "statistics.json"),
    ):
        artifact = run / folder
        assert sorted(p.name for p in artifact.iterdir()) == files, folder
        pointed = json.loads((artifact / "pointer.json").read_text())["uri"]
        assert pointed.startswith(outputs), (folder, pointed)
        target = pointed if not data_file else f"{pointed.rstrip('/')}/{data_file}"
        assert plane.exists(target), target
    sagemaker: Any = clients.client("sagemaker")
    stages = [name.split("-")[2] for name in simulator.started]
    # baseline and evaluate both follow train; the pipeline fixes no order between them.
    assert stages[:2] == ["preprocess", "train"], simulator.started
    assert sorted(stages[2:]) == ["baseline", "evaluate"], simulator.started
    # Every job is named after its task's output (no time-stamped name): a retry re-attaches.
    assert all(len(name.split("-")) == 4 for name in simulator.started), simulator.started
    # The baseline job wrote the model's monitoring baseline to S3.
    [baseline_job] = [n for n in simulator.started if n.split("-")[2] == "baseline"]
    written = {
        o["Key"].rsplit("/", 1)[-1]
        for o in s3.list_objects_v2(Bucket=BUCKETS["models_bucket"]).get("Contents", [])
        if baseline_job in o["Key"]
    }
    assert {"statistics.json", "constraints.json", "reference.npz"} <= written, written
    training = sagemaker.describe_training_job(TrainingJobName=simulator.started[1])
    assert training["HyperParameters"]["architecture"] == "mobilenet_v2"
    assert training["HyperParameters"]["epochs"] == "1"

    packages = sagemaker.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]
    assert [p["ModelApprovalStatus"] for p in packages] == ["Approved"]
    package = sagemaker.describe_model_package(ModelPackageName=packages[0]["ModelPackageArn"])
    model_data = package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    assert model_data.startswith(outputs) and model_data.endswith("/output/model.tar.gz")
    described = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    assert described["EndpointStatus"] == "InService"
    config = sagemaker.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
    assert config["DataCaptureConfig"]["EnableCapture"] is True
    targets = clients.client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace="sagemaker"
    )["ScalableTargets"]
    assert [(t["MinCapacity"], t["MaxCapacity"]) for t in targets] == [(1, 5)]
    # The run's cost: each step's job priced from the table (moto's jobs report their billable
    # seconds), the total in the evaluation report's section and in the registry entry.
    import re

    report = run / "evaluate" / "report"
    html = (next(report.glob("*.html")) if report.is_dir() else report).read_text()
    section = re.search(r'id="run-cost".*?</section>', html, re.S)
    assert section, "the evaluation report has no cost section"
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", section.group(0)))
    print(f"cost of the simulated run: {text}")
    rows = dict(re.findall(r"(preprocess|train|evaluate|total \(known steps\)) (\d+\.\d{4})", text))
    assert set(rows) == {"preprocess", "train", "evaluate", "total (known steps)"}, text
    steps_total = sum(float(rows[s]) for s in ("preprocess", "train", "evaluate"))
    assert float(rows["total (known steps)"]) == pytest.approx(steps_total, abs=2e-4)
    recorded = package.get("CustomerMetadataProperties", {}).get("run_cost_usd")
    assert recorded and float(recorded) == pytest.approx(steps_total, abs=2e-4), package
