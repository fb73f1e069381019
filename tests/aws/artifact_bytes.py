"""What KFP's launcher would download into each step's pod: the bytes of its input artifacts.

On Kubeflow the launcher copies every input artifact's URI prefix into the pod before the
component starts. Under kfp.local an artifact's URI is its local folder
(``<pipeline root>/<run>/<component>/<output>``, kfp/local/executor_input_utils.py), so the
bytes of that folder are what a pod would pull. Which task consumes which artifact is read from
the compiled pipeline spec (``taskOutputArtifact``), not typed here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

COMPONENT_PREFIX = "comp-"  # kfp.local names a task's folder after its component, minus this


def artifact_inputs(pipeline_spec: Any) -> dict[str, dict[str, tuple[str, str]]]:
    """Every task that takes artifacts from another task: {task: {input: (component, output)}}.

    Walks the root DAG and every sub-DAG (exit handler, conditions) of a compiled
    ``PipelineSpec``; the producer is named by its component, as kfp.local names its folder.
    """
    dags = [pipeline_spec.root.dag] + [
        c.dag for c in pipeline_spec.components.values() if c.HasField("dag")
    ]
    tasks = {name: task for dag in dags for name, task in dag.tasks.items()}
    consumed: dict[str, dict[str, tuple[str, str]]] = {}
    for name, task in tasks.items():
        for input_name, argument in task.inputs.artifacts.items():
            if not argument.HasField("task_output_artifact"):
                continue
            producer = tasks[argument.task_output_artifact.producer_task]
            component = producer.component_ref.name.removeprefix(COMPONENT_PREFIX)
            output = argument.task_output_artifact.output_artifact_key
            consumed.setdefault(name, {})[input_name] = (component, output)
    return consumed


def folder_bytes(path: Path) -> int:
    """The bytes of every file under ``path`` (or of the file itself)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def input_bytes(pipeline_root: Path, pipeline_spec: Any) -> dict[str, dict[str, int]]:
    """Per consuming task, the bytes of each input artifact of the one run under the root."""
    [run] = [p for p in pipeline_root.iterdir() if p.is_dir()]
    measured: dict[str, dict[str, int]] = {}
    for task, inputs in sorted(artifact_inputs(pipeline_spec).items()):
        for input_name, (component, output) in sorted(inputs.items()):
            folder = run / component / output
            if not folder.exists():
                raise FileNotFoundError(
                    f"Task {task}'s input {input_name} should be at {folder}: the producer "
                    f"{component} did not write its {output} artifact."
                )
            measured.setdefault(task, {})[input_name] = folder_bytes(folder)
    return measured
