"""Trigger retraining: start the training pipeline through the KFP API (or record the request)."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Output

from components import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def trigger_retraining(
    backend: str,
    monitor_output: Input[Artifact],
    data_uri: str,
    training_arguments: dict,
    kfp_host: str,
    kfp_namespace: str,
    kfp_experiment: str,
    request: Output[Artifact],
) -> str:
    """Start a run of the training pipeline on the current data; return its run id.

    Args:
        backend: ``local`` or ``sagemaker`` (also the training run's backend unless overridden).
        monitor_output: The monitor step's output folder (the reason).
        data_uri: The current training data.
        training_arguments: Other arguments of the training run (model_group, endpoint_name, ...).
        kfp_host: ``in-cluster`` (the pod's service-account token), a KFP API URL, or empty to
            only record the request.
        kfp_namespace: The profile namespace; empty: the pod's own.
        kfp_experiment: The experiment the run goes to.
    """
    from skinlesion.monitoring import steps

    return steps.trigger_retraining(
        backend=backend,
        monitor_output=monitor_output,
        request=request,
        data_uri=data_uri,
        training_arguments=training_arguments,
        kfp_host=kfp_host,
        kfp_namespace=kfp_namespace,
        kfp_experiment=kfp_experiment,
    )
