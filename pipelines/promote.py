"""The promote pipeline: decide between the endpoint's champion and challenger, and act on it.

Submitted once the challenger has answered enough requests and their ground truth has arrived
(docs/deploy.md, "Champion and challenger"): promote shifts all traffic to the challenger and then
serves it alone, retire does the same for the champion, hold changes nothing.
"""

from kfp import dsl

from components.promote import promote
from skinlesion.kubeflow.tasks import aws_step, pipeline_config

PIPELINE_NAME = "skinlesion-promote"


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Compare the endpoint's champion and challenger; promote, retire or hold.",
    pipeline_config=pipeline_config(),
)
def promote_pipeline(
    endpoint_name: str,
    backend: str = "sagemaker",
    labels_uri: str = "",
    min_requests: int = 100,
    min_labelled: int = 50,
    margin: float = 0.02,
    instance_type: str = "ml.m5.large",
    min_instances: int = 1,
    max_instances: int = 5,
    capture_percentage: int = 100,
) -> None:
    """1. Promote: the comparison report, then the traffic shift its decision calls for."""
    aws_step(
        promote(
            backend=backend,
            endpoint_name=endpoint_name,
            labels_uri=labels_uri,
            min_requests=min_requests,
            min_labelled=min_labelled,
            margin=margin,
            instance_type=instance_type,
            min_instances=min_instances,
            max_instances=max_instances,
            capture_percentage=capture_percentage,
        ).set_display_name("Promote"),
        cache=False,
    )
