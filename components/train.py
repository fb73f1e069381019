"""Train: fine-tune a CNN on the preprocessed dataset (a training job)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def train(
    backend: str,
    dataset: Input[Dataset],
    architecture: str,
    epochs: int,
    batch_size: int,
    learning_rate: float,
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
    model: Output[Model],
):
    """Train ``architecture`` and write model.tar.gz into the ``model`` artifact.

    No hyperparameter has a default here: the pipeline passes every one, and its defaults are
    ``TrainConfig``'s (a default typed here would be a second copy; KFP embeds this function's
    source in the step, so it cannot refer to ``TrainConfig`` in its signature).

    Args:
        backend: ``local`` or ``sagemaker``.
        dataset: The preprocess step's output.
        architecture: efficientnet_lite0, mobilenet_v2, efficientnet_b0, resnet50 or densenet121.
        epochs: Maximum epochs (early stopping may end sooner).
        batch_size: Images per step.
        learning_rate: Peak learning rate of the schedule.
        image_size: Training resolution in pixels.
        pretrained: auto, imagenet or none.
        freeze_stages: Early stages (stem first) kept at their pretrained weights.
        tta: Test-time views the saved model averages: none, flips (4) or dihedral (8).
        weight_decay: AdamW weight decay (not on biases and normalisation parameters).
        label_smoothing: Cross-entropy label smoothing, 0 to 1.
        balancing: weighted_loss, logit_adjust, sampler or none (docs/training.md).
        metadata: Feed the patient's age, sex and anatomic site to the network
            (skinlesion.patient; docs/training.md).
        ema_decay: Weight averaging: the share of the average kept at each step (0: off, the
            raw weights); validation scores and the model ships the average (docs/training.md).
        train_seed: Seed of the weights' initialisation, the batches and the augmentation (the
            split's seed is preprocess's).
        instance_count: Training instances; more than one trains one model across them with
            torchrun (batch_size is per instance).
    """
    from skinlesion import steps

    steps.train(
        backend=backend,
        dataset=dataset,
        model=model,
        hyperparameters={
            "architecture": architecture,
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
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
    )
