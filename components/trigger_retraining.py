"""Trigger retraining: start the training pipeline through the KFP API (or record the request).

Its pod carries the label access-ml-pipeline=true (skinlesion.kubeflow.tasks.kfp_api_step), so
Kubeflow's PodDefault mounts the service-account token it signs in to the KFP API with.
"""

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
    cooldown_hours: float,
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
        cooldown_hours: No run starts within this many hours of the training pipeline's last run
            (nor while one is in flight); the skip is recorded with its reason.
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
        cooldown_hours=cooldown_hours,
    )
