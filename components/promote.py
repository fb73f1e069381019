"""Promote: compare champion and challenger on their captured answers and shift traffic."""

from kfp import dsl
from kfp.dsl import Output

from components import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def promote(
    backend: str,
    endpoint_name: str,
    report: Output[dsl.Artifact],
    labels_uri: str = "",
    min_requests: int = 100,
    min_labelled: int = 50,
    margin: float = 0.02,
    instance_type: str = "ml.m5.large",
    min_instances: int = 1,
    max_instances: int = 5,
    capture_percentage: int = 100,
) -> str:
    """Promote, retire or hold the endpoint's challenger; return the decision.

    Args:
        backend: ``local`` or ``sagemaker``.
        endpoint_name: The endpoint serving a champion and a challenger.
        report: The comparison (per variant: counts, class distribution, quality) as JSON.
        labels_uri: Ground truth keyed by eventId; empty: none, so the decision holds.
        min_requests: Captured requests each variant needs before a decision.
        min_labelled: Labelled images each variant needs before a decision.
        margin: Balanced accuracy the challenger must gain to be promoted (or lose to retire).
        instance_type: The winner's instance type once it serves alone.
        min_instances: Autoscaling minimum of the winner.
        max_instances: Autoscaling maximum of the winner.
        capture_percentage: Data capture's share of requests once the winner serves alone.
    """
    from skinlesion import steps

    return steps.promote_challenger(
        backend=backend,
        endpoint_name=endpoint_name,
        labels_uri=labels_uri,
        min_requests=min_requests,
        min_labelled=min_labelled,
        margin=margin,
        instance_type=instance_type,
        min_instances=min_instances,
        max_instances=max_instances,
        capture_percentage=capture_percentage,
        report=report,
    )
