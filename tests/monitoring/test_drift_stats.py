"""The drift statistics on distributions whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from skinlesion.monitoring.drift import (
    PSI_BINS,
    bin_shares,
    chi_square_test,
    holm,
    jensen_shannon_distance,
    ks_test,
    median_bandwidth,
    mmd_permutation_test,
    psi,
    quantile_edges,
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240501)


def psi_samples(reference: np.ndarray, current: np.ndarray) -> float:
    """PSI of ``current`` against ``reference`` on the reference's quantile bins."""
    edges = quantile_edges(reference, PSI_BINS)
    return psi(bin_shares(reference, edges), bin_shares(current, edges))


def test_psi_is_zero_for_the_reference_itself_and_grows_with_the_shift(rng) -> None:
    reference = rng.normal(0, 1, 5000)
    assert psi_samples(reference, reference) == pytest.approx(0.0, abs=1e-9)
    same = psi_samples(reference, rng.normal(0, 1, 2000))
    small = psi_samples(reference, rng.normal(0.2, 1, 2000))
    large = psi_samples(reference, rng.normal(1.0, 1, 2000))
    assert same < 0.02 < small < 0.1 < 0.25 < large
    # Reference deciles: each bin holds a tenth of the reference.
    edges = quantile_edges(reference)
    assert len(edges) == 9
    assert np.allclose(bin_shares(reference, edges), 0.1, atol=0.001)


def test_psi_handles_constant_features_and_empty_bins() -> None:
    constant = np.full(100, 200.0)  # e.g. the width of every HAM10000 image
    edges = quantile_edges(constant)
    assert list(edges) == [200.0]
    assert psi(bin_shares(constant, edges), bin_shares(constant, edges)) == 0.0
    moved = psi(bin_shares(constant, edges), bin_shares(np.full(50, 100.0), edges))
    assert np.isfinite(moved) and moved > 5


def test_ks_p_values_are_calibrated_under_the_null_and_small_under_a_shift(rng) -> None:
    reference = rng.normal(0, 1, 1000)
    null = [ks_test(reference, rng.normal(0, 1, 200)).p_value for _ in range(200)]
    assert 0.0 <= np.mean(np.array(null) < 0.05) <= 0.1
    shifted = ks_test(reference, rng.normal(0.5, 1, 200))
    assert shifted.p_value < 1e-6 and shifted.statistic > 0.15


def test_holm_matches_the_step_down_by_hand() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.005])
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 -> 0.02, 0.03, 0.06, 0.04 -> monotone
    assert np.allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    assert np.allclose(holm(np.array([0.5, 0.9])), [1.0, 1.0])  # 0.9 x 1 < 0.5 x 2: monotone
    assert holm(np.array([])).size == 0


def test_mmd_detects_a_mean_shift_and_keeps_its_level_under_the_null(rng) -> None:
    reference = rng.normal(0, 1, (300, 8))
    bandwidth = median_bandwidth(reference)
    shifted = mmd_permutation_test(
        reference, rng.normal(0.4, 1, (100, 8)), bandwidth, permutations=200, seed=1
    )
    assert shifted.p_value == pytest.approx(1 / 201)  # no permutation reaches it
    rejections = sum(
        mmd_permutation_test(
            reference, rng.normal(0, 1, (100, 8)), bandwidth, permutations=99, seed=i
        ).p_value
        <= 0.1
        for i in range(30)
    )
    assert rejections <= 8  # about 3 expected at level 0.1
    again = mmd_permutation_test(reference, reference[:50], bandwidth, permutations=99, seed=3)
    assert again == mmd_permutation_test(
        reference, reference[:50], bandwidth, permutations=99, seed=3
    )


def test_mmd_refuses_mismatched_samples(rng) -> None:
    with pytest.raises(ValueError, match="one D"):
        mmd_permutation_test(rng.normal(size=(10, 3)), rng.normal(size=(10, 4)), 1.0)
    with pytest.raises(ValueError, match="bandwidth"):
        mmd_permutation_test(rng.normal(size=(10, 3)), rng.normal(size=(10, 3)), 0.0)


def test_jensen_shannon_and_chi_square_on_class_counts() -> None:
    names = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC")
    reference = np.array([110, 670, 50, 11, 110, 9, 12, 17])
    assert jensen_shannon_distance(reference, reference) == pytest.approx(0.0, abs=1e-12)
    assert jensen_shannon_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    same = chi_square_test(reference, reference // 5, names)
    assert same.p_value > 0.9
    # Rare classes are pooled: every tested category keeps an expected count of at least 5.
    assert same.categories[-1] == "other" and "DF" not in same.categories
    flipped = chi_square_test(reference, np.array([60, 60, 20, 5, 40, 5, 5, 5]), names)
    assert flipped.p_value < 1e-10 and flipped.dof >= 3
