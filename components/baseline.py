"""Baseline: the monitoring baseline of a trained model on the validation split (a job)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from components import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def baseline(
    backend: str,
    dataset: Input[Dataset],
    model: Input[Model],
    data_uri: str,
    baseline: Output[Artifact],
) -> str:
    """Describe the model's inputs and outputs on the validation split; return the baseline's URI.

    Args:
        backend: ``local`` or ``sagemaker``.
        dataset: The preprocess step's output.
        model: The train step's output.
        data_uri: The ISIC folder of the original files (encoding features); may be empty.
    """
    from skinlesion.monitoring import steps

    return steps.baseline(
        backend=backend, dataset=dataset, model=model, baseline=baseline, data_uri=data_uri
    )
