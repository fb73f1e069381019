"""The compiled YAML, loaded back, runs on kfp.local with the local backend.

This is the file Kubeflow receives, not the Python graph: ``load_component_from_file`` reads the
IR YAML and KFP's SubprocessRunner executes each task from it (the Kubernetes platform spec is
what kfp.local ignores). Nothing is mocked: the jobs, the folder registry and the endpoint are
the local backend's real ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from skinlesion.kubeflow.compiling import CompiledPipeline
from skinlesion.kubeflow.validation import load_documents

pytestmark = [
    pytest.mark.slow,
    # kfp.local says what it cannot honour (pod resources, the container image): expected here.
    pytest.mark.filterwarnings("ignore:Task .* have no effect:UserWarning"),
    pytest.mark.filterwarnings("ignore:You may be attemping to run a task:RuntimeWarning"),
]


def _write(documents: list[dict[str, Any]], path: Path) -> Path:
    path.write_text(yaml.safe_dump_all(documents, sort_keys=True))
    return path


@pytest.fixture
def local_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from kfp import local

    monkeypatch.setenv("SKINLESION_LOCAL_ROOT", str(tmp_path / "local"))
    pipeline_root = tmp_path / "pipeline-root"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root))
    return pipeline_root


def _final_status(pipeline_root: Path) -> dict[str, Any]:
    [record] = list(pipeline_root.rglob("status.json"))
    return json.loads(record.read_text())


def test_compiled_training_pipeline_runs_end_to_end_on_kfp_local(
    compiled_training: CompiledPipeline,
    sample_data_dir: Path,
    local_backend: Path,
    tmp_path: Path,
) -> None:
    from kfp.components import load_component_from_file

    from skinlesion.backends.local import LocalBackend

    path = tmp_path / "training.yaml"
    path.write_text(compiled_training.text)
    pipeline = load_component_from_file(str(path))
    backend = LocalBackend.from_environment()
    try:
        pipeline(
            data_uri=str(sample_data_dir),
            backend="local",
            architecture="mobilenet_v2",
            pretrained="none",
            epochs=1,
            batch_size=16,
            image_size=32,
            threshold=0.0,  # the gate passes: register and deploy run
            model_group="kf-local",
            endpoint_name="kf-local",
            git_commit="0123456789abcdef",
        )
        [version] = backend.list_versions("kf-local")
        assert version.approval_status.value == "Approved"
        assert version.metadata.get("git_commit") == "0123456789abcdef"
        endpoint = backend.describe_endpoint("kf-local")
        assert endpoint.model_version_arn == version.arn
    finally:
        backend.delete_endpoint("kf-local")
    status = _final_status(local_backend)
    assert status["state"] == "SUCCEEDED"
    assert status["pipeline"] == "skinlesion-training"
    assert status["error_code"] is None


def test_the_exit_handler_records_a_failed_run(
    compiled_training: CompiledPipeline,
    local_backend: Path,
    tmp_path: Path,
) -> None:
    from kfp.components import load_component_from_file

    documents = load_documents(compiled_training.text)
    # Without the retries (and their backoff) of the AWS steps: this failure is not transient.
    for component in [documents[0]["root"], *documents[0]["components"].values()]:
        for task in component.get("dag", {}).get("tasks", {}).values():
            task.pop("retryPolicy", None)
    pipeline = load_component_from_file(str(_write(documents, tmp_path / "no-retries.yaml")))
    with pytest.raises(RuntimeError, match="preprocess"):
        pipeline(data_uri=str(tmp_path / "no-such-folder"), backend="local")
    status = _final_status(local_backend)
    assert status["state"] == "FAILED"
    assert status["error_code"] is not None
    assert status["error_message"]
