"""The evaluate job end to end: a real model on the preprocessed sample, as a subprocess."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from kfp.dsl import ClassificationMetrics, Metrics

from skinlesion.data.store import read_manifest, read_split
from skinlesion.jobs import evaluate
from skinlesion.labels import CLASSES
from skinlesion.metrics import evaluate_predictions, isic_balanced_accuracy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def job_output(
    preprocessed_dataset: Path, packed_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Run ``python -m skinlesion.jobs.evaluate`` once, as the local backend and SageMaker do."""
    output = tmp_path_factory.mktemp("evaluation") / "out"
    env = {**os.environ, "SKINLESION_ML_ROOT": str(output.parent / "ml")}
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "skinlesion.jobs.evaluate",
            "--dataset",
            str(preprocessed_dataset),
            "--model",
            str(packed_model_dir),
            "--output",
            str(output),
            "--batch-size",
            "8",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return output


def read_predictions(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_job_writes_every_output(job_output: Path) -> None:
    for name in evaluate.OUTPUT_FILES:
        assert (job_output / name).stat().st_size > 0, name


def test_metrics_json_is_flat_and_agrees_with_the_reference(
    job_output: Path, preprocessed_dataset: Path
) -> None:
    metrics = json.loads((job_output / "metrics.json").read_text())
    test_count = read_manifest(preprocessed_dataset)["splits"]["test"]["count"]

    assert metrics["n_test"] == metrics["n_samples"] == test_count
    assert all(value is None or isinstance(value, int | float) for value in metrics.values())
    for name in ("balanced_accuracy", "balanced_accuracy_isic", "macro_auc", "ece", "accuracy"):
        assert 0.0 <= metrics[name] <= 1.0, name
    for cls in CLASSES:
        for prefix in ("sensitivity", "specificity", "auc"):
            assert f"{prefix}_{cls}" in metrics
    assert abs(metrics["balanced_accuracy"] - metrics["balanced_accuracy_isic"]) <= 1e-6
    # The fixture's model has learnt the sample: well above the 1/8 of chance.
    assert metrics["balanced_accuracy"] > 0.5


def test_predictions_csv_reproduces_the_metrics(
    job_output: Path, preprocessed_dataset: Path
) -> None:
    rows = read_predictions(job_output / "predictions.csv")
    test = read_split(preprocessed_dataset, "test")
    metrics = json.loads((job_output / "metrics.json").read_text())

    assert [row["image"] for row in rows] == test.image_ids
    assert [row["lesion_id"] for row in rows] == test.lesion_ids
    assert [CLASSES.index(row["true_label"]) for row in rows] == test.labels.tolist()
    probabilities = np.array([[float(row[c]) for c in CLASSES] for row in rows])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    assert [CLASSES[i] for i in probabilities.argmax(1)] == [r["predicted_label"] for r in rows]
    recomputed = evaluate_predictions(test.labels, probabilities, CLASSES)
    assert recomputed.balanced_accuracy == pytest.approx(metrics["balanced_accuracy"], abs=1e-9)
    assert isic_balanced_accuracy(test.labels, probabilities, CLASSES) == pytest.approx(
        metrics["balanced_accuracy_isic"], abs=1e-9
    )
    assert recomputed.macro_auc == pytest.approx(metrics["macro_auc"], abs=1e-4)


def test_evaluation_json_holds_the_full_result(job_output: Path) -> None:
    evaluation = json.loads((job_output / "evaluation.json").read_text())
    metrics = json.loads((job_output / "metrics.json").read_text())
    result = evaluation["result"]

    assert evaluation["metrics"] == metrics
    assert evaluation["split"] == "test"
    assert evaluation["model"]["architecture"] == "efficientnet_lite0"
    assert result["classes"] == list(CLASSES)
    matrix = np.array(result["confusion_matrix"])
    assert matrix.shape == (8, 8) and matrix.sum() == metrics["n_test"]
    assert set(result["roc_curves"]) == set(CLASSES)
    assert len(result["reliability"]["counts"]) == 15
    quality = evaluation["multiclass_classification_metrics"]
    assert quality["accuracy"]["value"] == pytest.approx(metrics["accuracy"])
    assert quality["confusion_matrix"]["MEL"]["MEL"] == matrix[0, 0]
    assert sum(sum(row.values()) for row in quality["confusion_matrix"].values()) == matrix.sum()


def test_kfp_outputs_load_into_kfp_artifacts(job_output: Path) -> None:
    scalars = json.loads((job_output / "kfp_metrics.json").read_text())
    classification = json.loads((job_output / "kfp_classification.json").read_text())
    evaluation = json.loads((job_output / "evaluation.json").read_text())

    metrics_artifact = Metrics(name="metrics")
    for name, value in scalars.items():
        metrics_artifact.log_metric(name, value)
    assert metrics_artifact.metadata["balanced_accuracy"] == scalars["balanced_accuracy"]
    metrics = json.loads((job_output / "metrics.json").read_text())
    assert scalars == {k: float(v) for k, v in metrics.items() if v is not None}

    artifact = ClassificationMetrics(name="classification")
    matrix = classification["confusion_matrix"]
    artifact.log_confusion_matrix(matrix["categories"], matrix["matrix"])
    roc = classification["roc"]
    artifact.log_roc_curve(roc["fpr"], roc["tpr"], roc["thresholds"])
    rows = artifact.metadata["confusionMatrix"]["rows"]
    assert [row["row"] for row in rows] == evaluation["result"]["confusion_matrix"]
    assert roc["class"] == "MEL"
    assert roc["fpr"] == evaluation["result"]["roc_curves"]["MEL"]["fpr"]
    assert len(artifact.metadata["confidenceMetrics"]) == len(roc["fpr"]) > 2


def test_report_is_written_with_thumbnails(job_output: Path) -> None:
    text = (job_output / "report.html").read_text(encoding="utf-8")
    for section in ("headline-metrics", "per-class-metrics", "misclassified", "dataset"):
        assert f'id="{section}"' in text
    assert "efficientnet_lite0" in text and "splits.test.count" in text
    assert text.count("data:image/png;base64,") >= 3


def _gradcam_section(report: str) -> str:
    return report[report.index('<section id="gradcam">') : report.index('<section id="model">')]


def test_report_explains_the_most_confident_mistakes_with_gradcam(job_output: Path) -> None:
    rows = read_predictions(job_output / "predictions.csv")
    wrong = [row for row in rows if row["true_label"] != row["predicted_label"]]
    assert wrong  # the fitted model is good, not perfect: a few test images are mistaken
    section = _gradcam_section((job_output / "report.html").read_text(encoding="utf-8"))

    expected = min(evaluate.GRADCAM_EXAMPLES, len(wrong))
    assert section.count('<figure class="gradcam">') == expected
    assert section.count("data:image/png;base64,") == 2 * expected
    # The most confident mistake comes first, with its classes and probability.
    top = max(wrong, key=lambda row: float(row[row["predicted_label"]]))
    first = section[section.index('<figure class="gradcam">') :].split("</figure>")[0]
    assert f"Grad-CAM of {top['predicted_label']} on {top['image']}" in first
    assert f"true <b>{top['true_label']}</b>" in first
    assert f"({float(top[top['predicted_label']]):.0%})" in first


def test_run_accepts_an_unpacked_model_and_returns_metrics_json(
    preprocessed_dataset: Path, fitted_model_dir: Path, job_output: Path, tmp_path: Path
) -> None:
    metrics = evaluate.run(
        preprocessed_dataset, fitted_model_dir, tmp_path / "out", batch_size=8, gradcam_examples=1
    )

    assert metrics == json.loads((tmp_path / "out" / "metrics.json").read_text())
    report = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert _gradcam_section(report).count('<figure class="gradcam">') == 1
    reference = json.loads((job_output / "metrics.json").read_text())
    assert metrics["balanced_accuracy"] == reference["balanced_accuracy"]
    assert metrics["n_test"] == reference["n_test"]


def test_job_fails_loudly_on_a_label_set_mismatch(
    preprocessed_dataset: Path,
    fitted_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(fitted_model_dir, model_dir)
    spec = json.loads((model_dir / "model.json").read_text())
    spec["classes"] = list(reversed(spec["classes"]))
    (model_dir / "model.json").write_text(json.dumps(spec))
    monkeypatch.setenv("SKINLESION_ML_ROOT", str(tmp_path / "ml"))

    code = evaluate.main(
        [
            "--dataset",
            str(preprocessed_dataset),
            "--model",
            str(model_dir),
            "--output",
            str(tmp_path / "out"),
        ]
    )

    assert code == 1
    assert not (tmp_path / "out" / "metrics.json").exists()
    message = (tmp_path / "ml" / "output" / "message").read_text()
    assert "differ from the dataset's" in message


def test_run_rejects_bad_arguments(
    preprocessed_dataset: Path, fitted_model_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="Accepted: train, val, test"):
        evaluate.run(preprocessed_dataset, fitted_model_dir, tmp_path, split="holdout")
    with pytest.raises(ValueError, match="batch_size"):
        evaluate.run(preprocessed_dataset, fitted_model_dir, tmp_path, batch_size=0)
    with pytest.raises(ValueError, match="Invalid gradcam_examples -1"):
        evaluate.run(preprocessed_dataset, fitted_model_dir, tmp_path, gradcam_examples=-1)
    with pytest.raises(ValueError, match="Invalid roc_class 'melanoma'"):
        evaluate.run(preprocessed_dataset, fitted_model_dir, tmp_path, roc_class="melanoma")
    with pytest.raises(FileNotFoundError, match="holds no model"):
        evaluate.run(preprocessed_dataset, tmp_path, tmp_path / "out")


def test_cli_sub_command_reports_a_missing_dataset(tmp_path: Path) -> None:
    from skinlesion.cli import main

    code = main(["evaluate", "--dataset", str(tmp_path / "nowhere"), "--model", str(tmp_path)])

    assert code == 2  # the CLI's answer to a FileNotFoundError: a message, no traceback
