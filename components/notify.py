"""Notify: tell people about a monitoring alarm (SNS on AWS, a log line locally)."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Output

from components import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def notify(
    backend: str,
    endpoint_name: str,
    monitor_output: Input[Artifact],
    notification: Output[Artifact],
) -> str:
    """Send the monitor's headline and violations; return the subject sent.

    Args:
        backend: ``local`` (log and record) or ``sagemaker`` (SNS topic of the settings).
        endpoint_name: The endpoint the alarm is about.
        monitor_output: The monitor step's output folder.
    """
    from skinlesion.monitoring import steps

    return steps.notify(
        backend=backend,
        endpoint_name=endpoint_name,
        monitor_output=monitor_output,
        notification=notification,
    )
