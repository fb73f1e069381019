"""Two-sample drift statistics: PSI, Kolmogorov-Smirnov, MMD with a permutation test,
chi-square and Jensen-Shannon on class counts, and Holm's correction for many features.

Each test compares a reference sample (the baseline) with a window of production data. The
p-values are valid when the window is exchangeable with the reference; PSI, the MMD value and
the Jensen-Shannon distance are effect sizes, reported next to them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

PSI_BINS = 10
PSI_FLOOR = 1e-4  # an empty bin counts as this share: PSI stays finite


# --- PSI ---------------------------------------------------------------------------------------


def quantile_edges(reference: np.ndarray, bins: int = PSI_BINS) -> np.ndarray:
    """Inner bin edges at the reference's quantiles (duplicates dropped: ties make fewer bins)."""
    if bins < 2:
        raise ValueError(f"Invalid bins {bins}: PSI needs at least 2.")
    values = np.asarray(reference, dtype=np.float64)
    if values.size == 0:
        raise ValueError("The reference sample is empty: no bins can be made.")
    return np.unique(np.quantile(values, np.arange(1, bins) / bins))


def bin_shares(values: np.ndarray, inner_edges: np.ndarray) -> np.ndarray:
    """Share of ``values`` in each bin that ``inner_edges`` makes (len(edges) + 1 bins)."""
    values = np.asarray(values, dtype=np.float64)
    counts = np.bincount(
        np.searchsorted(inner_edges, values, side="right"), minlength=len(inner_edges) + 1
    )
    return counts / max(len(values), 1)


def psi(expected: np.ndarray, actual: np.ndarray, floor: float = PSI_FLOOR) -> float:
    """Population stability index of two binned distributions (shares summing to 1).

    sum((a - e) * ln(a / e)); rule of thumb: < 0.1 stable, 0.1-0.25 moderate, > 0.25 major.
    """
    e = np.clip(np.asarray(expected, dtype=np.float64), floor, None)
    a = np.clip(np.asarray(actual, dtype=np.float64), floor, None)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


# --- KS ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TestResult:
    """A statistic and its p-value."""

    statistic: float
    p_value: float


def ks_test(reference: np.ndarray, current: np.ndarray) -> TestResult:
    """Two-sample Kolmogorov-Smirnov test (exact for small samples, asymptotic otherwise)."""
    reference = np.asarray(reference, dtype=np.float64)
    current = np.asarray(current, dtype=np.float64)
    if reference.size == 0 or current.size == 0:
        raise ValueError("KS needs two non-empty samples.")
    result = stats.ks_2samp(reference, current, alternative="two-sided", method="auto")
    return TestResult(float(result.statistic), float(result.pvalue))


# --- multiple testing -------------------------------------------------------------------------


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values: reject those below alpha keeps the family-wise error
    rate at alpha for any dependence between the tests."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    adjusted_sorted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty(m, dtype=np.float64)
    adjusted[order] = np.minimum(adjusted_sorted, 1.0)
    return adjusted


# --- MMD -------------------------------------------------------------------------------------


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aa = np.einsum("ij,ij->i", a, a)[:, None]
    bb = np.einsum("ij,ij->i", b, b)[None, :]
    return np.maximum(aa + bb - 2.0 * a @ b.T, 0.0)


def median_bandwidth(sample: np.ndarray, max_points: int = 1000, seed: int = 0) -> float:
    """The median pairwise distance of ``sample`` (the usual Gaussian-kernel bandwidth)."""
    x = np.asarray(sample, dtype=np.float64)
    if len(x) < 2:
        raise ValueError("The bandwidth needs at least two points.")
    if len(x) > max_points:
        x = x[np.random.default_rng(seed).choice(len(x), max_points, replace=False)]
    distances = _squared_distances(x, x)[np.triu_indices(len(x), k=1)]
    median = float(np.sqrt(np.median(distances)))
    return median if median > 0 else 1.0


