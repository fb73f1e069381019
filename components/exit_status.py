"""Exit status: record how the run ended, whatever happened inside the exit handler."""

from kfp import dsl
from kfp.dsl import Artifact, Output

from components import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def exit_status(
    pipeline: str,
    status: dsl.PipelineTaskFinalStatus,
    record: Output[Artifact],
) -> str:
    """Write the final state of the run (and its error, if any) to ``record``; return the state.

    Args:
        pipeline: The pipeline's name, for the record.
        status: Filled in by KFP: the state of the task group the exit handler watched.
    """
    from skinlesion.kubeflow.status import FinalStatus, record_final_status

    return record_final_status(FinalStatus.from_kfp(pipeline, status), record.path)
