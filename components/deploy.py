"""Deploy: serve an Approved model version behind an endpoint with autoscaling and capture,
optionally with a challenger version beside it."""

from kfp import dsl

from components import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def deploy(
    backend: str,
    model_version_arn: str,
    endpoint_name: str,
    instance_type: str = "ml.m5.large",
    min_instances: int = 1,
    max_instances: int = 5,
    capture_percentage: int = 100,
    challenger_model_version_arn: str = "",
    challenger_traffic_percent: int = 0,
) -> str:
    """Create or update (blue/green) the endpoint; return its invocation URL.

    Args:
        backend: ``local`` or ``sagemaker``.
        model_version_arn: An Approved model package.
        endpoint_name: The endpoint to create or update.
        instance_type: SageMaker instance type (ignored locally).
        min_instances: Autoscaling minimum.
        max_instances: Autoscaling maximum.
        capture_percentage: Share of requests (0-100) that data capture keeps for monitoring.
        challenger_model_version_arn: An Approved version to serve beside it as the challenger
            (a second production variant); empty: none.
        challenger_traffic_percent: The challenger's share of requests, 1-99 (0 without one).
    """
    from skinlesion import steps

    return steps.deploy(
        backend=backend,
        model_version_arn=model_version_arn,
        endpoint_name=endpoint_name,
        instance_type=instance_type,
        min_instances=min_instances,
        max_instances=max_instances,
        capture_percentage=capture_percentage,
        challenger_model_version_arn=challenger_model_version_arn,
        challenger_traffic_percent=challenger_traffic_percent,
    )
