"""Exit status: record how the run ended, and stop its SageMaker jobs unless it succeeded."""

from kfp import dsl
from kfp.dsl import Artifact, Output

from components import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def exit_status(
    pipeline: str,
    status: dsl.PipelineTaskFinalStatus,
    record: Output[Artifact],
    backend: str = "",
    run_id: str = "",
) -> str:
    """Write the final state of the run (and its error, if any) to ``record``; return the state.

    A step's SIGTERM leaves its job running (a drained node looks like a cancel), so this is
    where a cancelled or failed run's jobs are stopped.

    Args:
        pipeline: The pipeline's name, for the record.
        status: Filled in by KFP: the state of the task group the exit handler watched.
        backend: ``local`` or ``sagemaker``; empty: record only, stop nothing.
        run_id: The KFP run id (dsl.PIPELINE_JOB_ID_PLACEHOLDER); empty: the status's run.
    """
    from skinlesion import steps
    from skinlesion.kubeflow.status import FinalStatus, record_final_status

    final = FinalStatus.from_kfp(pipeline, status)
    state = record_final_status(final, record.path)
    if backend:
        steps.stop_run_jobs(backend=backend, run_id=run_id or final.run, state=final.state)
    return state
