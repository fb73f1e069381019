"""``make demo-loop``: train and deploy a champion, shift its traffic, let monitoring alarm and
retrain through the trigger's own code, compare challenger and champion on the same test data,
then roll the challenger out or hold it back - on this machine, printing each step's evidence.

1. data: the generated sample (``skinlesion.data.sample``), as ``make demo`` uses it;
2. champion: the training pipeline (``pipelines/training.py``) with kfp.local: trained,
   evaluated, registered, deployed with data capture on;
3. the training pipeline is uploaded to a local KFP store as its ``-retrain`` version
   (``skinlesion.kubeflow.local_client``), as ``make submit`` uploads it to Kubeflow;
4. traffic: new lesions photographed by "a new camera" (two shifts of the monitoring benchmark,
   ``bench/monitoring/shifts.py``: colour cast +15/-15 and blur 1 px) sent to the endpoint over
   HTTP; they are labelled later and join the training data (the new data folder);
5. the monitoring pipeline (``pipelines/monitoring.py``) over the captured window: it alarms,
   notifies, and its trigger step starts the training pipeline through the local KFP client
   (``kfp_host=local://<store>``): the code path that calls the KFP API on a cluster;
6. a second alarm while that run is in flight: the same trigger function skips it (why printed);
7. the retraining run ends; its candidate is registered (for manual approval: the loop decides);
8. champion and challenger on the same test data: the challenger's test split, less any image
   the champion trained or validated on; the challenger's evaluation is its run's, the champion
   is evaluated again now on that split (the real evaluate job);
9. roll-out through the deploy pipeline (``pipelines/deploy.py``) when the challenger wins,
   else held back with the reason. A summary goes to ``<workdir>/loop.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.demo import (
    REFUSED,
    SAMPLE_RECIPE_FILE,
    classify_over_http,
    git_commit,
    load_recipe,
    local_training_pipeline,
    pipeline_train_settings,
)

log = logging.getLogger("skinlesion.loop")

MODEL_GROUP = "skinlesion-loop"
ENDPOINT = "skinlesion-loop"
EXPERIMENT = "skinlesion-loop"
TRAINING_PIPELINE = "pipelines.training:training_pipeline"
# Two rows of the monitoring benchmark, together: a new camera, warmer and softer.
CAMERA_SHIFTS = ("colour cast +15/-15 (R/B)", "blur radius 1.0 px")
ARRIVAL_PREFIX = "ARRIVED_"
# The register gate compares a candidate with the champion's registered figure, measured on
# the champion's own test split; a retraining run's split is another (new images joined the
# data). So the loop's retraining run registers for manual approval (a margin no candidate can
# clear) and the loop decides on the same test data.
MANUAL_APPROVAL_MARGIN = 1.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("build/loop"))
    parser.add_argument("--per-class", type=int, default=60, help="sample images per class")
    parser.add_argument(
        "--new-per-class", type=int, default=30, help="new (shifted) images per class"
    )
    parser.add_argument("--image-size", type=int, help="override the recipe's image size")
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs")
    parser.add_argument("--threshold", type=float, help="override the gate's threshold")
    parser.add_argument(
        "--margin",
        type=float,
        default=0.0,
        help="balanced accuracy the challenger must gain over the champion to be rolled out",
    )
    parser.add_argument(
        "--cooldown-hours", type=float, default=24.0, help="the trigger's retraining cooldown"
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for a run")
    parser.add_argument("--keep-endpoint", action="store_true", help="leave the endpoint running")
    parser.add_argument("--verbose", action="store_true", help="echo every log line")
    args = parser.parse_args(argv)
    if args.per_class < 4:
        parser.error(f"--per-class {args.per_class}: must be >= 4 (each split needs lesions).")
    from skinlesion.labels import CLASSES
    from skinlesion.monitoring.config import MonitorConfig

    window = MonitorConfig().min_window
    if args.new_per_class * len(CLASSES) < window:
        parser.error(
            f"--new-per-class {args.new_per_class}: the monitor decides on windows of at least "
            f"{window} images, so at least {-(-window // len(CLASSES))} per class."
        )
    return args


# --- the new camera's images ---------------------------------------------------------------


def camera_shift() -> Callable[[bytes, Any], bytes]:
    """The benchmark's shifts named in CAMERA_SHIFTS, applied in turn."""
    from bench.monitoring.shifts import SHIFTS

    by_name = {shift.name: shift.transform for shift in SHIFTS}
    missing = [name for name in CAMERA_SHIFTS if name not in by_name]
    if missing:
        raise ValueError(f"Shifts {missing} are not in bench/monitoring/shifts.py: {list(by_name)}")
    transforms = [by_name[name] for name in CAMERA_SHIFTS]

    def shift(data: bytes, rng: Any) -> bytes:
        for transform in transforms:
            data = transform(data, rng)
        return data

    return shift