def mmd_permutation_test(
    reference: np.ndarray,
    current: np.ndarray,
    bandwidth: float,
    *,
    permutations: int = 500,
    seed: int = 0,
) -> TestResult:
    """Squared MMD (biased estimate, Gaussian kernel) and its permutation p-value.

    The p-value is (1 + #{permuted >= observed}) / (1 + permutations): exact for exchangeable
    samples whatever the kernel, so the bandwidth may be fixed from the reference alone.
    """
    x = np.asarray(reference, dtype=np.float64)
    y = np.asarray(current, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"MMD needs two (N, D) samples of one D; got {x.shape} and {y.shape}.")
    if len(x) < 2 or len(y) < 2:
        raise ValueError("MMD needs at least two points in each sample.")
    if bandwidth <= 0:
        raise ValueError(f"Invalid bandwidth {bandwidth}: must be > 0.")
    if permutations < 1:
        raise ValueError(f"Invalid permutations {permutations}: must be >= 1.")
    z = np.concatenate([x, y])
    kernel = np.exp(-_squared_distances(z, z) / (2.0 * bandwidth**2))
    n, m = len(x), len(y)
    base = np.concatenate([np.full(n, 1.0 / n), np.full(m, -1.0 / m)])
    observed = float(base @ kernel @ base)
    rng = np.random.default_rng(seed)
    exceed = 0
    done = 0
    while done < permutations:
        batch = min(100, permutations - done)
        weights = np.stack([base[rng.permutation(n + m)] for _ in range(batch)])
        values = np.einsum("pi,pi->p", weights @ kernel, weights)
        exceed += int(np.sum(values >= observed - 1e-12))
        done += batch
    return TestResult(observed, (1 + exceed) / (1 + permutations))


# --- categorical -------------------------------------------------------------------------------


def jensen_shannon_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2: 0 identical, 1 disjoint) of two count or share vectors."""
    a = np.asarray(p, dtype=np.float64)
    b = np.asarray(q, dtype=np.float64)
    if a.sum() <= 0 or b.sum() <= 0:
        raise ValueError("Jensen-Shannon needs two non-empty distributions.")
    a, b = a / a.sum(), b / b.sum()
    mid = 0.5 * (a + b)

    def kl(u: np.ndarray, v: np.ndarray) -> float:
        mask = u > 0
        return float(np.sum(u[mask] * np.log2(u[mask] / v[mask])))

    return math.sqrt(max(0.5 * kl(a, mid) + 0.5 * kl(b, mid), 0.0))


@dataclass(frozen=True)
class ChiSquareResult:
    """A chi-square test of homogeneity of two count vectors, after merging sparse categories."""

    statistic: float
    p_value: float
    dof: int
    categories: tuple[str, ...]  # the categories tested ("other" holds the merged ones)


def chi_square_test(
    reference: np.ndarray,
    current: np.ndarray,
    names: tuple[str, ...],
    min_expected: float = 5.0,
) -> ChiSquareResult:
    """Are ``current`` counts drawn from the same distribution as ``reference`` counts?

    A 2 x K contingency test (the reference is a sample too, not the truth). Categories whose
    expected count in the smaller sample is below ``min_expected`` are pooled into "other",
    which keeps the chi-square approximation honest for rare classes.
    """
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if ref.shape != cur.shape or ref.shape != (len(names),):
        raise ValueError(f"Counts {ref.shape} and {cur.shape} do not match {len(names)} names.")
    if ref.sum() <= 0 or cur.sum() <= 0:
        raise ValueError("Chi-square needs two non-empty count vectors.")
    total = ref + cur
    smaller = min(ref.sum(), cur.sum())
    expected = total / total.sum() * smaller
    keep = expected >= min_expected
    labels = [n for n, k in zip(names, keep, strict=True) if k]
    ref_cols = list(ref[keep])
    cur_cols = list(cur[keep])
    if (~keep).any():
        ref_cols.append(float(ref[~keep].sum()))
        cur_cols.append(float(cur[~keep].sum()))
        labels.append("other")
    table = np.array([ref_cols, cur_cols])
    present = table.sum(axis=0) > 0
    table = table[:, present]
    labels = [name for name, used in zip(labels, present, strict=True) if used]
    if table.shape[1] < 2:
        return ChiSquareResult(0.0, 1.0, 0, tuple(labels))
    result = stats.chi2_contingency(table, correction=False)
    return ChiSquareResult(
        float(result.statistic), float(result.pvalue), int(result.dof), tuple(labels)
    )
