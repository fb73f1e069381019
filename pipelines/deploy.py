"""The deploy pipeline: serve one Approved model version at the endpoint, nothing else.

Submitted when a person approves a version (the registry's approval event, docs/sagemaker.md
"Approval flow"), or by a recurring run over ``skinlesion registry pending-deploys``.
"""

from kfp import dsl

from components.deploy import deploy
from skinlesion.kubeflow.tasks import aws_step, pipeline_config

PIPELINE_NAME = "skinlesion-deploy"


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Deploy an Approved model package version to the endpoint (blue/green).",
    pipeline_config=pipeline_config(),
)
def deploy_pipeline(
    model_version_arn: str,
    endpoint_name: str,
    backend: str = "sagemaker",
    instance_type: str = "ml.m5.large",
    min_instances: int = 1,
    max_instances: int = 5,
    capture_percentage: int = 100,  # data capture's share of requests, for monitoring
    challenger_model_version_arn: str = "",  # an Approved version to serve beside it
    challenger_traffic_percent: int = 0,  # the challenger's share of requests (1-99)
) -> None:
    """1. Deploy: the version must be Approved (the step refuses any other status); with a
    challenger, it serves as a second variant at its share (docs/deploy.md, "Champion and
    challenger"; pipelines/promote.py decides its fate)."""
    aws_step(
        deploy(
            backend=backend,
            model_version_arn=model_version_arn,
            endpoint_name=endpoint_name,
            instance_type=instance_type,
            min_instances=min_instances,
            max_instances=max_instances,
            capture_percentage=capture_percentage,
            challenger_model_version_arn=challenger_model_version_arn,
            challenger_traffic_percent=challenger_traffic_percent,
        ).set_display_name("Deploy"),
        cache=False,
    )