def shifted_arrivals(sample: Path, out: Path, seed: int = 1) -> list[tuple[Path, str]]:
    """The generated images under the camera shift, renamed ``ARRIVED_*`` (new ids, new
    lesions): (image path, true class) for each."""
    import numpy as np

    from skinlesion.labels import CLASSES

    rng = np.random.default_rng(seed)
    shift = camera_shift()
    (out / "images").mkdir(parents=True, exist_ok=True)
    arrivals = []
    with (sample / "labels.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            truth = next(c for c in CLASSES if float(row[c]) == 1.0)
            target = out / "images" / f"{ARRIVAL_PREFIX}{row['image']}.jpg"
            target.write_bytes(shift((sample / "images" / f"{row['image']}.jpg").read_bytes(), rng))
            arrivals.append((target, truth))
    return arrivals


def merge_data(original: Path, arrived: Path, new_sample: Path, out: Path) -> int:
    """``out`` = the original data plus the arrived images with their labels (ISIC layout);
    returns how many images joined. Arrived ids and lesion ids get the ``ARRIVED_`` prefix."""
    if out.exists():
        shutil.rmtree(out)
    (out / "images").mkdir(parents=True)
    for path in (original / "images").glob("*.jpg"):
        os.link(path, out / "images" / path.name)
    for path in (arrived / "images").glob("*.jpg"):
        os.link(path, out / "images" / path.name)
    joined = 0
    for name, key in (("labels.csv", "image"), ("metadata.csv", "image")):
        with (original / name).open(newline="") as handle:
            reader = csv.DictReader(handle)
            fields = list(reader.fieldnames or [])
            rows = list(reader)
        with (new_sample / name).open(newline="") as handle:
            extra = list(csv.DictReader(handle))
        for row in extra:
            row[key] = ARRIVAL_PREFIX + row[key]
            if "lesion_id" in row:
                row["lesion_id"] = ARRIVAL_PREFIX + row["lesion_id"]
        with (out / name).open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows + extra)
        joined = len(extra)
    return joined


@dataclass(frozen=True)
class Answers:
    """What the endpoint answered for a batch of images."""

    sent: int
    refused: int  # answered "assessable": false (blank, saturated, or out of distribution)
    correct: int  # of the answered ones, top class = the true class
    refusal: str  # the first refusal's reason


def send_images(url: str, images: list[tuple[Path, str]]) -> Answers:
    """POST each JPEG to /invocations (real HTTP, the demo's sender); count refusals and correct
    top classes."""
    answers = classify_over_http(url, images)
    refusals = [pred for _, pred, _ in answers if pred.startswith(REFUSED)]
    correct = sum(pred == truth for (_, truth), (_, pred, _) in zip(images, answers, strict=True))
    first = refusals[0].removeprefix(REFUSED) if refusals else ""
    return Answers(len(images), len(refusals), correct, first)


