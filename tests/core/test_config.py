"""TrainConfig and PreprocessConfig: validation at the edge, SageMaker's string round trip."""

from __future__ import annotations

import pytest

from skinlesion.config import ConfigError, PreprocessConfig, TrainConfig


def test_hyperparameters_are_strings_and_round_trip() -> None:
    config = TrainConfig(
        architecture="mobilenet_v2", epochs=3, learning_rate=0.01, deterministic=True
    )
    hyperparameters = config.to_hyperparameters()
    assert all(isinstance(v, str) for v in hyperparameters.values())
    assert hyperparameters["epochs"] == "3"
    assert hyperparameters["deterministic"] == "true"
    assert TrainConfig.from_hyperparameters(hyperparameters) == config


def test_unknown_hyperparameters_are_kept_not_dropped() -> None:
    parsed = TrainConfig.from_hyperparameters({"epochs": "2", "sagemaker_program": "train.py"})
    assert parsed.epochs == 2
    assert parsed.extra == {"sagemaker_program": "train.py"}
    assert parsed.to_hyperparameters()["sagemaker_program"] == "train.py"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"architecture": "vgg16"}, "Accepted: efficientnet_lite0"),
        ({"epochs": "two"}, "expected a int"),
        ({"epochs": "1.5"}, "expected an integer"),
        ({"deterministic": "maybe"}, "expected a bool"),
        ({"learning_rate": "0"}, "must be > 0"),
        ({"balancing": "oversample"}, "Accepted: weighted_loss, logit_adjust, sampler, none"),
    ],
)
def test_bad_hyperparameters_name_what_is_accepted(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_hyperparameters(values)


def test_preprocess_fractions_are_bounded() -> None:
    with pytest.raises(ConfigError, match=r"between 0 and 0\.5"):
        PreprocessConfig(val_fraction=0.6)
    with pytest.raises(ConfigError, match=r"in \[0, 1\]"):
        PreprocessConfig(max_invalid_fraction=1.5)


def test_typed_values_are_validated_and_unknown_names_refused() -> None:
    config = TrainConfig.from_mapping({"epochs": 3, "learning_rate": 0.01, "augment": False})
    assert (config.epochs, config.learning_rate, config.augment) == (3, 0.01, False)
    with pytest.raises(ConfigError, match=r"Unknown training settings \['sagemaker_program'\]"):
        TrainConfig.from_mapping({"sagemaker_program": "train.py"})  # kept by the string form
    with pytest.raises(ConfigError, match=r"\['patience'\] in recipe.yaml. Accepted: epochs\."):
        TrainConfig.from_mapping({"patience": 2}, accepted=("epochs",), source="recipe.yaml")
    with pytest.raises(ConfigError, match=r"Invalid epochs '2.5': expected an integer"):
        TrainConfig.from_mapping({"epochs": 2.5})


def test_device_and_early_stopping_smoothing_round_trip() -> None:
    config = TrainConfig(device="cuda", early_stopping_smoothing=0.0)
    assert TrainConfig.from_hyperparameters(config.to_hyperparameters()) == config
    with pytest.raises(ConfigError, match=r"Invalid device 'tpu'. Accepted: auto, cpu, cuda\."):
        TrainConfig(device="tpu")
