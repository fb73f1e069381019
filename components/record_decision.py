"""Record decision: a Markdown note of why a model was not promoted."""

from kfp import dsl
from kfp.dsl import Markdown, Output

from components import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def record_decision(
    stage: str,
    balanced_accuracy: float,
    threshold: float,
    detail: str,
    decision: Output[Markdown],
):
    """Write why the model stopped at ``stage`` (gate or approval) into a Markdown artifact.

    Args:
        stage: ``gate`` or ``approval``.
        balanced_accuracy: The model's balanced accuracy on the test split.
        threshold: The gate's threshold.
        detail: A sentence for the reader.
    """
    from skinlesion import steps

    steps.record_decision(
        decision=decision,
        stage=stage,
        balanced_accuracy=balanced_accuracy,
        threshold=threshold,
        detail=detail,
    )
