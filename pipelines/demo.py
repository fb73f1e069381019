"""``make demo``: the training pipeline on this machine with kfp.local, then the endpoint over HTTP.

Runs the very graph that Kubeflow runs (``pipelines/training.py``) with KFP's SubprocessRunner
and the local backend, classifies a few held-out test images over HTTP, prints a summary and
stops the endpoint.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import math
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from skinlesion.config import ConfigError, TrainConfig
from skinlesion.data.store import read_split_metadata
from skinlesion.logs import configure_logging

log = logging.getLogger("skinlesion.demo")


PARAMS_DIR = Path(__file__).resolve().parent / "params"
# The generated sample's recipe, and the real-data one (docs/benchmarks.md says how it was chosen).
SAMPLE_RECIPE_FILE = PARAMS_DIR / "demo-sample.yaml"
REAL_RECIPE_FILE = PARAMS_DIR / "demo-real.yaml"
RECIPE_KEYS = ("train", "threshold")


class RecipeError(ValueError):
    """A demo recipe file is malformed; the message names the file and what is accepted."""


@dataclass(frozen=True)
class Recipe:
    """Pipeline arguments for one kind of data: training settings and the gate's threshold."""

    config: TrainConfig
    threshold: float
    source: Path


def pipeline_train_settings() -> tuple[str, ...]:
    """The TrainConfig settings that the train step takes (the training pipeline has a parameter
    of the same name for each). Others, such as seed, would not reach training: refused."""
    from components.train import train

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return tuple(n for n in train.component_spec.inputs or {} if n in names)


def load_recipe(path: Path) -> Recipe:
    """Read a recipe file; unknown or invalid settings are refused, naming what is accepted."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise RecipeError(f"Cannot read the demo recipe {path}: {error}") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"Invalid demo recipe {path}: expected a mapping with {RECIPE_KEYS}.")
    unknown = sorted(set(raw) - set(RECIPE_KEYS))
    missing = [k for k in RECIPE_KEYS if k not in raw]
    if unknown or missing:
        raise RecipeError(
            f"Invalid demo recipe {path}: unknown keys {unknown}, missing keys {missing}. "
            f"Accepted: {', '.join(RECIPE_KEYS)}."
        )
    train = raw["train"]
    if not isinstance(train, dict):
        raise RecipeError(f"Invalid demo recipe {path}: train must map settings to values.")
    try:
        config = TrainConfig.from_mapping(
            train, accepted=pipeline_train_settings(), source=str(path)
        )
    except ConfigError as error:
        raise RecipeError(str(error)) from None
    threshold = raw["threshold"]
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise RecipeError(f"Invalid threshold {threshold!r} in {path}: a number in [0, 1].")
    if not 0 <= threshold <= 1:
        raise RecipeError(f"Invalid threshold {threshold!r} in {path}: must be in [0, 1].")
    return Recipe(config=config, threshold=float(threshold), source=path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("build/demo"))
    parser.add_argument("--data", type=Path, help="ISIC-format folder; default: generated sample")
    parser.add_argument("--labels", default="", help="ground-truth CSV relative to --data")
    parser.add_argument("--architecture", help="override the recipe's architecture")
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs")
    parser.add_argument("--image-size", type=int, help="override the recipe's image size")
    parser.add_argument("--threshold", type=float, help="override the gate's threshold")
    parser.add_argument(
        "--train-seed",
        type=int,
        help="the training seed (weights, batches, augmentation); the split keeps its own",
    )
    parser.add_argument("--classify", type=int, default=8, help="test images sent over HTTP")
    parser.add_argument("--keep-endpoint", action="store_true", help="leave the endpoint running")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show everything the run logs (kfp.local's executor dumps, every job line); "
        "by default it goes to <workdir>/demo.log and the console shows the stages",
    )
    return parser.parse_args(argv)


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


REFUSED = "refused: "  # what classify_over_http answers in place of a class for a refusal


def classify_over_http(
    url: str,
    images: list[tuple[Path, str]],
    metadata: dict[str, dict[str, str]] | None = None,
) -> list[tuple[str, str, float]]:
    """POST each JPEG to /invocations; return (image, predicted class, probability).

    ``metadata`` (image id -> age_approx/sex/anatom_site) goes along in SageMaker's custom
    attributes header, as a client of the real endpoint would send it (docs/serving.md).
    An image the endpoint refuses (``assessable: false``) comes back as (image, REFUSED + its
    reason, NaN): it counts as not right, and the reason is shown.
    """
    from skinlesion.serving.requests import CUSTOM_ATTRIBUTES_HEADER

    results = []
    for path, _truth in images:
        headers = {"Content-Type": "image/jpeg", "Accept": "application/json"}
        known = {k: v for k, v in (metadata or {}).get(path.stem, {}).items() if v}
        if known:
            headers[CUSTOM_ATTRIBUTES_HEADER] = ";".join(f"{k}={v}" for k, v in known.items())
        request = urllib.request.Request(
            f"{url}/invocations", data=path.read_bytes(), headers=headers, method="POST"
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.loads(response.read())
        prediction = body["predictions"][0]
        if not prediction.get("assessable", True):
            results.append((path.stem, f"{REFUSED}{prediction.get('reason', '')}", math.nan))
            continue
        top = prediction["top_class"]
        results.append((path.stem, top, float(prediction["probabilities"][top])))
    return results


def held_out_images(dataset_dir: Path, data_dir: Path, count: int) -> list[tuple[Path, str]]:
    """Test-split images (never trained on) with their true class, one class after another."""
    from skinlesion.labels import CLASSES

    rows = list(csv.DictReader((dataset_dir / "test" / "index.csv").open()))
    by_class: dict[str, list[str]] = {}
    for row in rows:
        by_class.setdefault(CLASSES[int(row["label"])], []).append(row["image"])
    chosen: list[tuple[Path, str]] = []
    while len(chosen) < count and any(by_class.values()):
        for cls in CLASSES:
            if by_class.get(cls) and len(chosen) < count:
                image = by_class[cls].pop(0)
                path = data_dir / "images" / f"{image}.jpg"
                if path.exists():
                    chosen.append((path, cls))
    return chosen


STAGE_ORDER = ("preprocess", "train", "evaluate")


def stage_times(run_dir: Path) -> dict[str, float]:
    """Wall seconds of each job stage, in pipeline order, from the job records the steps write."""
    times: dict[str, float] = {}
    for record in run_dir.rglob("job.json"):
        payload = json.loads(record.read_text())
        if "wall_seconds" in payload:
            times[record.parent.parent.name] = float(payload["wall_seconds"])
    rank = {name: index for index, name in enumerate(STAGE_ORDER)}
    return dict(sorted(times.items(), key=lambda item: rank.get(item[0], len(rank))))


def failure_reason(local_root: Path) -> str:
    """The first line of the newest job failure under the local backend's root ("" if none)."""
    files = [
        *local_root.glob("jobs/*/opt/ml/output/failure"),
        *local_root.glob("jobs/*/opt/ml/output/message"),
    ]
    if not files:
        return ""
    newest = max(files, key=lambda p: p.stat().st_mtime)
    return newest.read_text(errors="replace").strip().splitlines()[0]


