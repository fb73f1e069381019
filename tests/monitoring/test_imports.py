"""The monitoring steps run in the pipeline image, which has no torch, scipy, Pillow or
matplotlib: with the SageMaker backend their code paths must not import them."""

from __future__ import annotations

import subprocess
import sys

BLOCKED = ("torch", "scipy", "PIL", "matplotlib", "sklearn")
MODULES = (
    "skinlesion.monitoring.steps",
    "skinlesion.steps",
    "skinlesion.backends.local",
    "skinlesion.backends.sagemaker",
    "skinlesion.monitoring.files",
    "skinlesion.monitoring.config",
    "skinlesion.monitoring.alarm_text",
    "skinlesion.monitoring.retrain",
    "skinlesion.monitoring.cloudwatch_metrics",
    "components.monitor",
    "components.notify",
    "components.trigger_retraining",
    "components.baseline",
    "pipelines.monitoring",
)


def test_the_pipeline_image_paths_import_without_the_ml_stack(tmp_path) -> None:  # type: ignore[no-untyped-def]
    summary = tmp_path / "empty"
    code = "\n".join(
        [
            "import sys",
            f"for name in {BLOCKED!r}: sys.modules[name] = None  # import fails",
            f"for module in {MODULES!r}: __import__(module)",
            "from skinlesion.monitoring.files import write_empty_window, kfp_metrics",
            f"summary = write_empty_window({str(summary)!r}, 'drift', {{'records': 0}})",
            "assert summary['alarm'] is False and kfp_metrics(summary)['window_images'] == 0",
        ]
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=".")
    assert done.returncode == 0, done.stderr
    assert (summary / "report.html").exists()
