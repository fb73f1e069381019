"""Batch score: a folder of JPEG images through a registered model (a Batch Transform job)."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def batch_score(
    backend: str,
    model_version_arn: str,
    images_uri: str,
    instance_type: str,
    instance_count: int,
    predictions: Output[Dataset],
):
    """Write ``predictions.jsonl`` (one JSON line per image) into the ``predictions`` artifact.

    Args:
        backend: ``local`` or ``sagemaker``.
        model_version_arn: A registered model package version (not Rejected).
        images_uri: An S3 prefix (or, locally, a folder) of .jpg/.jpeg files.
        instance_type: Batch Transform instance type (ignored locally).
        instance_count: Batch Transform instances (ignored locally).
    """
    from skinlesion import steps

    steps.batch_score(
        backend=backend,
        model_version_arn=model_version_arn,
        images_uri=images_uri,
        predictions=predictions,
        instance_type=instance_type,
        instance_count=instance_count,
    )