def wait_for_capture(folder: Path, expected: int, timeout: float = 60.0) -> int:
    """Captured records under ``folder`` once ``expected`` are there (the writer flushes when
    its queue empties)."""
    deadline = time.monotonic() + timeout
    while True:
        count = sum(len(p.read_text().splitlines()) for p in folder.rglob("*.jsonl"))
        if count >= expected or time.monotonic() > deadline:
            return count
        time.sleep(0.5)


# --- champion and challenger on the same test data -----------------------------------------


@dataclass(frozen=True)
class Scores:
    """A model's figures on the comparison's images."""

    balanced_accuracy: float
    malignant_sensitivity: float  # malignant test images whose top class is malignant
    images: int


@dataclass(frozen=True)
class Decision:
    """Roll the challenger out, or hold it back, and why."""

    rollout: bool
    reason: str


def scores(predictions: Path, keep: Callable[[str], bool]) -> Scores:
    """Balanced accuracy and malignant sensitivity over the predictions.csv rows kept."""
    import numpy as np

    from skinlesion.clinical import MALIGNANT_CLASSES
    from skinlesion.labels import CLASSES
    from skinlesion.metrics import balanced_accuracy

    with predictions.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if keep(row["image"])]
    if not rows:
        raise ValueError(f"No test images left to compare in {predictions}.")
    truth = np.array([CLASSES.index(row["true_label"]) for row in rows])
    probabilities = np.array([[float(row[c]) for c in CLASSES] for row in rows])
    malignant = [row for row in rows if row["true_label"] in MALIGNANT_CLASSES]
    hits = sum(row["predicted_label"] in MALIGNANT_CLASSES for row in malignant)
    return Scores(
        balanced_accuracy=balanced_accuracy(truth, probabilities),
        malignant_sensitivity=hits / len(malignant) if malignant else float("nan"),
        images=len(rows),
    )


def decide(champion: Scores, challenger: Scores, *, status: str, margin: float) -> Decision:
    """Roll out when the challenger passed the gate, beats the champion's balanced accuracy by
    ``margin`` and finds no fewer malignant lesions; else hold back, saying which failed."""
    if status == "Rejected":
        return Decision(False, "the register gate rejected it (balanced accuracy below threshold)")
    delta = challenger.balanced_accuracy - champion.balanced_accuracy
    if delta < margin - 1e-9:
        return Decision(
            False,
            f"balanced accuracy {challenger.balanced_accuracy:.4f} vs the champion's "
            f"{champion.balanced_accuracy:.4f}: {delta:+.4f}, the margin is {margin:+.4f}",
        )
    if challenger.malignant_sensitivity < champion.malignant_sensitivity - 1e-9:
        return Decision(
            False,
            f"malignant sensitivity fell from {champion.malignant_sensitivity:.3f} to "
            f"{challenger.malignant_sensitivity:.3f}",
        )
    return Decision(
        True,
        f"balanced accuracy {delta:+.4f} (margin {margin:+.4f}), malignant sensitivity "
        f"{challenger.malignant_sensitivity - champion.malignant_sensitivity:+.3f}",
    )


def split_images(dataset: Path, splits: Iterable[str]) -> set[str]:
    """The image ids of the dataset's ``splits`` (from each split's index.csv)."""
    ids: set[str] = set()
    for split in splits:
        with (dataset / split / "index.csv").open(newline="") as handle:
            ids.update(row["image"] for row in csv.DictReader(handle))
    return ids


# --- the loop --------------------------------------------------------------------------------


class Story:
    """Numbered steps and their evidence, on the terminal."""

    def __init__(self, say: Callable[[str], None] = print) -> None:
        self.say = say
        self.number = 0

    def step(self, title: str) -> None:
        self.number += 1
        self.say(f"\n[{self.number}] {title}")

    def fact(self, text: str) -> None:
        self.say(f"    {text}")


