"""Preprocess: validate, split and resize an ISIC-format dataset (a processing job)."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def preprocess(
    backend: str,
    data_uri: str,
    image_size: int,
    dataset: Output[Dataset],
    labels: str = "",
    seed: int = 42,
):
    """Validate the ISIC-format folder at ``data_uri``, split it by lesion and resize it.

    Args:
        backend: ``local`` or ``sagemaker``.
        data_uri: Folder (or S3 prefix) with labels.csv, metadata.csv and images/.
        image_size: Side of the stored square images, in pixels.
        labels: Ground-truth CSV relative to ``data_uri``; empty means labels.csv.
        seed: Split seed.
    """
    from skinlesion import steps

    steps.preprocess(
        backend=backend,
        data_uri=data_uri,
        dataset=dataset,
        image_size=image_size,
        labels=labels,
        seed=seed,
    )
