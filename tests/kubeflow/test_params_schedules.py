"""The params files and the schedules file: placeholders, argument checks, cron rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from tests.kubeflow.conftest import BASELINE_URI, IMAGE, PIPELINE_ROOT, PIPELINES_DIR
from tests.kubeflow.fake_kfp import API, FakeKfp, FakeKfpState

from skinlesion.kubeflow.compiling import CompiledPipeline
from skinlesion.kubeflow.params import (
    ParamsError,
    available_environments,
    check_arguments,
    load_environment,
    parse_assignments,
)
from skinlesion.kubeflow.schedules import (
    Schedule,
    ScheduleError,
    check_cron,
    load_schedules,
)
from skinlesion.kubeflow.settings import AuthMode, KubeflowSettings
from skinlesion.kubeflow.submit import SourceRevision, compile_options_for, version_name

PARAMS_DIR = PIPELINES_DIR / "params"
ENVIRON = {
    "KFP_HOST": "https://kubeflow.example.com/pipeline",
    "IMAGE_TAG": "3f2a9c1d4e5b",
    "MONITORING_BASELINE_URI": BASELINE_URI,
}


@pytest.mark.parametrize("env", ["dev", "prod", "local"])
def test_each_environment_gives_valid_settings_and_arguments(
    env: str, tf_outputs: Path, compiled_training: CompiledPipeline
) -> None:
    params = load_environment(env, PARAMS_DIR, environ=ENVIRON, tf_outputs=tf_outputs)
    settings = KubeflowSettings.from_mapping(params.kubeflow())
    options = compile_options_for(params)
    arguments = check_arguments(
        params.arguments("training"), compiled_training.validated.inputs(), "training"
    )
    assert options.images is not None
    if env == "local":
        assert arguments["backend"] == "local"
        assert options.jobs_in_pod
        # The steps run the jobs, so they run in the training image; kind.local, not Docker Hub.
        assert options.images.executor_image(options.jobs_in_pod) == (
            f"kind.local/skinlesion-training:{ENVIRON['IMAGE_TAG']}"
        )
        assert settings.auth == AuthMode.NONE
    else:
        assert arguments["backend"] == "sagemaker"
        assert arguments["data_uri"].startswith("s3://")
        assert settings.pipeline_root == PIPELINE_ROOT
        assert settings.service_account == "skinlesion-pipeline-runner"
        assert settings.namespace == f"skinlesion-{env}"
        assert options.images.pipeline == IMAGE
        assert options.images.training == IMAGE.replace("pipeline", "training")
        assert options.images.inference == IMAGE.replace("pipeline", "inference")
        assert settings.host == ENVIRON["KFP_HOST"]


@pytest.mark.parametrize("env", ["dev", "prod", "local"])
def test_each_environment_gives_valid_monitoring_arguments(
    env: str, tf_outputs: Path, compiled_training: CompiledPipeline
) -> None:
    """pipelines.monitoring type-checks against the monitoring pipeline, and its retraining
    arguments against the training pipeline (they are the training section)."""
    from skinlesion.kubeflow.compiling import compile_pipeline
    from skinlesion.kubeflow.discovery import get_pipeline

    compiled = compile_pipeline(get_pipeline("monitoring", PIPELINES_DIR))
    params = load_environment(env, PARAMS_DIR, environ=ENVIRON, tf_outputs=tf_outputs)
    arguments = check_arguments(
        params.arguments("monitoring"), compiled.validated.inputs(), "monitoring"
    )
    retraining = check_arguments(
        arguments["training_arguments"], compiled_training.validated.inputs(), "training"
    )
    assert retraining == check_arguments(
        params.arguments("training"), compiled_training.validated.inputs(), "training"
    )
    assert arguments["backend"] == retraining["backend"]
    assert arguments["endpoint_name"] == retraining["endpoint_name"]
    assert arguments["data_uri"] == retraining["data_uri"]
    assert arguments["baseline_uri"] == BASELINE_URI
    without_baseline = load_environment(
        env,
        PARAMS_DIR,
        environ={k: v for k, v in ENVIRON.items() if k != "MONITORING_BASELINE_URI"},
        tf_outputs=tf_outputs,
    )
    # Empty: the baseline of the version the endpoint serves now (its registry entry; locally,
    # the served model's, built on first use), so a redeploy needs no new schedule.
    assert without_baseline.arguments("monitoring")["baseline_uri"] == ""
    if env != "local":
        assert arguments["labels_uri"] == (
            "s3://skinlesion-dev-capture-123456789012/ground-truth/skinlesion-dev/"
        )


def test_environments_are_the_params_files() -> None:
    assert {"dev", "prod", "local"} <= set(available_environments(PARAMS_DIR))
    with pytest.raises(ParamsError, match=r"Environments: .*dev"):
        load_environment("staging", PARAMS_DIR)


def test_placeholders_say_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text(
        "kubeflow:\n  host: ${KFP_HOST}\n  experiment: ${EXPERIMENT:-skinlesion}\n"
        "pipelines:\n  training:\n    data_uri: s3://${tf:data_bucket}/isic\n"
        "    model_group: ${tf:bucket_names.models}\n"
    )
    params = load_environment("x", tmp_path, environ={})
    with pytest.raises(ParamsError, match=r"kubeflow.host needs \$\{KFP_HOST\}"):
        params.kubeflow()
    params = load_environment("x", tmp_path, environ={"KFP_HOST": "https://h/pipeline"})
    assert params.kubeflow() == {"host": "https://h/pipeline", "experiment": "skinlesion"}
    with pytest.raises(ParamsError, match="no outputs file"):
        params.arguments("training")
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"data_bucket": {"value": "raw", "type": "string"}}))
    params = load_environment("x", tmp_path, environ={}, tf_outputs=outputs)
    with pytest.raises(ParamsError, match="'bucket_names' not in"):
        params.arguments("training")
    outputs.write_text(json.dumps({"data_bucket": "raw", "bucket_names": {"models": "m"}}))
    params = load_environment("x", tmp_path, environ={}, tf_outputs=outputs)
    assert params.arguments("training") == {"data_uri": "s3://raw/isic", "model_group": "m"}


def test_unknown_sections_and_compile_keys_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("kubeflow: {}\nsecrets: {}\n")
    with pytest.raises(ParamsError, match="unknown section 'secrets'"):
        load_environment("a", tmp_path)
    (tmp_path / "b.yaml").write_text("compile:\n  imgae: x\n")
    with pytest.raises(ParamsError, match=r"compile.imgae is unknown"):
        load_environment("b", tmp_path).compile_options()


def test_arguments_are_checked_against_the_compiled_inputs(
    compiled_training: CompiledPipeline,
) -> None:
    inputs = compiled_training.validated.inputs()
    raw = parse_assignments(["data_uri=s3://b/x", "epochs=3", "threshold=1", "git_commit=123"])
    checked = check_arguments(raw, inputs, "training")
    assert checked["epochs"] == 3
    assert checked["threshold"] == 1.0 and isinstance(checked["threshold"], float)
    assert checked["git_commit"] == "123"
    with pytest.raises(ParamsError, match=r"has no input epoch\. Accepted: .*epochs"):
        check_arguments({"data_uri": "x", "epoch": 3}, inputs, "training")
    with pytest.raises(ParamsError, match="needs data_uri"):
        check_arguments({"epochs": 3}, inputs, "training")
    with pytest.raises(ParamsError, match="epochs: expected an integer"):
        check_arguments({"data_uri": "x", "epochs": "2.5"}, inputs, "training")
    with pytest.raises(ParamsError, match="expected name=value"):
        parse_assignments(["epochs"])


def test_version_names_start_with_the_commit() -> None:
    digest = "ab" * 32
    assert (
        version_name(SourceRevision("0123456789abcdef0123", False), digest)
        == "0123456789ab-abababab"
    )
    assert version_name(SourceRevision("0123456789abcdef0123", True), digest) == (
        "0123456789ab-dirty-abababab"
    )
    assert version_name(SourceRevision("", False), digest) == "nogit-abababab"


def test_ui_links_for_a_host_and_for_the_central_dashboard() -> None:
    plain = KubeflowSettings(host="https://kf.example.com/pipeline/")
    assert plain.ui_link("runs/details/1") == "https://kf.example.com/pipeline/#/runs/details/1"
    dashboard = plain.with_overrides(ui_url="https://kf.example.com/_/pipeline/?ns=skinlesion-dev")
    assert dashboard.ui_link("runs/details/1") == (
        "https://kf.example.com/_/pipeline/?ns=skinlesion-dev#/runs/details/1"
    )


# -- schedules ---------------------------------------------------------------------------------
def test_the_schedules_file_has_monthly_training_and_disabled_monitoring() -> None:
    schedules = {s.name: s for s in load_schedules(PIPELINES_DIR / "schedules.yaml")}
    training = schedules["skinlesion-training-monthly"]
    assert training.pipeline == "training"
    assert training.cron == "0 0 3 1 * *"
    assert training.enabled and not training.paused
    assert training.enable_caching is False
    assert training.max_concurrency == 1 and not training.catchup
    monitoring = [s for s in schedules.values() if s.pipeline == "monitoring"]
    assert monitoring and all(check_cron(s.cron) for s in monitoring)
    hourly = [s for s in monitoring if s.cron == "0 0 * * * *"]
    assert hourly
    # A monitoring schedule is enabled only once its pipeline exists.
    has_pipeline = (PIPELINES_DIR / "monitoring.py").exists()
    assert all(has_pipeline or not s.enabled for s in monitoring)


@pytest.mark.parametrize(
    "cron",
    ["0 0 3 1 * *", "0 */15 * * * *", "30 0 6 * * MON-FRI", "0 0 0 1 JAN,JUL ?", "@hourly"],
)
def test_valid_kfp_cron_expressions(cron: str) -> None:
    assert check_cron(cron) == cron


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("0 3 1 * *", "'0 0 3 1 \\* \\*'"),  # a 5-field cron: suggest the seconds field
        ("0 0 3 1 *", "5 fields"),
        ("0 0 24 * * *", "hour field: 24 is outside 0-23"),
        ("0 0 3 0 * *", "day of month field: 0 is outside 1-31"),
        ("0 0 3 1 13 *", "month field"),
        ("0 0 3 1 * FUNDAY", "not a number"),
        ("0 */0 * * * *", "step"),
        ("? 0 * * * *", "only for the day fields"),
        ("0 0 5-3 * * *", "runs backwards"),
        ("0 0 * * *  * *", "7 fields"),
    ],
)
def test_invalid_cron_expressions_say_why(cron: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        check_cron(cron)


def test_schedule_definitions_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ScheduleError, match="exactly one of cron or interval_seconds"):
        Schedule(name="x", pipeline="training")
    with pytest.raises(ScheduleError, match="Invalid schedule name"):
        Schedule(name="Monthly Training", pipeline="training", cron="@monthly")
    assert Schedule(name="x", pipeline="t", interval_seconds=3600).applies_to("dev")
    assert not Schedule(name="x", pipeline="t", cron="@daily", environments=("prod",)).applies_to(
        "dev"
    )
    path = tmp_path / "schedules.yaml"
    path.write_text(
        "schedules:\n  - {name: a, pipeline: training, cron: '@daily'}\n"
        "  - {name: a, pipeline: training, cron: '@hourly'}\n"
    )
    with pytest.raises(ScheduleError, match="repeated: a"):
        load_schedules(path)
    path.write_text("schedules:\n  - {name: a, pipeline: training, cron: '@daily', when: x}\n")
    with pytest.raises(ScheduleError, match="unknown keys when"):
        load_schedules(path)


# -- the stand-in's cron: what the KFP API server accepts ------------------------------------------


def _create_recurring_run(fake: FakeKfp, cron: str) -> requests.Response:
    body = {
        "display_name": "s",
        "mode": "ENABLE",
        "max_concurrency": 1,
        "trigger": {"cron_schedule": {"cron": cron}},
        "pipeline_version_reference": {"pipeline_id": "p", "pipeline_version_id": "v"},
    }
    return requests.post(f"{fake.url}{API}/recurringruns", json=body, timeout=10)


# The server parses with robfig/cron v1.2.0 cron.Parse (Second | Minute | Hour | Dom | Month |
# DowOptional | Descriptor): api_converter.go at 2.2.0 and go.mod "github.com/robfig/cron v1.2.0",
# unchanged through 2.17.0; parser.go at v1.2.0 for the messages.
SERVER_ACCEPTS = (
    "0 0 3 1 * *",
    "0 30 */6 * * *",
    "30 0 6 * * MON-FRI",
    "0 0 0 1 JAN,JUL ?",
    "@hourly",
    "@every 1h30m",
    "0 0 3 1 *",  # accepted: the day of week is optional, so this is seconds-first
)
SERVER_REFUSES = (
    ("0 0 * * *  * *", "Expected 5 to 6 fields, found 7: 0 0 * * *  * *"),
    ("0 3 1 *", "Expected 5 to 6 fields, found 4"),
    ("0 60 * * * *", "End of range (60) above maximum (59): 60"),
    ("0 0 3 0 * *", "Beginning of range (0) below minimum (1): 0"),
    ("0 0 5-3 * * *", "Beginning of range (5) beyond end of range (3): 5-3"),
    ("0 0 * * * FUNDAY", "Failed to parse int from FUNDAY"),
    ("0 */0 * * * *", "Step of range should be a positive number: */0"),
    ("0 1-2-3 * * * *", "Too many hyphens: 1-2-3"),
    ("@fortnightly", "Unrecognized descriptor: @fortnightly"),
    ("@every 1 hour", "Failed to parse duration @every 1 hour"),
    ("", "Empty spec string"),
)


def test_the_stand_in_parses_cron_like_the_kfp_server() -> None:
    with FakeKfp(FakeKfpState(multi_user=False)) as fake:
        for cron in SERVER_ACCEPTS:
            response = _create_recurring_run(fake, cron)
            assert response.status_code == 200, (cron, response.text)
        for cron, message in SERVER_REFUSES:
            response = _create_recurring_run(fake, cron)
            assert response.status_code == 400, cron
            error = response.json()["message"]
            assert (
                "Schedule cron is not a supported format(https://godoc.org/github.com/robfig/cron)"
                in error
            )
            assert message in error, (cron, error)
        # Every cron of pipelines/schedules.yaml is one the server takes.
        for schedule in load_schedules(PIPELINES_DIR / "schedules.yaml"):
            if schedule.cron:
                assert _create_recurring_run(fake, schedule.cron).status_code == 200


def test_our_cron_check_is_stricter_than_the_server_never_looser() -> None:
    """What check_cron accepts the server accepts; a 5-field cron, which the server would read
    seconds-first (a different schedule than the author meant), is refused by ours alone."""
    with FakeKfp(FakeKfpState(multi_user=False)) as fake:
        for cron in SERVER_ACCEPTS:
            try:
                check_cron(cron)
            except ScheduleError:
                continue
            assert _create_recurring_run(fake, cron).status_code == 200
        for cron, _ in SERVER_REFUSES:
            with pytest.raises(ScheduleError):
                check_cron(cron)
    with pytest.raises(ScheduleError, match="5 fields"):
        check_cron("0 0 3 1 *")
