"""The monitor job on an undrifted and a drifted window of captured traffic, its outputs, and
the quality checks on ground truth joined by eventId."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from tests.monitoring.conftest import DRIFTED_HOUR, UNDRIFTED_HOUR, MonitoringSetup

from skinlesion.monitoring.baseline import Baseline, BaselineError
from skinlesion.monitoring.files import OUTPUT_FILES, empty_summary, kfp_metrics
from skinlesion.monitoring.monitor import MonitorResult, analyze_window, run_monitor
from skinlesion.monitoring.violations import CHECK_TYPES


def _run(setup: MonitoringSetup, hour, output: Path, **kwargs) -> MonitorResult:  # type: ignore[no-untyped-def]
    return run_monitor(
        setup.baseline,
        str(setup.capture_prefix),
        output,
        start=hour,
        end=hour + timedelta(hours=1),
        **kwargs,
    )


@pytest.fixture(scope="module")
def undrifted(monitoring_setup: MonitoringSetup, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    output = tmp_path_factory.mktemp("undrifted")
    return _run(monitoring_setup, UNDRIFTED_HOUR, output, checks="drift"), output


@pytest.fixture(scope="module")
def drifted(monitoring_setup: MonitoringSetup, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    output = tmp_path_factory.mktemp("drifted")
    return _run(monitoring_setup, DRIFTED_HOUR, output, checks="drift"), output


def test_an_undrifted_window_raises_no_alarm(undrifted, monitoring_setup) -> None:  # type: ignore[no-untyped-def]
    result, output = undrifted
    assert result.window["images"] == len(monitoring_setup.undrifted_ids) == 96
    assert result.window["endpoint_monitor_disagreements"] == 0
    assert not result.alarm and not result.data_drift, result.headline()
    assert result.drifted_features == []
    assert result.embedding is not None and not result.embedding.drifted
    assert result.predictions is not None and not result.predictions.drifted
    # Not a near miss: every feature's adjusted p-value is far from alpha.
    assert min(f.p_adjusted for f in result.features) > 0.1
    violations = json.loads((output / "constraint_violations.json").read_text())
    assert violations == {"violations": []}


def test_a_drifted_window_alarms_on_colour_sharpness_and_embeddings(drifted) -> None:  # type: ignore[no-untyped-def]
    result, _ = drifted
    assert result.alarm and result.data_drift
    drifted_features = set(result.drifted_features)
    assert {"red_green", "yellow_blue"} <= drifted_features  # the colour cast
    assert drifted_features & {"sharpness", "gradient", "high_frequency"}  # the blur
    assert result.embedding is not None and result.embedding.drifted
    assert "data drift" in result.headline()


def test_the_outputs_are_written_and_the_violations_have_model_monitors_shape(drifted) -> None:  # type: ignore[no-untyped-def]
    _, output = drifted
    assert sorted(p.name for p in output.iterdir()) == sorted(OUTPUT_FILES)
    violations = json.loads((output / "constraint_violations.json").read_text())
    assert list(violations) == ["violations"] and violations["violations"]
    for violation in violations["violations"]:
        assert set(violation) in (
            {"feature_name", "constraint_check_type", "description"},
            {"metric_name", "constraint_check_type", "description"},
        )
        assert violation["constraint_check_type"] in CHECK_TYPES
        assert violation["description"]
    names = [v["feature_name"] for v in violations["violations"]]
    assert "embedding" in names and "red_green" in names
    summary = json.loads((output / "monitoring_summary.json").read_text())
    assert summary["alarm"] is True and summary["violations"] == violations["violations"]
    assert summary["false_alarm_bound"] == pytest.approx(0.015)
    metrics = json.loads((output / "kfp_metrics.json").read_text())
    assert metrics["data_drift"] == 1.0 and metrics["psi_red_green"] > 0.25
    report = (output / "report.html").read_text()
    assert "ALARM" in report and report.count("data:image/png;base64,") >= 3
    assert "http://" not in report and "https://" not in report  # self-contained


def test_the_monitor_refuses_a_model_that_is_not_the_baselines(
    monitoring_setup: MonitoringSetup, tmp_path: Path
) -> None:
    from skinlesion.labels import CLASSES
    from skinlesion.models import build_model, save_model, spec_for

    other = build_model("efficientnet_lite0", len(CLASSES), "none", 48)
    save_model(other, spec_for("efficientnet_lite0", 48, CLASSES), tmp_path / "other")
    with pytest.raises(BaselineError, match="not the baseline's model"):
        _run(monitoring_setup, UNDRIFTED_HOUR, tmp_path / "out", model_path=str(tmp_path / "other"))


def test_a_small_window_is_insufficient_data_not_an_alarm(
    monitoring_setup: MonitoringSetup, tmp_path: Path
) -> None:
    result = _run(monitoring_setup, UNDRIFTED_HOUR, tmp_path, max_images=20)
    assert result.window["images"] == 20
    assert result.insufficient_data and not result.alarm
    assert "min_window" in result.notes[0]


def test_empty_summary_has_the_same_keys_as_a_real_one(undrifted) -> None:  # type: ignore[no-untyped-def]
    result, _ = undrifted
    real = result.to_dict()
    empty = empty_summary("drift", {"records": 0}, result.config.to_dict())
    assert set(empty) == set(real)
    assert empty["false_alarm_bound"] == pytest.approx(real["false_alarm_bound"])
    assert kfp_metrics(empty)["alarm"] == 0.0


# --- quality ----------------------------------------------------------------------------------


def _ground_truth_files(folder: Path, labels: dict[str, str]) -> Path:
    """Half as SageMaker ground-truth JSON lines, half as a CSV: both formats are read."""
    nested = folder / "2024" / "05" / "01" / "12"  # SageMaker's hourly layout: read recursively
    nested.mkdir(parents=True, exist_ok=True)
    items = sorted(labels.items())
    half = len(items) // 2
    with (nested / "labels.jsonl").open("w") as handle:
        for event_id, label in items[:half]:
            record = {
                "groundTruthData": {"data": label, "encoding": "CSV"},
                "eventMetadata": {"eventId": event_id},
                "eventVersion": "0",
            }
            handle.write(json.dumps(record) + "\n")
    lines = ["eventId,label"] + [f"{e},{label}" for e, label in items[half:]]
    (folder / "more.csv").write_text("\n".join(lines) + "\n")
    return folder


def _endpoint_predictions(setup: MonitoringSetup) -> dict[str, str]:
    from skinlesion.capture import iter_capture_records

    return {
        r.event_id: r.output_json()["predictions"][0]["top_class"]
        for r in iter_capture_records(setup.capture_prefix)
        if r.event_id in set(setup.undrifted_ids)
    }


def test_ground_truth_is_joined_on_event_id_and_a_good_window_passes(
    monitoring_setup: MonitoringSetup, tmp_path: Path
) -> None:
    answered = _endpoint_predictions(monitoring_setup)
    # The truth agrees with the endpoint everywhere: recall 1 for every class present.
    labels = _ground_truth_files(tmp_path / "labels", answered)
    result = _run(monitoring_setup, UNDRIFTED_HOUR, tmp_path / "out", labels=str(labels))
    assert result.window["labelled_images"] == len(answered) == 96
    assert result.quality is not None and result.quality["labelled"] == 96
    assert result.quality["balanced_accuracy"] == pytest.approx(1.0)
    assert not result.quality_drop
    assert [c.metric for c in result.quality_checks] == ["balanced_accuracy", "recall_MEL"]


def test_a_quality_drop_and_the_missed_melanomas_are_violations(
    monitoring_setup: MonitoringSetup,
) -> None:
    baseline = Baseline.load(monitoring_setup.baseline)
    classes = baseline.classes
    n = 200
    rng = np.random.default_rng(0)
    y_true = np.repeat(np.arange(len(classes)), n // len(classes))
    # The baseline's model at its validation recall would get these right; here every MEL is
    # called NV and half of the rest is wrong.
    predicted = np.where(rng.random(n) < 0.5, y_true, (y_true + 1) % len(classes))
    predicted[y_true == classes.index("MEL")] = classes.index("NV")
    statistics = dict(baseline.statistics)
    statistics["quality"] = {
        "balanced_accuracy": 0.8,
        "recall": dict.fromkeys(classes, 0.8),
        "support": dict.fromkeys(classes, 50),
        "labelled": 400,
    }
    confident = Baseline(**{**baseline.__dict__, "statistics": statistics})
    result = analyze_window(
        confident,
        pixel=np.zeros((n, 16)),
        raw=None,
        projected=np.zeros((n, confident.embeddings.shape[1]), np.float32),
        predicted=predicted,
        y_true=y_true,
        checks="quality",
    )
    assert result.quality_drop and result.alarm and not result.data_drift
    violated = {c.metric: c for c in result.quality_checks if c.violated}
    assert set(violated) == {"balanced_accuracy", "recall_MEL"}
    assert violated["recall_MEL"].value == 0.0 and violated["recall_MEL"].p_value < 1e-6
    from skinlesion.monitoring.violations import constraint_violations

    [ba, mel] = constraint_violations(result)["violations"]
    assert ba["metric_name"] == "balanced_accuracy" and mel["metric_name"] == "recall_MEL"
    assert mel["constraint_check_type"] == "LessThanThreshold"
    assert "was LessThanThreshold" in mel["description"]


def test_few_labels_make_no_quality_decision(monitoring_setup: MonitoringSetup) -> None:
    baseline = Baseline.load(monitoring_setup.baseline)
    y_true = np.full(60, -1)
    y_true[:10] = 0  # ten labelled MEL images, all missed
    result = analyze_window(
        baseline,
        pixel=np.zeros((60, 16)),
        raw=None,
        projected=np.zeros((60, baseline.embeddings.shape[1]), np.float32),
        predicted=np.ones(60, dtype=np.int64),
        y_true=y_true,
        checks="quality",
    )
    assert not result.quality_drop and result.insufficient_data
    assert "min_labels" in result.notes[0]
