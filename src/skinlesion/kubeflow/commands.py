"""``skinlesion kubeflow ...``: compile, validate, check, submit, schedule and list schedules."""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_ENV = "dev"


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _guarded(function: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn the Kubeflow errors into a logged message and exit status 2 (no traceback)."""

    @functools.wraps(function)
    def run(args: argparse.Namespace) -> int:
        from skinlesion.kubeflow.auth import AuthenticationError
        from skinlesion.kubeflow.client import KubeflowApiError

        try:
            return function(args)
        except (KubeflowApiError, AuthenticationError) as error:
            log.error("%s", error)
            return 2

    return run


# -- shared options --------------------------------------------------------------------------
def _add_pipelines_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pipelines-dir", type=Path, default=Path("pipelines"), help="the pipelines package"
    )


def _add_image_options(parser: argparse.ArgumentParser, *, publish: bool) -> None:
    parser.add_argument(
        "--image-registry",
        help="<host>[/<path>] holding skinlesion-{pipeline,training,inference} (default: the "
        "ECR repositories of Terraform's outputs)",
    )
    parser.add_argument(
        "--image-tag", help="the tag of all three images (default: the commit, -dirty marked)"
    )
    if publish:
        parser.add_argument(
            "--allow-dirty",
            action="store_true",
            help="send a pipeline whose image tag is <commit>-dirty (images never pushed)",
        )


def _add_compile_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pipeline-root", help="default pipeline root, e.g. s3://bucket/prefix")
    caching = parser.add_mutually_exclusive_group()
    caching.add_argument(
        "--no-cache",
        dest="enable_caching",
        action="store_const",
        const=False,
        default=None,
        help="turn caching off for every task",
    )
    caching.add_argument(
        "--cache",
        dest="enable_caching",
        action="store_const",
        const=True,
        help="turn caching on for every task",
    )
    parser.add_argument(
        "--kfp-backend",
        default=None,
        help="the KFP server release to compile for (docs/kubeflow.md lists the supported ones)",
    )
    parser.add_argument(
        "--jobs-in-pod",
        action="store_true",
        default=None,
        help="backend=local on a cluster: give the job steps' pods CPU and memory for the work",
    )


def _add_environment(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default=DEFAULT_ENV, help="pipelines/params/<env>.yaml (dev)")
    parser.add_argument(
        "--params-dir", type=Path, default=Path("pipelines/params"), help="the params folder"
    )
    parser.add_argument(
        "--tf-outputs", type=Path, help="Terraform outputs JSON for ${tf:...} placeholders"
    )
    parser.add_argument("--host", help="override kubeflow.host (the KFP API URL)")
    parser.add_argument("--namespace", help="override kubeflow.namespace")
    parser.add_argument("--experiment", help="override kubeflow.experiment")
    parser.add_argument("--service-account", help="override kubeflow.service_account")
    parser.add_argument(
        "--auth", help="override kubeflow.auth: auto, none, sa-token, token, dex, cookies"
    )
    parser.add_argument("--ui-url", help="override kubeflow.ui_url (for links)")
    _add_pipelines_dir(parser)
    parser.add_argument(
        "--build-dir",
        type=Path,
        default=Path("build/pipelines"),
        help="where the uploaded YAML is kept (<build-dir>/<env>/<pipeline>.yaml)",
    )


def _environment(args: argparse.Namespace) -> Any:
    from skinlesion.kubeflow.params import load_environment

    tf_outputs = args.tf_outputs
    if tf_outputs is None:
        default = Path(f"build/terraform-outputs-{args.env}.json")
        tf_outputs = default if default.is_file() else None
    return load_environment(args.env, args.params_dir, tf_outputs=tf_outputs)


def _settings(args: argparse.Namespace, params: Any) -> Any:
    from skinlesion.kubeflow.settings import KubeflowSettings

    settings = KubeflowSettings.from_mapping(params.kubeflow(), f"{params.path}: kubeflow")
    return settings.with_overrides(
        host=args.host,
        namespace=args.namespace,
        experiment=args.experiment,
        service_account=args.service_account,
        auth=args.auth,
        ui_url=args.ui_url,
        pipeline_root=getattr(args, "pipeline_root", None),
    )


def _connect(settings: Any) -> Any:
    from skinlesion.kubeflow.client import connect

    return connect(settings)


def _compile_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "image_registry": args.image_registry,
        "image_tag": args.image_tag,
        "enable_caching": args.enable_caching,
        "jobs_in_pod": args.jobs_in_pod,
        "kfp_backend": args.kfp_backend,
    }


def _refuse_dirty(options: Any, args: argparse.Namespace) -> None:
    from skinlesion.kubeflow.images import refuse_dirty

    if options.images is not None:
        refuse_dirty(options.images, allow_dirty=args.allow_dirty)
        if options.images.dirty:
            log.warning("image tag %s: images of uncommitted changes", options.images.tag)


# -- commands --------------------------------------------------------------------------------
@_guarded
def compile_command(args: argparse.Namespace) -> int:
    from skinlesion.kubeflow.compiling import CompileOptions, compile_to_file
    from skinlesion.kubeflow.discovery import discover_pipelines, get_pipeline
    from skinlesion.kubeflow.images import resolve_image_set
    from skinlesion.kubeflow.submit import source_revision
    from skinlesion.settings import load_terraform_outputs

    # No default image set: a bare skinlesion-pipeline:<tag> would be pulled from Docker Hub.
    images = resolve_image_set(
        tag=args.image_tag or source_revision(args.pipelines_dir.resolve().parent).image_tag,
        registry=args.image_registry,
        terraform_outputs=load_terraform_outputs(args.tf_outputs) if args.tf_outputs else None,
    )
    _out(f"images: {images.pipeline} {images.training} {images.inference}")
    # The params file's compile.tuning picks the training pipeline's tuning mode; nothing else
    # of the file is read (its other settings are for submit and schedule).
    tuning = _environment(args).tuning() if args.env else None
    options = CompileOptions(
        images=images,
        **({"tuning": tuning} if tuning is not None else {}),
        pipeline_root=args.pipeline_root,
        enable_caching=args.enable_caching,
        jobs_in_pod=bool(args.jobs_in_pod),
        **({"kfp_backend": args.kfp_backend} if args.kfp_backend else {}),
    )
    if args.pipeline:
        entries = [get_pipeline(name, args.pipelines_dir) for name in args.pipeline]
    else:
        entries = list(discover_pipelines(args.pipelines_dir).values())
    for entry in entries:
        compiled, path = compile_to_file(entry, args.output_dir, options)
        _out(f"{path}  {compiled.pipeline_name}  sha256:{compiled.digest[:12]}  (valid)")
    return 0


@_guarded
def validate_command(args: argparse.Namespace) -> int:
    from skinlesion.kubeflow.validation import validate_file

    for path in args.files:
        validated = validate_file(path)
        _out(f"{path}: valid ({validated.name}, {len(validated.deployment.executors)} executors)")
    return 0


@_guarded
def check_command(args: argparse.Namespace) -> int:
    params = _environment(args)
    settings = _settings(args, params)
    client = _connect(settings)
    experiment_id = client.experiment_id(settings.experiment)
    _out(f"connected to {settings.host} (auth {settings.auth.value})")
    _out(
        f"experiment {settings.experiment}: {settings.ui_link(f'experiments/details/{experiment_id}')}"
    )
    return 0


@_guarded
def submit_command(args: argparse.Namespace) -> int:
    from skinlesion.kubeflow.discovery import get_pipeline
    from skinlesion.kubeflow.params import parse_assignments
    from skinlesion.kubeflow.submit import (
        RETRAINED_PIPELINE,
        compile_options_for,
        default_run_name,
        prepare,
        prepare_retraining,
        source_revision,
        submit,
        upload_retraining_version,
        wait_for_run,
    )

    params = _environment(args)
    settings = _settings(args, params)
    entry = get_pipeline(args.pipeline, args.pipelines_dir)
    revision = source_revision(args.pipelines_dir.resolve().parent)
    options = compile_options_for(
        params,
        {**_compile_overrides(args), "pipeline_root": settings.pipeline_root or None},
        revision=revision,
    )
    _refuse_dirty(options, args)
    prepared = prepare(
        entry,
        params,
        options,
        overrides=parse_assignments(args.set or []),
        revision=revision,
        upload_dir=args.build_dir,
    )
    # The monitoring pipeline's retraining runs start the newest <version>-retrain (caching off).
    retraining = (
        prepare_retraining(
            entry, params, options, revision=prepared.revision, upload_dir=args.build_dir
        )
        if entry.name == RETRAINED_PIPELINE
        else None
    )
    client = _connect(settings)
    run_name = args.run_name or default_run_name(prepared, params.env)
    submitted = submit(client, prepared, settings, run_name=run_name)
    _out(f"pipeline version: {submitted.version.version_name}")
    if retraining is not None:
        _out(f"retraining version: {upload_retraining_version(client, retraining).version_name}")
    _out(f"run: {run_name}")
    _out(f"run URL: {submitted.url}")
    if args.run_id_file is not None:
        args.run_id_file.parent.mkdir(parents=True, exist_ok=True)
        args.run_id_file.write_text(submitted.run_id + "\n")
    if not args.wait:
        return 0
    result = wait_for_run(
        client, submitted.run_id, timeout_seconds=args.timeout, poll_seconds=args.poll
    )
    _out(f"run {submitted.run_id}: {result.outcome.value} after {result.waited_seconds:.0f} s")
    if result.error:
        _out(f"error: {result.error}")
    return result.outcome.exit_code


def _run_ids(args: argparse.Namespace) -> list[str]:
    """Run ids from the arguments and from ``--run-id-file`` files (one id per file)."""
    ids = list(args.run_ids)
    for path in args.run_id_file or []:
        if not path.is_file():
            raise FileNotFoundError(f"No run id file {path}: `submit --run-id-file` writes it.")
        ids.append(path.read_text().strip())
    if not ids or not all(ids):
        raise ValueError("Give the runs to wait for: run ids, or --run-id-file <file> (repeat).")
    return ids


@_guarded
def wait_command(args: argparse.Namespace) -> int:
    from skinlesion.kubeflow.submit import wait_for_run

    ids = _run_ids(args)
    params = _environment(args)
    settings = _settings(args, params)
    client = _connect(settings)
    worst = 0
    for run_id in ids:
        result = wait_for_run(client, run_id, timeout_seconds=args.timeout, poll_seconds=args.poll)
        _out(f"run {run_id}: {result.outcome.value} after {result.waited_seconds:.0f} s")
        if result.error:
            _out(f"error: {result.error}")
        worst = max(worst, result.outcome.exit_code)
    return worst


@_guarded
def schedule_command(args: argparse.Namespace) -> int:
    from skinlesion.kubeflow.discovery import discover_pipelines
    from skinlesion.kubeflow.schedules import ScheduleError, apply_schedule, load_schedules
    from skinlesion.kubeflow.submit import (
        RETRAINED_PIPELINE,
        compile_options_for,
        prepare,
        prepare_retraining,
        source_revision,
        upload_retraining_version,
        with_caching,
    )

    params = _environment(args)
    settings = _settings(args, params)
    schedules = load_schedules(args.schedules_file)
    if args.name:
        schedules = [s for s in schedules if s.name in args.name]
        missing = sorted(set(args.name) - {s.name for s in schedules})
        if missing:
            raise ScheduleError(f"No schedule {', '.join(missing)} in {args.schedules_file}.")
    pipelines = discover_pipelines(args.pipelines_dir)
    chosen = []
    for schedule in schedules:
        if not schedule.enabled:
            log.info("schedule %s: enabled: false, skipped", schedule.name)
            continue
        if not schedule.applies_to(params.env):
            log.info("schedule %s: not for environment %s, skipped", schedule.name, params.env)
            continue
        if schedule.pipeline not in pipelines:
            raise ScheduleError(
                f"Schedule {schedule.name} runs pipeline {schedule.pipeline!r}, which does not "
                f"exist (pipelines: {', '.join(sorted(pipelines))}); set enabled: false until it does."
            )
        chosen.append(schedule)
    revision = source_revision(args.pipelines_dir.resolve().parent)
    base_options = compile_options_for(
        params,
        {
            "image_registry": args.image_registry,
            "image_tag": args.image_tag,
            "pipeline_root": settings.pipeline_root or None,
        },
        revision=revision,
    )
    _refuse_dirty(base_options, args)
    prepared_list = []
    for schedule in chosen:
        options = with_caching(base_options, schedule.enable_caching)
        prepared_list.append(
            prepare(
                pipelines[schedule.pipeline],
                params,
                options,
                overrides=schedule.arguments,
                revision=revision,
                upload_dir=args.build_dir,
            )
        )
    if not chosen:
        _out("no schedule to apply")
        return 0
    # Scheduled training and monitoring's retraining runs: the training pipeline's version with
    # caching off that the monitoring pipeline's trigger starts (skinlesion.monitoring.retrain).
    retraining = (
        prepare_retraining(
            pipelines[RETRAINED_PIPELINE],
            params,
            base_options,
            revision=revision,
            upload_dir=args.build_dir,
        )
        if RETRAINED_PIPELINE in pipelines
        and any(s.pipeline in (RETRAINED_PIPELINE, "monitoring") for s in chosen)
        else None
    )
    client = _connect(settings)
    experiment_id = client.experiment_id(settings.experiment)
    if retraining is not None:
        _out(f"retraining version: {upload_retraining_version(client, retraining).version_name}")
    for schedule, prepared in zip(chosen, prepared_list, strict=True):
        applied = apply_schedule(
            client,
            schedule,
            prepared,
            experiment_id=experiment_id,
            pipeline_root=settings.pipeline_root,
            service_account=settings.service_account,
            link=settings.ui_link,
        )
        replaced = f" (replaced {', '.join(applied.replaced)})" if applied.replaced else ""
        _out(f"{applied.name}: {applied.url}{replaced}")
    return 0


@_guarded
def schedules_command(args: argparse.Namespace) -> int:
    from skinlesion.kubeflow.schedules import describe

    params = _environment(args)
    settings = _settings(args, params)
    client = _connect(settings)
    experiment_id = client.experiment_id(settings.experiment)
    rows = [describe(r) for r in client.recurring_runs(experiment_id)]
    if not rows:
        _out(f"no schedules in experiment {settings.experiment}")
        return 0
    _out(f"{'NAME':<36} {'STATUS':<9} {'TRIGGER':<24} {'ID':<38} CREATED")
    for row in sorted(rows, key=lambda r: (r.name, r.created_at)):
        _out(
            f"{row.name:<36} {row.status:<9} {row.trigger:<24} {row.recurring_run_id:<38} {row.created_at}"
        )
    return 0


def _by_name(action: str) -> Callable[[argparse.Namespace], int]:
    @_guarded
    def command(args: argparse.Namespace) -> int:
        from skinlesion.kubeflow.schedules import act_by_name

        params = _environment(args)
        settings = _settings(args, params)
        client = _connect(settings)
        experiment_id = client.experiment_id(settings.experiment)
        ids = act_by_name(client, experiment_id, args.name, action)
        _out(f"{action}: {args.name} ({', '.join(ids)})")
        return 0

    return command


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``skinlesion kubeflow <command>``."""
    kubeflow = subparsers.add_parser(
        "kubeflow", help="Kubeflow Pipelines: compile, submit, schedule (docs/kubeflow.md)"
    )
    commands = kubeflow.add_subparsers(dest="kubeflow_command", metavar="COMMAND", required=True)

    p = commands.add_parser("compile", help="compile pipelines to validated IR YAML")
    p.add_argument("--pipeline", action="append", help="a pipeline name (repeat); default: all")
    p.add_argument("--output-dir", type=Path, default=Path("build/pipelines"))
    p.add_argument(
        "--tf-outputs",
        type=Path,
        help="Terraform outputs JSON: the images' ECR repositories (<name>_image_repository_url)",
    )
    p.add_argument(
        "--env",
        help="read compile.tuning (the training pipeline's tuning mode) from "
        "pipelines/params/<env>.yaml; default: mode none",
    )
    p.add_argument(
        "--params-dir", type=Path, default=Path("pipelines/params"), help="the params folder"
    )
    _add_image_options(p, publish=False)
    _add_compile_options(p)
    _add_pipelines_dir(p)
    p.set_defaults(func=compile_command)

    p = commands.add_parser("validate", help="strictly validate compiled pipeline YAML files")
    p.add_argument("files", nargs="+", type=Path)
    p.set_defaults(func=validate_command)

    p = commands.add_parser("check", help="sign in and find (or create) the experiment")
    _add_environment(p)
    p.set_defaults(func=check_command)

    p = commands.add_parser("submit", help="upload a pipeline version and start a run")
    p.add_argument("--pipeline", default="training", help="pipeline name (training)")
    p.add_argument("--set", action="append", metavar="NAME=VALUE", help="a pipeline argument")
    p.add_argument("--run-name", help="the run's display name")
    p.add_argument("--wait", action="store_true", help="wait for the run to end")
    p.add_argument("--timeout", type=float, default=12 * 3600, help="--wait limit in seconds")
    p.add_argument("--poll", type=float, default=15, help="--wait polling interval in seconds")
    p.add_argument("--run-id-file", type=Path, help="write the run's id to this file")
    _add_environment(p)
    _add_image_options(p, publish=True)
    _add_compile_options(p)
    p.set_defaults(func=submit_command)

    p = commands.add_parser("wait", help="wait for runs to end; exit status of the worst")
    p.add_argument("run_ids", nargs="*", metavar="RUN_ID")
    p.add_argument("--run-id-file", type=Path, action="append", help="a file from submit")
    p.add_argument("--timeout", type=float, default=12 * 3600, help="limit per run, seconds")
    p.add_argument("--poll", type=float, default=15, help="polling interval in seconds")
    _add_environment(p)
    p.set_defaults(func=wait_command)

    p = commands.add_parser("schedule", help="create or replace the schedules of schedules.yaml")
    p.add_argument("--schedules-file", type=Path, default=Path("pipelines/schedules.yaml"))
    p.add_argument("--name", action="append", help="only this schedule (repeat)")
    _add_image_options(p, publish=True)
    _add_environment(p)
    p.set_defaults(func=schedule_command)

    p = commands.add_parser("schedules", help="list the experiment's schedules")
    _add_environment(p)
    p.set_defaults(func=schedules_command)

    for action in ("pause", "resume", "delete"):
        p = commands.add_parser(f"{action}-schedule", help=f"{action} a schedule by name")
        p.add_argument("name")
        _add_environment(p)
        p.set_defaults(func=_by_name(action))
