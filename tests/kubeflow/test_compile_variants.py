"""Champion and challenger in the compiled pipelines: the deploy pipeline's challenger inputs
reach its deploy step, and the promote pipeline compiles and validates strictly."""

from __future__ import annotations

import json

from tests.kubeflow.conftest import PIPELINES_DIR

from skinlesion.kubeflow.compiling import compile_pipeline
from skinlesion.kubeflow.discovery import get_pipeline
from skinlesion.kubeflow.validation import load_documents


def test_the_deploy_pipeline_passes_its_challenger_to_the_deploy_step() -> None:
    compiled = compile_pipeline(get_pipeline("deploy", PIPELINES_DIR))
    inputs = compiled.validated.inputs()
    assert inputs["challenger_model_version_arn"].optional
    assert inputs["challenger_traffic_percent"].parameter_type == "NUMBER_INTEGER"
    spec = load_documents(compiled.text)[0]
    wired = spec["root"]["dag"]["tasks"]["deploy"]["inputs"]["parameters"]
    for name in ("challenger_model_version_arn", "challenger_traffic_percent"):
        assert name in json.dumps(wired[name])
    defaults = spec["root"]["inputDefinitions"]["parameters"]
    assert defaults["challenger_traffic_percent"]["defaultValue"] == 0


def test_the_promote_pipeline_is_one_strictly_valid_promote_step() -> None:
    compiled = compile_pipeline(get_pipeline("promote", PIPELINES_DIR))
    assert compiled.validated.name == "skinlesion-promote"
    inputs = compiled.validated.inputs()
    assert not inputs["endpoint_name"].optional
    assert inputs["margin"].parameter_type == "NUMBER_DOUBLE"
    spec = load_documents(compiled.text)[0]
    assert list(spec["root"]["dag"]["tasks"]) == ["promote"]
    task = spec["root"]["dag"]["tasks"]["promote"]
    assert task["cachingOptions"] == {} or not task["cachingOptions"].get("enableCache")
    # Its failures are of its parameters or the endpoint's state: one attempt (proto3 drops a
    # maxRetryCount of 0), so "no challenger" is the run's last message, not three of them.
    assert task.get("retryPolicy", {}).get("maxRetryCount", 0) == 0
    executor = spec["deploymentSpec"]["executors"]["exec-promote"]["container"]
    assert "promote_challenger" in json.dumps(executor)
