"""Check tuning: fail the run at once when the ``tuning`` parameter names no mode."""

from kfp import dsl

from components import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def check_tuning(tuning: str):
    """Raise for a ``tuning`` other than none, sweep or job.

    Args:
        tuning: The pipeline's tuning parameter.
    """
    from skinlesion import steps

    steps.check_tuning(tuning=tuning)
