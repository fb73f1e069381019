"""Skin lesion classification pipeline: ISIC 2019 data to a monitored SageMaker endpoint."""

__version__ = "0.1.0"
