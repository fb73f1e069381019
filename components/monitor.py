"""Monitor: compare a window of the endpoint's captured requests with the baseline (a job)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Metrics, Output

from components import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def monitor(
    backend: str,
    endpoint_name: str,
    baseline_uri: str,
    model_uri: str,
    capture_uri: str,
    labels_uri: str,
    dataset_uri: str,
    window_hours: int,
    offset_hours: int,
    checks: str,
    run_id: str,
    output: Output[Artifact],
    report: Output[HTML],
    metrics: Output[Metrics],
) -> bool:
    """Run the monitor job over the last ``window_hours``; return True on an alarm.

    Args:
        backend: ``local`` or ``sagemaker``.
        endpoint_name: The endpoint whose captured requests are checked.
        baseline_uri: The baseline folder; empty: the local endpoint's model's, built on first use.
        model_uri: The model bundle; empty: the one the baseline records.
        capture_uri: The capture destination; empty: the endpoint's (or the account's) default.
        labels_uri: Ground truth keyed by eventId; empty: none (no quality check).
        dataset_uri: Preprocessed dataset to build a missing local baseline from (optional).
        window_hours: Length of the window; 0 means every captured request.
        offset_hours: How far before now the window ends (ground truth arrives late).
        checks: ``drift``, ``quality`` or ``all``: what raises the alarm.
        run_id: The pipeline run's id, which names the SageMaker job.
    """
    from skinlesion.monitoring import steps

    return steps.monitor(
        backend=backend,
        endpoint_name=endpoint_name,
        output=output,
        report=report,
        metrics=metrics,
        baseline_uri=baseline_uri,
        model_uri=model_uri,
        capture_uri=capture_uri,
        labels_uri=labels_uri,
        dataset_uri=dataset_uri,
        window_hours=window_hours,
        offset_hours=offset_hours,
        checks=checks,
        run_id=run_id,
    )
