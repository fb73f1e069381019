"""The deterministic cross-entropy computes exactly what nn.CrossEntropyLoss computes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from skinlesion.training.loop import CrossEntropy


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_matches_torch_cross_entropy(weighted: bool, smoothing: float) -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(12, 8, generator=generator, requires_grad=True)
    targets = torch.randint(0, 8, (12,), generator=generator)
    weight = torch.rand(8, generator=generator) + 0.2 if weighted else None
    ours = CrossEntropy(weight, smoothing)(logits, targets)
    reference = nn.CrossEntropyLoss(weight=weight, label_smoothing=smoothing)(logits, targets)
    torch.testing.assert_close(ours, reference)
    (grad_ours,) = torch.autograd.grad(ours, logits)
    (grad_reference,) = torch.autograd.grad(reference, logits)
    torch.testing.assert_close(grad_ours, grad_reference)
    summed = CrossEntropy(weight, smoothing)(logits, targets, reduction="sum")
    reference_sum = nn.CrossEntropyLoss(weight=weight, label_smoothing=smoothing, reduction="sum")
    torch.testing.assert_close(summed, reference_sum(logits, targets))


def test_logit_adjustment_is_cross_entropy_of_the_offset_logits() -> None:
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(16, 8, generator=generator)
    targets = torch.randint(0, 8, (16,), generator=generator)
    offset = torch.log(torch.softmax(torch.randn(8, generator=generator), dim=0))
    ours = CrossEntropy(logit_offset=offset)(logits, targets)
    torch.testing.assert_close(ours, nn.CrossEntropyLoss()(logits + offset, targets))
    assert not torch.allclose(ours, nn.CrossEntropyLoss()(logits, targets))


def test_log_prior_is_finite_for_an_absent_class() -> None:
    import numpy as np

    from skinlesion.training.loop import log_prior

    prior = log_prior(np.array([0, 0, 0, 1]), 3)
    assert np.isfinite(prior).all() and prior[0] > prior[1] > prior[2]
    np.testing.assert_allclose(np.exp(prior).sum(), 1.0, rtol=1e-6)
