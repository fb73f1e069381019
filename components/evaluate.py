"""Evaluate: score the model on the lesion-disjoint test split (a processing job)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def evaluate(
    backend: str,
    dataset: Input[Dataset],
    model: Input[Model],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
    report: Output[HTML],
) -> float:
    """Evaluate ``model`` on the test split; return its balanced multiclass accuracy.

    Args:
        backend: ``local`` or ``sagemaker``.
        dataset: The preprocess step's output.
        model: The train step's output.
    """
    from skinlesion import steps

    return steps.evaluate(
        backend=backend,
        dataset=dataset,
        model=model,
        evaluation=evaluation,
        metrics=metrics,
        classification=classification,
        report=report,
    )
