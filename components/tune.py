"""Tune: the backend's tuning job over the learning rate; its best trial becomes the model."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def tune(
    backend: str,
    dataset: Input[Dataset],
    architecture: str,
    epochs: int,
    batch_size: int,
    image_size: int,
    pretrained: str,
    freeze_stages: int,
    tta: str,
    weight_decay: float,
    label_smoothing: float,
    balancing: str,
    metadata: bool,
    ema_decay: float,
    train_seed: int,
    instance_count: int,
    learning_rates: list,
    max_jobs: int,
    parallel_jobs: int,
    model: Output[Model],
):
    """Search the learning rate between the lowest and highest of ``learning_rates`` (log scale)
    and write the best trial's model into ``model``, as the train step writes its own.

    On SageMaker: a hyperparameter tuning job (Bayesian, early stopping Auto) whose trials are
    the train step's training job. Locally: ``max_jobs`` trials on a log grid, one after another.

    Args:
        backend: ``local`` or ``sagemaker``.
        dataset: The preprocess step's output.
        architecture: As the train step's (every hyperparameter but the learning rate is fixed).
        epochs: Maximum epochs of each trial.
        batch_size: Images per step.
        image_size: Training resolution in pixels.
        pretrained: auto, imagenet or none.
        freeze_stages: Early stages kept at their pretrained weights.
        tta: Test-time views the saved model averages.
        weight_decay: AdamW weight decay.
        label_smoothing: Cross-entropy label smoothing.
        balancing: weighted_loss, logit_adjust, sampler or none (docs/training.md).
        metadata: Feed the patient's age, sex and anatomic site to the network
            (skinlesion.patient; docs/training.md).
        ema_decay: Weight averaging: the share of the average kept at each step (0: off, the
            raw weights); validation scores and the model ships the average (docs/training.md).
        train_seed: Seed of the weights' initialisation, the batches and the augmentation (the
            split's seed is preprocess's).
        instance_count: Training instances per trial.
        learning_rates: The range's ends are the lowest and highest of these.
        max_jobs: Trials in all (SageMaker: at most 750).
        parallel_jobs: Trials at once (SageMaker: at most 100; the default quota is 10).
    """
    from skinlesion import steps

    steps.tune(
        backend=backend,
        dataset=dataset,
        model=model,
        hyperparameters={
            "architecture": architecture,
            "epochs": epochs,
            "batch_size": batch_size,
            "image_size": image_size,
            "pretrained": pretrained,
            "freeze_stages": freeze_stages,
            "tta": tta,
            "weight_decay": weight_decay,
            "label_smoothing": label_smoothing,
            "balancing": balancing,
            "metadata": metadata,
            "ema_decay": ema_decay,
            "seed": train_seed,
            "instance_count": instance_count,
        },
        learning_rates=[float(v) for v in learning_rates],
        max_jobs=max_jobs,
        max_parallel_jobs=parallel_jobs,
    )
