"""The promote pipeline: decide between the endpoint's champion and challenger, and act on it.

Submitted once the challenger has answered enough requests and their ground truth has arrived
(docs/deploy.md, "Champion and challenger"): promote shifts all traffic to the challenger and then
serves it alone, retire does the same for the champion, hold changes nothing.
"""

from kfp import dsl

from components.promote import promote
from skinlesion.kubeflow.tasks import NO_RETRY, aws_step, pipeline_config, retry_policy

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
    # Not retried by KFP: what fails here fails on its parameters or the endpoint's state (no
    # such endpoint, no challenger on it, unreadable ground truth, a version not Approved) and
    # would fail the same way again, its message buried under the retries'. The transient
    # failures, throttling and 5xx answers, are retried inside each AWS call (botocore's
    # standard mode, SKINLESION_MAX_API_ATTEMPTS); a run lost to an evicted pod is submitted
    # again, which is safe: the decision is recomputed from the capture, the traffic shift and
    # the redeploy are idempotent, and once the winner serves alone a rerun says so.
    with retry_policy(NO_RETRY):
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
