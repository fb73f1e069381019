"""Each supported KFP backend accepts what `make compile KFP_BACKEND=<release>` emits for it.

The stand-in plays each release's API server and driver with that release's own protos (see
fake_kfp.py and protos/regenerate.py for the sources); nothing here trusts the installed kfp.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
import requests
import yaml
from tests.kubeflow.conftest import REPO_ROOT
from tests.kubeflow.fake_kfp import API, FakeKfp, FakeKfpState

from skinlesion.kubeflow.compiling import CompileOptions, compile_pipeline
from skinlesion.kubeflow.discovery import get_pipeline
from skinlesion.kubeflow.targets import SUPPORTED_BACKENDS, UnsupportedBackendError, target
from skinlesion.kubeflow.validation import PipelineValidationError, validate_documents

PIPELINES = ("training", "monitoring")
# The training pipeline's compile-time tuning modes beside its default (none): each graph must
# suit every release (compile.tuning, docs/training.md "Tuning").
TUNING_VARIANTS = ("training:sweep", "training:sagemaker")


@functools.cache
def _compiled(name: str, release: str) -> str:
    pipeline, _, tuning = name.partition(":")
    options = CompileOptions(kfp_backend=release, **({"tuning": tuning} if tuning else {}))
    return compile_pipeline(get_pipeline(pipeline), options).text


def _upload(fake: FakeKfp, name: str, text: str) -> requests.Response:
    return requests.post(
        f"{fake.url}{API}/pipelines/upload",
        params={"name": name, "namespace": ""},
        files={"uploadfile": (f"{name}.yaml", text.encode(), "application/x-yaml")},
        timeout=10,
    )


def _run(fake: FakeKfp, version_id: str) -> dict[str, Any]:
    body = {
        "display_name": "r",
        "pipeline_version_reference": {"pipeline_version_id": version_id},
    }
    response = requests.post(f"{fake.url}{API}/runs", json=body, timeout=10)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


@pytest.mark.parametrize("release", SUPPORTED_BACKENDS)
@pytest.mark.parametrize("name", PIPELINES + TUNING_VARIANTS)
def test_each_release_accepts_and_keeps_what_is_compiled_for_it(name: str, release: str) -> None:
    text = _compiled(name, release)
    with FakeKfp(FakeKfpState(multi_user=False, server_version=release)) as fake:
        response = _upload(fake, name.replace(":", "-"), text)
        assert response.status_code == 200, response.text
        (version_id,) = fake.state.versions
        assert fake.state.dropped_platform_specs == {}
        assert version_id in fake.state.platform_specs  # the pods keep their settings
        run = _run(fake, version_id)
        assert run["state"] == "PENDING", run.get("error")


def test_a_2_17_file_loses_its_platform_spec_on_2_16_and_our_check_names_the_field() -> None:
    text = _compiled("training", "2.17.0")
    with FakeKfp(FakeKfpState(multi_user=False, server_version="2.16.0")) as fake:
        response = _upload(fake, "training", text)
        # The real 2.16 server answers 200 and ignores the platform spec (v2_template.go):
        assert response.status_code == 200, response.text
        (dropped,) = fake.state.dropped_platform_specs.values()
        assert "resourceTtlOnCompletion" in dropped
        assert fake.state.platform_specs == {}
    with pytest.raises(PipelineValidationError, match=r"KFP 2.16.0.*'resourceTtlOnCompletion'"):
        validate_documents(list(yaml.safe_load_all(text)), target("2.16.0"))


def test_configmap_optional_fails_the_2_14_driver() -> None:
    text = _compiled("training", "2.17.0")
    documents = list(yaml.safe_load_all(text))
    del documents[1]["platforms"]["kubernetes"]["pipelineConfig"]  # so the upload keeps it
    with FakeKfp(FakeKfpState(multi_user=False, server_version="2.14.0")) as fake:
        assert _upload(fake, "training", yaml.safe_dump_all(documents)).status_code == 200
        (version_id,) = fake.state.versions
        run = _run(fake, version_id)
    assert run["state"] == "FAILED"
    assert "optional" in run["error"]["message"]
    with pytest.raises(PipelineValidationError, match='no field named "optional"'):
        validate_documents(documents, target("2.14.0"))


def test_an_unknown_pipeline_spec_field_is_a_400_like_the_server() -> None:
    documents = list(yaml.safe_load_all(_compiled("training", "2.2.0")))
    documents[0]["pipelineInfo"]["colour"] = "blue"
    with FakeKfp(FakeKfpState(multi_user=False, server_version="2.2.0")) as fake:
        response = _upload(fake, "training", yaml.safe_dump_all(documents))
    assert response.status_code == 400
    assert "invalid v2 pipeline spec" in response.text and "colour" in response.text


@pytest.mark.parametrize("release", ["2.2.0", "2.16.0"])
def test_older_targets_emit_no_ttl_and_2_17_emits_resource_ttl_on_completion(release: str) -> None:
    platform = list(yaml.safe_load_all(_compiled("training", release)))[1]
    assert "pipelineConfig" not in platform["platforms"]["kubernetes"]
    newest = list(yaml.safe_load_all(_compiled("training", "2.17.0")))[1]
    assert newest["platforms"]["kubernetes"]["pipelineConfig"] == {
        "resourceTtlOnCompletion": 3 * 24 * 3600
    }


def test_an_unsupported_release_is_refused_naming_the_supported_ones() -> None:
    with pytest.raises(UnsupportedBackendError, match=r"'2\.1\.0'.*2\.2\.0, 2\.3\.0"):
        CompileOptions(kfp_backend="2.1.0")


def test_submit_refuses_a_server_of_another_release_naming_both() -> None:
    from skinlesion.kubeflow.submit import BackendMismatchError, check_server_version

    check_server_version("2.5.0", "2.5.0")
    check_server_version("unknown", "2.2.0")  # not reported: a warning, no refusal
    with pytest.raises(BackendMismatchError, match=r"runs 2\.16\.0.*KFP 2\.2\.0.*KFP_BACKEND=2"):
        check_server_version("2.16.0", "2.2.0")


def test_healthz_reports_the_release_like_the_server_main_go() -> None:
    with FakeKfp(FakeKfpState(multi_user=False, server_version="2.5.0")) as fake:
        body = requests.get(f"{fake.url}{API}/healthz", timeout=10).json()
    assert body["tag_name"] == "2.5.0" and body["multi_user"] is False


@pytest.mark.parametrize("release", SUPPORTED_BACKENDS)
def test_the_trigger_pod_gets_the_label_of_the_kfp_token_poddefault(release: str) -> None:
    """Only the retraining trigger's pod carries access-ml-pipeline=true (the label that
    manifests/base/access-ml-pipeline.yaml selects) and learns its own service account; every
    release keeps both: podMetadata and fieldPathAsEnv are in kubernetes_executor_config.proto
    from 2.2.0, whose Argo compiler copies podMetadata onto the pod (argocompiler/container.go,
    extendPodMetadata), and the stand-in parses them with the release's protos."""
    manifest = yaml.safe_load(
        (REPO_ROOT / "manifests" / "base" / "access-ml-pipeline.yaml").read_text()
    )
    selector = manifest["spec"]["selector"]["matchLabels"]
    text = _compiled("monitoring", release)
    platform = list(yaml.safe_load_all(text))[1]
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    labelled = {
        name
        for name, config in executors.items()
        if selector.items() <= config.get("podMetadata", {}).get("labels", {}).items()
    }
    assert labelled == {"exec-trigger-retraining"}
    trigger = executors["exec-trigger-retraining"]
    assert trigger["fieldPathAsEnv"] == [
        {"name": "SKINLESION_RUN_SERVICE_ACCOUNT", "fieldPath": "spec.serviceAccountName"}
    ]
    with FakeKfp(FakeKfpState(multi_user=False, server_version=release)) as fake:
        assert _upload(fake, "monitoring", text).status_code == 200
        (version_id,) = fake.state.versions
        kept = fake.state.platform_specs[version_id]["platforms"]["kubernetes"]
        kept_trigger = kept["deploymentSpec"]["executors"]["exec-trigger-retraining"]
        assert kept_trigger["podMetadata"]["labels"]["access-ml-pipeline"] == "true"
        assert _run(fake, version_id)["state"] == "PENDING"
