"""The training pipeline: data to a deployed, registered model, gated on balanced accuracy.

How it finds its model is chosen at compile time (``compile.tuning`` of the params file,
``skinlesion.kubeflow.compiling.TuningSettings``): ``pipeline_for_tuning`` builds the graph of
each mode, and ``training_pipeline`` is the one of mode none (what ``make demo`` runs).
"""

from kfp import dsl
from kfp.dsl.graph_component import GraphComponent
from kfp.dsl.pipeline_channel import PipelineChannel

from components.baseline import baseline
from components.deploy import deploy
from components.evaluate import evaluate
from components.exit_status import exit_status
from components.pick_best import pick_best
from components.preprocess import preprocess
from components.record_decision import record_decision
from components.register import register
from components.train import train
from components.tune import tune
from skinlesion.config import PreprocessConfig, TrainConfig
from skinlesion.kubeflow.compiling import TuningSettings
from skinlesion.kubeflow.tasks import aws_step, note_step, pipeline_config

PIPELINE_NAME = "skinlesion-training"
# The hyperparameters' defaults are typed once, in skinlesion.config; KFP's compiler reads the
# values these evaluate to from the signature.
_TRAIN = TrainConfig()
_PREPROCESS = PreprocessConfig()


def _trained_model(
    tuning: TuningSettings,
    *,
    backend: str,
    dataset: PipelineChannel,
    learning_rate: float,
    hyperparameters: dict[str, object],
) -> PipelineChannel:
    """The model that evaluate, baseline and register take: one train step's (none), the best
    of a sweep of train steps (sweep), or the best trial of the backend's tuning job
    (sagemaker). Each hands on the same ModelHandoff, so the steps after it are the same."""
    if tuning.mode == "none":
        train_op = aws_step(
            train(
                backend=backend, dataset=dataset, learning_rate=learning_rate, **hyperparameters
            ).set_display_name("Train"),
            cache=True,
        )
        return train_op.outputs["model"]
    if tuning.mode == "sweep":
        with dsl.ParallelFor(
            items=list(tuning.learning_rates), parallelism=tuning.parallel_jobs, name="trials"
        ) as trial_learning_rate:
            trial_op = aws_step(
                train(
                    backend=backend,
                    dataset=dataset,
                    learning_rate=trial_learning_rate,
                    **hyperparameters,
                ).set_display_name("Train trial"),
                cache=True,
            )
        # No retry: it only reads the trials' records, so a failure (no objective recorded)
        # would fail the same way again. Cached: it is a function of its inputs, and a rerun
        # would give evaluate a new model artifact and so miss evaluate's cache.
        pick_op = note_step(
            pick_best(
                trials=dsl.Collected(trial_op.outputs["model"]), dataset=dataset
            ).set_display_name("Pick best trial")
        )
        pick_op.set_caching_options(True)
        return pick_op.outputs["model"]
    tune_op = aws_step(
        tune(
            backend=backend,
            dataset=dataset,
            learning_rates=list(tuning.learning_rates),
            max_jobs=tuning.max_jobs,
            parallel_jobs=tuning.parallel_jobs,
            **hyperparameters,
        ).set_display_name("Tune"),
        cache=True,
    )
    return tune_op.outputs["model"]


def pipeline_for_tuning(tuning: TuningSettings) -> GraphComponent:
    """The training pipeline whose model comes from ``tuning``'s mode (none, sweep, sagemaker).

    The mode is a compile-time choice: a runtime choice needs ``dsl.OneOf`` over the branches'
    models, which kfp.local cannot run (one artifact selector per DAG output,
    kfp/local/orchestrator/orchestrator_utils.py). Every mode takes the same arguments.
    """

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
        balancing: str = _TRAIN.balancing,
        metadata: bool = _TRAIN.metadata,
        ema_decay: float = _TRAIN.ema_decay,
        train_seed: int = _TRAIN.seed,
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
                    backend=backend,
                    data_uri=data_uri,
                    labels=labels,
                    image_size=image_size,
                    seed=seed,
                ).set_display_name("Preprocess"),
                cache=True,
            )
            model = _trained_model(
                tuning,
                backend=backend,
                dataset=preprocess_op.outputs["dataset"],
                learning_rate=learning_rate,
                hyperparameters={
                    "architecture": architecture,
                    "pretrained": pretrained,
                    "epochs": epochs,
                    "batch_size": batch_size,
                    "image_size": image_size,
                    "freeze_stages": freeze_stages,
                    "tta": tta,
                    "weight_decay": weight_decay,
                    "label_smoothing": label_smoothing,
                    "balancing": balancing,
                    "metadata": metadata,
                    "ema_decay": ema_decay,
                    "train_seed": train_seed,
                    "instance_count": instance_count,
                },
            )
            evaluate_op = aws_step(
                evaluate(
                    backend=backend,
                    dataset=preprocess_op.outputs["dataset"],
                    model=model,
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
                    model=model,
                    data_uri=data_uri,
                ).set_display_name("Baseline"),
                cache=True,
            )

            # Every candidate is registered, so the registry keeps each one and its status: below
            # the gate it is Rejected, else Approved or PendingManualApproval (decide_approval).
            register_op = aws_step(
                register(
                    backend=backend,
                    model=model,
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

    return training_pipeline


training_pipeline = pipeline_for_tuning(TuningSettings())
