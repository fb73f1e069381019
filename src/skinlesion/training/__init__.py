"""Training: the loop, batched augmentation, checkpoints for exact resume, the array loader.

Importing this package stays torch-free (the SageMaker backend reads ``METRIC_DEFINITIONS``
from the orchestration image, which has no torch); the torch modules are imported by name.
"""

from skinlesion.training.reporting import METRIC_DEFINITIONS, format_epoch_line

__all__ = ["METRIC_DEFINITIONS", "format_epoch_line"]