def local_training_pipeline() -> Any:
    """The training pipeline as a local run builds it: no retries (``tasks.NO_RETRY``: a local
    job fails on its data, parameters or code, and would fail the same way again).

    ``@dsl.pipeline`` builds the graph when the module is executed, so the module is executed
    again under the local policy; the graph is otherwise the one Kubeflow runs.
    """
    import importlib

    import pipelines.training
    from skinlesion.kubeflow.tasks import NO_RETRY, retry_policy

    with retry_policy(NO_RETRY):
        module = importlib.reload(pipelines.training)
    return module.training_pipeline


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    from kfp import local

    from pipelines.console import Console
    from skinlesion.backends.local import ROOT_ENV, LocalBackend

    training_pipeline = local_training_pipeline()

    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    # The demo is an edge: kfp.local's step subprocesses find the local backend's root here.
    os.environ[ROOT_ENV] = str(workdir / "local")
    started = time.monotonic()

    if args.data:
        data_dir = args.data.resolve()
        recipe = load_recipe(REAL_RECIPE_FILE)
        log.info("data: %s", data_dir)
    else:
        from skinlesion.data.sample import write_sample

        data_dir = workdir / "sample"
        recipe = load_recipe(SAMPLE_RECIPE_FILE)
        if not (data_dir / "labels.csv").exists():
            log.info("generating the embedded sample dataset in %s", data_dir)
            write_sample(data_dir)
        log.info("data: the generated sample in %s", data_dir)

    pipeline_root = workdir / "pipeline-root"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root))
    log.info("recipe: %s", recipe.source)
    config = recipe.config
    architecture = args.architecture or config.architecture
    config = dataclasses.replace(  # validates the command line's overrides too
        config,
        architecture=architecture,
        epochs=args.epochs or config.epochs,
        image_size=args.image_size or config.image_size,
        # Stage counts differ between architectures: the recipe's only fits its own.
        freeze_stages=config.freeze_stages if architecture == recipe.config.architecture else 0,
    )
    arguments = {
        "data_uri": str(data_dir),
        "backend": "local",
        "labels": args.labels,
        **{name: getattr(config, name) for name in pipeline_train_settings()},
        "train_seed": args.train_seed if args.train_seed is not None else config.seed,
        "threshold": args.threshold if args.threshold is not None else recipe.threshold,
        "git_commit": git_commit(),
        "endpoint_name": "skinlesion-demo",
        "model_group": "skinlesion-demo",
    }
    log_file = workdir / "demo.log"
    log_file.write_text("")
    log.info("running the training pipeline with kfp.local; its full log: %s", log_file)
    before = set(pipeline_root.glob("*")) if pipeline_root.exists() else set()
    console = Console(log_file, verbose=args.verbose)
    try:
        with console.capture():
            log.info("pipeline arguments: %s", json.dumps(arguments))
            training_pipeline(**arguments)
    except RuntimeError as error:
        reason = failure_reason(workdir / "local") or (
            console.state.failures[-1] if console.state.failures else str(error)
        )
        print(f"\nThe pipeline stopped (full log: {log_file}).", file=sys.stderr)
        print(reason, file=sys.stderr)
        return 1
    run_dirs = sorted(set(pipeline_root.glob("*")) - before, key=lambda p: p.stat().st_mtime)
    run_dir = run_dirs[-1]

    backend = LocalBackend.from_environment()
    versions = backend.list_versions("skinlesion-demo")
    evaluation = next(run_dir.rglob("metrics.json"))
    metrics = json.loads(evaluation.read_text())
    report = next(run_dir.rglob("report.html"), None)
    model_archive = next(run_dir.rglob("model.tar.gz"), None)
    dataset_dir = next(run_dir.rglob("manifest.json")).parent
    latest = versions[-1] if versions else None
    deployed = latest is not None and latest.approval_status.value == "Approved"

    print("\n=== skinlesion demo ===")
    print(f"balanced accuracy (test split): {metrics['balanced_accuracy']:.4f}")
    mel = metrics.get("sensitivity_MEL")
    print(f"melanoma sensitivity (test):    {'n/a' if mel is None else f'{mel:.4f}'}")
    if "cv_balanced_accuracy" in metrics:
        print(
            f"cross-validated (held-out):     {metrics['cv_balanced_accuracy']:.4f} "
            f"[{metrics['cv_balanced_accuracy_low']:.4f}, "
            f"{metrics['cv_balanced_accuracy_high']:.4f}] (report: 'cross-validated estimate')"
        )
    if "balanced_accuracy_image_only" in metrics:
        print(
            f"without patient metadata:       {metrics['balanced_accuracy_image_only']:.4f} "
            "(image only, test split)"
        )
    for name, seconds in stage_times(run_dir).items():
        print(f"  stage {name:<12} {seconds:7.1f} s")
    print(f"report:          {report}")
    print(f"model:           {model_archive}")
    if latest is not None:
        print(f"registry entry:  {latest.arn} ({latest.approval_status.value})")
    else:
        print("registry entry:  none (the gate rejected the model)")
    status = 0
    if deployed:
        endpoint = backend.describe_endpoint("skinlesion-demo")
        try:
            images = held_out_images(dataset_dir, data_dir, args.classify)
            results = classify_over_http(
                endpoint.url, images, read_split_metadata(dataset_dir, "test")
            )
            correct = sum(
                pred == truth for (_, truth), (_, pred, _) in zip(images, results, strict=True)
            )
            print(
                f"endpoint:        {endpoint.url} (held-out images over HTTP: {correct}/{len(results)})"
            )
            for (_, truth), (image, pred, prob) in zip(images, results, strict=True):
                if math.isnan(prob):
                    print(f"  {image}: true {truth:<4} {pred}")
                else:
                    print(f"  {image}: true {truth:<4} predicted {pred:<4} p={prob:.2f}")
        finally:
            if args.keep_endpoint:
                print(
                    "the endpoint keeps running; stop it with: "
                    f"skinlesion endpoint delete skinlesion-demo --local-root {workdir / 'local'}"
                )
            else:
                backend.delete_endpoint("skinlesion-demo")
    else:
        print("endpoint:        not deployed")
        status = 1
    if not args.data:
        print(
            "note:            this model learnt generated images; its answers on real photos "
            "mean nothing (make demo DATA=<ISIC folder> trains on real data)"
        )
    print(f"total wall time: {time.monotonic() - started:.0f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
