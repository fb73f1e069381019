"""The batch pipeline: score a folder (an S3 prefix) of JPEG images with a registered model."""

from kfp import dsl

from components.batch_score import batch_score
from skinlesion.backends.base import BatchScoreRequest
from skinlesion.kubeflow.tasks import aws_step, pipeline_config

PIPELINE_NAME = "skinlesion-batch"
# The instance defaults are typed once, in BatchScoreRequest.
_INSTANCE_TYPE: str = BatchScoreRequest.instance_type
_INSTANCE_COUNT: int = BatchScoreRequest.instance_count


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Score a folder of JPEG images with a registered model version (Batch Transform).",
    pipeline_config=pipeline_config(),
)
def batch_pipeline(
    model_version_arn: str,
    images_uri: str,
    backend: str = "sagemaker",
    instance_type: str = _INSTANCE_TYPE,
    instance_count: int = _INSTANCE_COUNT,
) -> None:
    """1. Batch score: each image alone through the serving code; predictions.jsonl out."""
    aws_step(
        batch_score(
            backend=backend,
            model_version_arn=model_version_arn,
            images_uri=images_uri,
            instance_type=instance_type,
            instance_count=instance_count,
        ).set_display_name("Batch score"),
        cache=False,
    )