def follow_run_log(path: Path, offset: int, state: Any, say: Callable[[str], None]) -> int:
    """Print the story lines the retraining run wrote since ``offset``; return the new offset."""
    from pipelines.console import story_line

    if not path.is_file():
        return offset
    with path.open(encoding="utf-8", errors="replace") as handle:
        handle.seek(offset)
        chunk = handle.read()
    complete, _, _ = chunk.rpartition("\n")
    for line in complete.splitlines():
        shown = story_line(line, state, time.monotonic())
        if shown is not None:
            say("   " + shown)
    return offset + len(complete.encode()) + (1 if complete else 0)


def newest_run_dir(root: Path, before: set[Path]) -> Path:
    return sorted(set(root.glob("*")) - before, key=lambda p: p.stat().st_mtime)[-1]


def main(argv: list[str] | None = None) -> int:
    """Run the loop; the endpoint is stopped at the end, however the loop ended (unless kept)."""
    args = parse_args(argv)
    try:
        return run_loop(args)
    finally:
        root = args.workdir.resolve() / "local"
        if not args.keep_endpoint and root.is_dir():
            from skinlesion.backends.errors import EndpointNotFoundError
            from skinlesion.backends.local import LocalBackend, LocalSettings

            with contextlib.suppress(EndpointNotFoundError):
                LocalBackend(LocalSettings(root=root)).delete_endpoint(ENDPOINT)


