"""The monitoring pipeline: a window of captured requests, and retraining when it drifted."""

from kfp import dsl

from components.monitor import monitor
from components.notify import notify
from components.trigger_retraining import trigger_retraining
from skinlesion.kubeflow.tasks import aws_step, kfp_api_step, note_step, pipeline_config

PIPELINE_NAME = "skinlesion-monitoring"


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Drift and model quality of the endpoint's traffic; retrain on an alarm.",
    pipeline_config=pipeline_config(),
)
def monitoring_pipeline(
    backend: str = "local",
    endpoint_name: str = "",  # empty: the backend's (<name_prefix>-endpoint on AWS)
    baseline_uri: str = "",
    model_uri: str = "",
    capture_uri: str = "",
    labels_uri: str = "",
    dataset_uri: str = "",
    window_hours: int = 1,
    offset_hours: int = 0,
    checks: str = "drift",
    data_uri: str = "",
    training_arguments: dict = {},  # noqa: B006 - KFP needs a literal default for a dict input
    kfp_host: str = "",
    kfp_namespace: str = "",
    kfp_experiment: str = "skinlesion",
    retraining_cooldown_hours: float = 24.0,
):
    """Check the endpoint; on drift or a quality drop, tell people and retrain.

    1. monitor: the monitor job over the last ``window_hours`` of captured requests (image
       features, embeddings, predicted classes; quality when ``labels_uri`` has ground truth);
       its violations, report and metrics (CloudWatch too with the SageMaker backend).
    2. on an alarm (``checks``: drift, quality or all):
       a. notify: SNS with the SageMaker backend, a log line and a record locally;
       b. trigger retraining: a run of the training pipeline's ``-retrain`` version (caching off)
          on ``data_uri`` through the KFP API (``kfp_host=in-cluster``: the pod's
          service-account token, mounted by the access-ml-pipeline PodDefault), skipped while a
          training run is in flight or within ``retraining_cooldown_hours`` of the last one; a
          recorded request when no host is set.
    """
    monitor_op = aws_step(
        monitor(
            backend=backend,
            endpoint_name=endpoint_name,
            baseline_uri=baseline_uri,
            model_uri=model_uri,
            capture_uri=capture_uri,
            labels_uri=labels_uri,
            dataset_uri=dataset_uri,
            window_hours=window_hours,
            offset_hours=offset_hours,
            checks=checks,
            run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        ).set_display_name("Monitor"),
        cache=False,
    )
    with dsl.If(monitor_op.outputs["Output"] == True, name="alarm"):  # noqa: E712 - a KFP condition
        notify_op = aws_step(
            notify(
                backend=backend,
                endpoint_name=endpoint_name,
                monitor_output=monitor_op.outputs["output"],
            ).set_display_name("Notify"),
            cache=False,
        )
        kfp_api_step(
            note_step(
                trigger_retraining(
                    backend=backend,
                    monitor_output=monitor_op.outputs["output"],
                    data_uri=data_uri,
                    training_arguments=training_arguments,
                    kfp_host=kfp_host,
                    kfp_namespace=kfp_namespace,
                    kfp_experiment=kfp_experiment,
                    cooldown_hours=retraining_cooldown_hours,
                )
                .set_display_name("Trigger retraining")
                .after(notify_op)
            )
        )
