"""Pick best: the sweep's trial with the highest validation balanced accuracy."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def pick_best(
    trials: Input[list[Model]],
    dataset: Input[Dataset],
    model: Output[Model],
) -> str:
    """Hand on the best trial's model (its train step's record) as ``model``; return its job.

    Args:
        trials: The sweep's train steps' models (dsl.Collected).
        dataset: The preprocess step's output (the run's cost so far counts it once).
    """
    from skinlesion import steps

    return steps.pick_best(trials=list(trials), dataset=dataset, model=model)