def run_loop(args: argparse.Namespace) -> int:
    """The nine steps of the module's docstring; 0 when the loop ran to its end."""
    from skinlesion.logs import configure_logging

    configure_logging()
    from kfp import local

    from pipelines.console import Console, ConsoleState
    from skinlesion.backends.base import ApprovalStatus, EvaluateRequest
    from skinlesion.backends.local import ROOT_ENV, LocalBackend
    from skinlesion.data.sample import write_sample
    from skinlesion.kubeflow.local_client import LocalKfpClient, LocalKubeflowSettings
    from skinlesion.monitoring.retrain import RETRAIN_SUFFIX, kubeflow_settings, request_retraining

    started = time.monotonic()
    workdir = args.workdir.resolve()
    if workdir.exists() and any(workdir.iterdir()):
        if not (workdir / "loop.json").is_file() and not (workdir / "logs").is_dir():
            print(
                f"--workdir {workdir} holds files that no loop wrote (no loop.json or logs/): "
                "pass an empty or new folder, or one an earlier loop used.",
                file=sys.stderr,
            )
            return 2
        shutil.rmtree(workdir)  # each loop starts from nothing: no old registry, run or capture
    workdir.mkdir(parents=True, exist_ok=True)
    # The loop is an edge: kfp.local's step processes find the local backend's root here.
    os.environ[ROOT_ENV] = str(workdir / "local")
    backend = LocalBackend.from_environment()
    store = workdir / "kfp"
    kfp_host = f"local://{store}"
    summary: dict[str, Any] = {"workdir": str(workdir)}
    logs = workdir / "logs"
    story = Story()

    recipe = load_recipe(SAMPLE_RECIPE_FILE)
    config = dataclasses.replace(
        recipe.config,
        epochs=args.epochs or recipe.config.epochs,
        image_size=args.image_size or recipe.config.image_size,
    )
    threshold = args.threshold if args.threshold is not None else recipe.threshold
    training_arguments = {
        "backend": "local",
        **{name: getattr(config, name) for name in pipeline_train_settings()},
        "threshold": threshold,
        "git_commit": git_commit(),
        "endpoint_name": ENDPOINT,
        "model_group": MODEL_GROUP,
        "capture_percentage": 100,
    }

    def run_in_process(what: str, call: Callable[[], Any]) -> bool:
        # Each run gets its own Console and log file: the Console's reader starts at the end
        # of its file, and a file that starts empty loses no line however late it starts.
        slug = "-".join(what.replace("'s", "").split()[1:])  # "the deploy run" -> deploy-run
        log_file = logs / f"{len(list(logs.glob('*.log'))) + 1}-{slug}.log"
        console = Console(log_file, verbose=args.verbose)
        try:
            with console.capture():
                call()
        except RuntimeError as error:
            reason = console.state.failures[-1] if console.state.failures else str(error)
            story.fact(f"{what} stopped: {reason} (full log: {log_file})")
            return False
        return True

    # 1. data
    story.step("Data: the generated sample")
    sample = workdir / "data" / "sample"
    write_sample(sample, n_per_class=args.per_class, image_size=128, seed=0)
    story.fact(f"{args.per_class} images per class in {sample} (ISIC layout)")

    # 2. champion
    story.step("Champion: the training pipeline with kfp.local (make demo's run)")
    pipeline_root = workdir / "pipeline-root"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root))
    training = local_training_pipeline()
    if not run_in_process(
        "the champion's run", lambda: training(data_uri=str(sample), **training_arguments)
    ):
        return 1
    champion_run = newest_run_dir(pipeline_root, set())
    [champion] = backend.list_versions(MODEL_GROUP)
    story.fact(
        f"registered {champion.arn} ({champion.approval_status.value}), balanced accuracy "
        f"{champion.metrics['balanced_accuracy']:.4f} on its test split"
    )
    if champion.approval_status is not ApprovalStatus.APPROVED:
        story.fact(
            f"the champion was not deployed: below the gate's threshold {threshold} "
            "(--threshold, --epochs change it); nothing to monitor"
        )
        return 1
    endpoint = backend.describe_endpoint(ENDPOINT)
    story.fact(f"deployed at {endpoint.url}, capturing requests in {endpoint.capture_uri}")
    summary["champion"] = {"arn": champion.arn, "metrics": champion.metrics}

    # 3. the -retrain version in the local KFP store
    story.step("The training pipeline uploaded to the local KFP store (make submit's upload)")
    client = LocalKfpClient(LocalKubeflowSettings(store=store, experiment=EXPERIMENT))
    commit = (training_arguments["git_commit"] or "local")[:7]
    version = client.upload("skinlesion-training", f"{commit}{RETRAIN_SUFFIX}", TRAINING_PIPELINE)
    story.fact(f"version {version.version_name} of skinlesion-training in {store}")

    # 4. shifted traffic; its images, labelled, join the data
    story.step(f"Traffic from a new camera: {' + '.join(CAMERA_SHIFTS)} (bench/monitoring)")
    new_sample = workdir / "data" / "new-lesions"
    write_sample(new_sample, n_per_class=args.new_per_class, image_size=128, seed=1)
    arrived_dir = workdir / "data" / "arrived"
    arrivals = shifted_arrivals(new_sample, arrived_dir)
    answers = send_images(endpoint.url, arrivals)
    captured = wait_for_capture(Path(endpoint.capture_uri), len(arrivals))
    story.fact(
        f"{answers.sent} images of new lesions sent over HTTP; the champion refused "
        f"{answers.refused}, and of the rest got {answers.correct} right; {captured} requests "
        "captured"
    )
    if answers.refusal:
        story.fact(f"a refusal: {answers.refusal}")
    data_v2 = workdir / "data" / "current"
    joined = merge_data(sample, arrived_dir, new_sample, data_v2)
    story.fact(f"labelled, they join the training data: {data_v2} (+{joined} images)")
    summary["traffic"] = {**dataclasses.asdict(answers), "captured": captured}

    # 5. monitoring: alarm, notify, trigger
    story.step("The monitoring pipeline over the captured window (kfp.local)")
    from pipelines.monitoring import monitoring_pipeline

    retrain_arguments = {
        **{k: v for k, v in training_arguments.items() if k != "backend"},
        "approval_margin": MANUAL_APPROVAL_MARGIN,
    }
    before = set(pipeline_root.glob("*"))
    if not run_in_process(
        "the monitoring run",
        lambda: monitoring_pipeline(
            backend="local",
            endpoint_name=ENDPOINT,
            window_hours=0,
            data_uri=str(data_v2),
            training_arguments=retrain_arguments,
            kfp_host=kfp_host,
            kfp_experiment=EXPERIMENT,
            retraining_cooldown_hours=args.cooldown_hours,
        ),
    ):
        return 1
    monitoring_run = newest_run_dir(pipeline_root, before)
    monitored = json.loads(
        next(monitoring_run.rglob("monitoring_summary.json")).read_text(encoding="utf-8")
    )
    story.fact(f"alarm: {monitored['alarm']} - {monitored['headline']}")
    request_file = next(monitoring_run.glob("trigger-retraining*/request"), None)
    summary["monitoring"] = {"alarm": monitored["alarm"], "headline": monitored["headline"]}
    if request_file is None:
        story.fact("no alarm, so no retraining: the loop ends here")
        summary["outcome"] = "no alarm"
        return finish(summary, workdir, backend, args, started, story)
    request = json.loads(request_file.read_text())
    summary["retraining_request"] = request
    story.fact(
        f"trigger: {request['status']} run {request['run_id'] or '-'} of "
        f"{request['pipeline_version'] or request['pipeline']} on {request['arguments']['data_uri']}"
        + (f" ({request['skip_reason']})" if request["skip_reason"] else "")
    )
    if request["status"] != "submitted":
        summary["outcome"] = f"retraining {request['status']}"
        return finish(summary, workdir, backend, args, started, story)

    # 6. the next alarm, while the run is in flight
    story.step("A second alarm while that run is in flight (the trigger's code again)")
    again = request_retraining(
        reason="the next window's alarm",
        data_uri=str(data_v2),
        arguments={**retrain_arguments, "backend": "local"},
        kubeflow=kubeflow_settings(kfp_host, "", EXPERIMENT),
        record_dir=backend.retraining_record_dir(),
        cooldown_hours=args.cooldown_hours,
    )
    story.fact(f"{again.status}: {again.skip_reason or again.run_id}")
    summary["second_request"] = again.to_dict()

    # 7. the retraining run
    story.step(f"The retraining run {request['run_id']} (kfp.local, its own process)")
    run_log = store / "runs" / f"{request['run_id']}.log"
    state, offset = ConsoleState(), 0
    deadline = time.monotonic() + args.timeout
    while True:
        offset = follow_run_log(run_log, offset, state, story.say)
        run = client.get_run(request["run_id"])
        if run.state in ("SUCCEEDED", "FAILED", "CANCELED"):
            break
        if time.monotonic() > deadline:
            story.fact(f"the run has not ended after {args.timeout:.0f} s; its log: {run_log}")
            return 1
        time.sleep(1.0)
    run = client.wait(request["run_id"], timeout=60)
    follow_run_log(run_log, offset, state, story.say)
    story.fact(f"run {run.run_id}: {run.state}" + (f" - {run.error}" if run.error else ""))
    summary["retraining_run"] = {"run_id": run.run_id, "state": run.state, "error": run.error}
    if run.state != "SUCCEEDED":
        summary["outcome"] = "retraining failed"
        finish(summary, workdir, backend, args, started, story)
        return 1
    challenger = next(v for v in backend.list_versions(MODEL_GROUP) if v.arn != champion.arn)
    story.fact(
        f"registered {challenger.arn} ({challenger.approval_status.value}), balanced accuracy "
        f"{challenger.metrics['balanced_accuracy']:.4f} on its own test split"
    )

    # 8. the same test data
    story.step("Champion and challenger on the same test data")
    retrain_run = Path(run.run_dir)
    challenger_dataset = next(retrain_run.rglob("manifest.json")).parent
    champion_dataset = next(champion_run.rglob("manifest.json")).parent
    challenger_predictions = next(retrain_run.rglob("predictions.csv"))
    champion_eval = workdir / "comparison" / "champion-on-challenger-test"
    if not run_in_process(
        "the champion's evaluation",
        lambda: backend.evaluate(
            EvaluateRequest(
                dataset_uri=str(challenger_dataset),
                model_uri=champion.model_data_uri,
                output_uri=str(champion_eval),
                job_name="loop-champion-evaluation",
            )
        ),
    ):
        return 1
    seen = split_images(champion_dataset, ("train", "val"))
    test_ids = split_images(challenger_dataset, ("test",))
    overlap = len(test_ids & seen)
    fair = lambda image: image not in seen  # noqa: E731 - a one-line filter
    old = scores(champion_eval / "predictions.csv", fair)
    new = scores(challenger_predictions, fair)
    new_images = sum(i.startswith(ARRIVAL_PREFIX) for i in test_ids - seen)
    story.fact(
        f"the challenger's test split: {len(test_ids)} images; {overlap} of them the champion "
        f"trained or validated on, left out: {old.images} compared ({new_images} from the new "
        "camera)"
    )
    story.fact("challenger: its run's evaluation, reused; champion: evaluated again on the split")
    story.fact(f"{'':<24}{'champion':>10}{'challenger':>12}{'delta':>9}")
    for label, a, b in (
        ("balanced accuracy", old.balanced_accuracy, new.balanced_accuracy),
        ("malignant sensitivity", old.malignant_sensitivity, new.malignant_sensitivity),
    ):
        story.fact(f"{label:<24}{a:>10.4f}{b:>12.4f}{b - a:>+9.4f}")
    decision = decide(old, new, status=challenger.approval_status.value, margin=args.margin)
    summary["comparison"] = {
        "images": old.images,
        "left_out": overlap,
        "champion": dataclasses.asdict(old),
        "challenger": dataclasses.asdict(new),
        "margin": args.margin,
    }

    # 9. roll out or hold back
    summary["challenger"] = {"arn": challenger.arn, "metrics": challenger.metrics}
    if decision.rollout:
        story.step("Roll-out: approved in the registry, deployed by the deploy pipeline")
        backend.set_approval_status(challenger.arn, ApprovalStatus.APPROVED)
        from pipelines.deploy import deploy_pipeline

        if not run_in_process(
            "the deploy run",
            lambda: deploy_pipeline(
                model_version_arn=challenger.arn,
                endpoint_name=ENDPOINT,
                backend="local",
                capture_percentage=100,
            ),
        ):
            return 1
        served = backend.describe_endpoint(ENDPOINT)
        story.fact(f"why: {decision.reason}")
        story.fact(f"the endpoint now serves {served.model_version_arn}")
        summary["outcome"] = "rolled out"
    else:
        story.step("Held back: the champion keeps serving")
        served = backend.describe_endpoint(ENDPOINT)
        story.fact(f"why: {decision.reason}")
        story.fact(
            f"{challenger.arn} stays {challenger.approval_status.value}; the endpoint serves "
            f"{served.model_version_arn}"
        )
        summary["outcome"] = "held back"
    summary["decision"] = dataclasses.asdict(decision)
    summary["served"] = served.model_version_arn
    return finish(summary, workdir, backend, args, started, story)


def finish(
    summary: dict[str, Any], workdir: Path, backend: Any, args: Any, started: float, story: Story
) -> int:
    """Write loop.json and print the last lines; return 0."""
    summary["wall_seconds"] = round(time.monotonic() - started, 1)
    (workdir / "loop.json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.keep_endpoint:
        story.fact(f"the endpoint keeps running ({ENDPOINT}, local root {workdir / 'local'})")
    story.say(
        f"\noutcome: {summary.get('outcome')}; {summary['wall_seconds']:.0f} s; "
        f"record: {workdir / 'loop.json'}; logs: {workdir / 'logs'}"
    )
    story.say(
        "note: the models learnt generated images; the loop shows the mechanism, not a "
        "clinical result"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
