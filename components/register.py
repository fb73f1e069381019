"""Register: add the model to the model package group with its metrics and lineage."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Model

from components import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def register(
    backend: str,
    model: Input[Model],
    evaluation: Input[Artifact],
    baseline: Input[Artifact],
    model_group: str,
    data_uri: str,
    architecture: str,
    approval_margin: float,
    min_balanced_accuracy: float,
    min_malignant_sensitivity: float,
    git_commit: str,
    run_id: str,
) -> NamedTuple("Registration", [("model_version_arn", str), ("approval_status", str)]):
    """Register a model version: Rejected below the gate; Approved when it beats the approved
    one by ``approval_margin``; else PendingManualApproval.

    Args:
        backend: ``local`` or ``sagemaker``.
        model: The train step's output.
        evaluation: The evaluate step's output (metrics.json, report.html).
        baseline: The baseline step's output (a pointer): kept with the version, so the
            monitor compares traffic with the baseline of whichever version is deployed.
        model_group: Model package group name.
        data_uri: The training data's URI, kept as lineage.
        architecture: The network's architecture, kept as metadata.
        approval_margin: Balanced accuracy the candidate must gain over the approved version.
        min_balanced_accuracy: The gate: below it the version is registered as Rejected.
        min_malignant_sensitivity: The gate's other half: malignant sensitivity at the model's
            referral threshold on the test split (0 turns it off).
        git_commit: The code's commit, kept as lineage.
        run_id: The pipeline run's id, kept as lineage.
    """
    from collections import namedtuple

    from skinlesion import steps

    arn, status = steps.register(
        backend=backend,
        model=model,
        evaluation=evaluation,
        baseline=baseline,
        model_group=model_group,
        data_uri=data_uri,
        architecture=architecture,
        approval_margin=approval_margin,
        min_balanced_accuracy=min_balanced_accuracy,
        min_malignant_sensitivity=min_malignant_sensitivity,
        git_commit=git_commit,
        run_id=run_id,
    )
    return namedtuple("Registration", ["model_version_arn", "approval_status"])(arn, status)
