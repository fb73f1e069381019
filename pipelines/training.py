"""The training pipeline: data to a deployed, registered model, gated on balanced accuracy."""

from kfp import dsl

from components.baseline import baseline
from components.deploy import deploy
from components.evaluate import evaluate
from components.exit_status import exit_status
from components.preprocess import preprocess
from components.record_decision import record_decision
from components.register import register
from components.train import train
from skinlesion.config import PreprocessConfig, TrainConfig
from skinlesion.kubeflow.tasks import aws_step, note_step, pipeline_config

PIPELINE_NAME = "skinlesion-training"
# The hyperparameters' defaults are typed once, in skinlesion.config; KFP's compiler reads the
# values these evaluate to from the signature.
_TRAIN = TrainConfig()
_PREPROCESS = PreprocessConfig()


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="ISIC-format images to a registered, deployed skin lesion classifier.",
    pipeline_config=pipeline_config(),
)
def training_pipeline(
    data_uri: str,
    backend: str = "local",
    labels: str = "",
    architecture: str = _TRAIN.architecture,
    pretrained: str = _TRAIN.pretrained,
    epochs: int = _TRAIN.epochs,
    batch_size: int = _TRAIN.batch_size,
    learning_rate: float = _TRAIN.learning_rate,
    image_size: int = _TRAIN.image_size,
    freeze_stages: int = _TRAIN.freeze_stages,
    tta: str = _TRAIN.tta,
    weight_decay: float = _TRAIN.weight_decay,
    label_smoothing: float = _TRAIN.label_smoothing,
    instance_count: int = _TRAIN.instance_count,
    threshold: float = 0.7,
    min_malignant_sensitivity: float = 0.0,
    approval_margin: float = 0.0,
    model_group: str = "",  # empty: the backend's (Terraform's model package group)
    endpoint_name: str = "",  # empty: the backend's (<name_prefix>-endpoint on AWS)
    instance_type: str = "ml.m5.large",
    min_instances: int = 1,
    max_instances: int = 5,
    capture_percentage: int = 100,  # data capture's share of requests, for monitoring
    git_commit: str = "",
    seed: int = _PREPROCESS.seed,
):
    """Train and ship a skin lesion classifier.

    1. preprocess: validate the ISIC folder, split by lesion, resize.
    2. train: fine-tune the network.
    3. evaluate: balanced accuracy and the report on the test split; baseline: the model's
       monitoring baseline on the validation split (alongside the gate).
    4. register: every candidate becomes a model package version, gated on balanced accuracy:
       Rejected below ``threshold``, Approved when it beats the approved one by
       ``approval_margin``, else PendingManualApproval.
    5. deploy: the endpoint, when the version is Approved; else record why not.
    6. exit handler: record how the run ended (succeeded, failed, cancelled).

    Task settings (retries, caching, pod size, AWS settings from the ConfigMap, TTL) come from
    ``skinlesion.kubeflow.tasks``.
    """
    # The exit handler records how the run ended and, unless it succeeded, stops its SageMaker
    # jobs: a step's SIGTERM (a drained node as much as a cancel) leaves them running.
    exit_op = note_step(
        exit_status(
            pipeline=PIPELINE_NAME, backend=backend, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER
        ).set_display_name("Record run status")
    )
    with dsl.ExitHandler(exit_op, name="training"):
        preprocess_op = aws_step(
            preprocess(
                backend=backend, data_uri=data_uri, labels=labels, image_size=image_size, seed=seed
            ).set_display_name("Preprocess"),
            cache=True,
        )
        train_op = aws_step(
            train(
                backend=backend,
                dataset=preprocess_op.outputs["dataset"],
                architecture=architecture,
                pretrained=pretrained,
                epochs=epochs,
                batch_size=batch_size,
                learning_rate=learning_rate,
                image_size=image_size,
                freeze_stages=freeze_stages,
                tta=tta,
                weight_decay=weight_decay,
                label_smoothing=label_smoothing,
                instance_count=instance_count,
            ).set_display_name("Train"),
            cache=True,
        )
        evaluate_op = aws_step(
            evaluate(
                backend=backend,
                dataset=preprocess_op.outputs["dataset"],
                model=train_op.outputs["model"],
            ).set_display_name("Evaluate"),
            cache=True,
        )
        balanced_accuracy = evaluate_op.outputs["Output"]
        # Every trained model gets its drift baseline (docs/monitoring.md), gate passed or not:
        # the monitoring pipeline compares the endpoint's requests with it.
        baseline_op = aws_step(
            baseline(
                backend=backend,
                dataset=preprocess_op.outputs["dataset"],
                model=train_op.outputs["model"],
                data_uri=data_uri,
            ).set_display_name("Baseline"),
            cache=True,
        )

        # Every candidate is registered, so the registry keeps each one and its status: below
        # the gate it is Rejected, else Approved or PendingManualApproval (decide_approval).
        register_op = aws_step(
            register(
                backend=backend,
                model=train_op.outputs["model"],
                evaluation=evaluate_op.outputs["evaluation"],
                baseline=baseline_op.outputs["baseline"],
                model_group=model_group,
                data_uri=data_uri,
                architecture=architecture,
                approval_margin=approval_margin,
                min_balanced_accuracy=threshold,
                min_malignant_sensitivity=min_malignant_sensitivity,
                git_commit=git_commit,
                run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            ).set_display_name("Register"),
            cache=False,
        )
        approval = register_op.outputs["approval_status"]
        with dsl.If(approval == "Approved", name="approved"):
            aws_step(
                deploy(
                    backend=backend,
                    model_version_arn=register_op.outputs["model_version_arn"],
                    endpoint_name=endpoint_name,
                    instance_type=instance_type,
                    min_instances=min_instances,
                    max_instances=max_instances,
                    capture_percentage=capture_percentage,
                ).set_display_name("Deploy"),
                cache=False,
            )
        with dsl.Elif(approval == "Rejected", name="gate-failed"):
            note_step(
                record_decision(
                    stage="gate",
                    balanced_accuracy=balanced_accuracy,
                    threshold=threshold,
                    detail="Balanced accuracy below the threshold: registered as Rejected, "
                    "not deployed.",
                ).set_display_name("Record rejection")
            )
        with dsl.Else(name="pending-approval"):
            note_step(
                record_decision(
                    stage="approval",
                    balanced_accuracy=balanced_accuracy,
                    threshold=threshold,
                    detail="Registered as PendingManualApproval: a person approves it in the "
                    "registry (skinlesion registry approve), or it did not beat the approved "
                    "version by the approval margin. Approved, it is deployed by "
                    "pipelines/deploy.py.",
                ).set_display_name("Record pending approval")
            )
