"""Every hyperparameter default is TrainConfig's: the compiled pipeline, the train step, the demo."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from kfp import compiler

from components.train import train
from pipelines import demo
from pipelines.training import training_pipeline
from skinlesion.config import PreprocessConfig, TrainConfig

TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)} - {"extra"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("compiled") / "training.yaml"
    compiler.Compiler().compile(training_pipeline, str(path))
    return next(yaml.safe_load_all(path.read_text()))  # then the platform (kubernetes) spec


def test_the_compiled_pipeline_defaults_are_train_configs(compiled: dict[str, Any]) -> None:
    parameters = compiled["root"]["inputDefinitions"]["parameters"]
    defaults = TrainConfig()
    shared = sorted(TRAIN_FIELDS & set(parameters) - {"seed"})
    assert {"architecture", "epochs", "learning_rate", "freeze_stages", "tta"} <= set(shared)
    for name in shared:
        assert parameters[name]["defaultValue"] == getattr(defaults, name), name
    # The pipeline's seed and image_size also drive preprocessing: both configs agree.
    assert parameters["seed"]["defaultValue"] == PreprocessConfig().seed == defaults.seed
    assert parameters["image_size"]["defaultValue"] == PreprocessConfig().image_size


def test_the_train_step_types_no_default_of_its_own(compiled: dict[str, Any]) -> None:
    parameters = compiled["components"]["comp-train"]["inputDefinitions"]["parameters"]
    hyperparameters = sorted(TRAIN_FIELDS & set(parameters))
    assert len(hyperparameters) >= 10
    typed_here = [n for n in hyperparameters if "defaultValue" in parameters[n]]
    assert not typed_here, f"defaults typed in components/train.py: {typed_here}"
    # Each is fed by the pipeline parameter of the same name (the demo relies on it).
    # Inside the exit handler a pipeline parameter arrives as "pipelinechannel--<name>".
    [train_task] = [
        component["dag"]["tasks"]["train"]
        for component in compiled["components"].values()
        if "train" in component.get("dag", {}).get("tasks", {})
    ]
    for name in hyperparameters:
        source = train_task["inputs"]["parameters"][name]["componentInputParameter"]
        assert source == f"pipelinechannel--{name}"


def test_the_demo_recipes_load_with_their_values() -> None:
    sample = demo.load_recipe(demo.SAMPLE_RECIPE_FILE)
    assert sample.threshold == 0.90
    assert sample.config == TrainConfig(
        architecture="efficientnet_lite0",
        image_size=64,
        epochs=8,
        batch_size=32,
        learning_rate=0.003,
    )
    real = demo.load_recipe(demo.REAL_RECIPE_FILE)
    assert real.threshold == 0.60
    assert real.config == TrainConfig(
        architecture="efficientnet_lite0",
        image_size=160,
        epochs=11,
        batch_size=64,
        learning_rate=0.002,
        freeze_stages=4,
        balancing="logit_adjust",
        metadata=True,
        ema_decay=0.995,
    )
    assert set(demo.pipeline_train_settings()) == TRAIN_FIELDS & set(train.component_spec.inputs)


def _recipe(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # TrainConfig has no such setting.
        (
            "train: {epochs: 2, epoch_count: 3}\nthreshold: 0.5",
            r"Unknown training settings \[.epoch_count.\] in .*Accepted: architecture, pretrained, "
            r"epochs, batch_size, .*, tta, metadata, ema_decay, instance_count\.",
        ),
        # A TrainConfig setting that the pipeline cannot pass to training is refused, not dropped.
        ("train: {patience: 3}\nthreshold: 0.5", r"Unknown training settings \['patience'\]"),
        ("train: {seed: 3}\nthreshold: 0.5", r"Unknown training settings \['seed'\]"),
        ("train: {epochs: 1.5}\nthreshold: 0.5", r"Invalid epochs '1.5': expected an integer"),
        ("train: {architecture: vgg16}\nthreshold: 0.5", r"Accepted: efficientnet_lite0"),
        ("train: {epochs: 2}", r"missing keys \['threshold'\]. Accepted: train, threshold"),
        ("train: {epochs: 2}\nthreshold: 0.5\ngate: 1", r"unknown keys \['gate'\]"),
        ("train: {epochs: 2}\nthreshold: 1.5", r"Invalid threshold 1.5 .*\[0, 1\]"),
        ("- epochs", r"expected a mapping"),
    ],
)
def test_a_bad_recipe_is_refused_naming_the_file_and_what_is_accepted(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _recipe(tmp_path, text)
    with pytest.raises(demo.RecipeError, match=message) as caught:
        demo.load_recipe(path)
    assert str(path) in str(caught.value)
