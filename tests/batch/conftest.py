"""Fixtures of the batch tests: the evaluation tests' tiny fitted model (EfficientNet-Lite0 with
a ridge-fitted head on the shared preprocessed sample)."""

from tests.evaluation.conftest import fitted_model_dir  # noqa: F401
