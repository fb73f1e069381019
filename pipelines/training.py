"""The training pipeline: data to a deployed, registered model, gated on balanced accuracy."""

from kfp import dsl

from components.deploy import deploy
from components.evaluate import evaluate
from components.preprocess import preprocess
from components.record_decision import record_decision
from components.register import register
from components.train import train

PIPELINE_NAME = "skinlesion-training"


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="ISIC-format images to a registered, deployed skin lesion classifier.",
)
def training_pipeline(
    data_uri: str,
    backend: str = "local",
    labels: str = "",
    architecture: str = "efficientnet_lite0",
    pretrained: str = "auto",
    epochs: int = 8,
    batch_size: int = 64,
    learning_rate: float = 0.002,
    image_size: int = 96,
    threshold: float = 0.7,
    approval_margin: float = 0.0,
    model_group: str = "skinlesion",
    endpoint_name: str = "skinlesion",
    instance_type: str = "ml.m5.large",
    min_instances: int = 1,
    max_instances: int = 5,
    git_commit: str = "",
    seed: int = 42,
):
    """Train and ship a skin lesion classifier.

    1. preprocess: validate the ISIC folder, split by lesion, resize.
    2. train: fine-tune the network.
    3. evaluate: balanced accuracy and the report on the test split.
    4. gate: balanced accuracy >= threshold, else record the rejection.
    5. register: a model package version, Approved when it beats the approved one.
    6. deploy: the endpoint, when the version is Approved; else record why not.
    """
    preprocess_op = preprocess(
        backend=backend, data_uri=data_uri, labels=labels, image_size=image_size, seed=seed
    ).set_display_name("Preprocess")
    train_op = train(
        backend=backend,
        dataset=preprocess_op.outputs["dataset"],
        architecture=architecture,
        pretrained=pretrained,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        image_size=image_size,
    ).set_display_name("Train")
    evaluate_op = evaluate(
        backend=backend,
        dataset=preprocess_op.outputs["dataset"],
        model=train_op.outputs["model"],
    ).set_display_name("Evaluate")
    balanced_accuracy = evaluate_op.outputs["Output"]

    with dsl.If(balanced_accuracy >= threshold, name="gate-passed"):
        register_op = register(
            backend=backend,
            model=train_op.outputs["model"],
            evaluation=evaluate_op.outputs["evaluation"],
            model_group=model_group,
            data_uri=data_uri,
            architecture=architecture,
            approval_margin=approval_margin,
            git_commit=git_commit,
            run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        ).set_display_name("Register")
        with dsl.If(register_op.outputs["approval_status"] == "Approved", name="approved"):
            deploy(
                backend=backend,
                model_version_arn=register_op.outputs["model_version_arn"],
                endpoint_name=endpoint_name,
                instance_type=instance_type,
                min_instances=min_instances,
                max_instances=max_instances,
            ).set_display_name("Deploy")
        with dsl.Else(name="pending-approval"):
            record_decision(
                stage="approval",
                balanced_accuracy=balanced_accuracy,
                threshold=threshold,
                detail="Registered as PendingManualApproval: it does not beat the approved "
                "version by the approval margin. Approve it in the registry to deploy it.",
            ).set_display_name("Record pending approval")
    with dsl.Else(name="gate-failed"):
        record_decision(
            stage="gate",
            balanced_accuracy=balanced_accuracy,
            threshold=threshold,
            detail="Balanced accuracy below the threshold: not registered, not deployed.",
        ).set_display_name("Record rejection")
