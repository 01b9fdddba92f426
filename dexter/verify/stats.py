"""Statistics of the counterfactual test: pure functions on counts, no numpy, no model.

A counterfactual comparison is two proportions: of ``n_with`` images generated WITH an attribute,
``hits_with`` were assigned to the class; of ``n_without`` images of the same content generated with the
attribute's alternatives, ``hits_without`` were. The effect is the difference of the two rates.

- p-value: Fisher's exact test, one-sided (the attribute RAISES the class's rate), from the hypergeometric
  tail summed in log space. Exact for any sample size, so a handful of lucky images never looks significant.
- interval: Newcombe's hybrid score interval for a difference of proportions (built from two Wilson
  intervals); unlike the Wald interval it stays inside [-1, 1] and keeps its coverage at rates near 0 or 1,
  which is where a classifier's hit rates usually are.
- multiple testing: Holm's step-down adjustment over all tests of one class, which controls the
  family-wise error rate (the chance of ANY false claim for the class) at ``alpha`` under any dependence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist


def _check_counts(k: int, n: int) -> None:
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= hits <= n, got hits={k}, n={n}")


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k/n (the whole [0, 1] when n = 0)."""
    _check_counts(k, n)
    if n == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if k == 0 else max(0.0, centre - half)  # exact bounds at the edges (no rounding residue)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def newcombe_interval(k1: int, n1: int, k2: int, n2: int, confidence: float = 0.95) -> tuple[float, float]:
    """Newcombe's hybrid score interval (his method 10) for p1 - p2 from two independent samples."""
    l1, u1 = wilson_interval(k1, n1, confidence)
    l2, u2 = wilson_interval(k2, n2, confidence)
    p1 = k1 / n1 if n1 else 0.0
    p2 = k2 / n2 if n2 else 0.0
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return max(-1.0, low), min(1.0, high)


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def fisher_greater(k1: int, n1: int, k2: int, n2: int) -> float:
    """One-sided Fisher exact p-value that group 1's rate exceeds group 2's: P(X >= k1) under the null.

    X is group 1's hit count given both margins (hypergeometric). Equals
    ``scipy.stats.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]], alternative="greater")``.
    """
    _check_counts(k1, n1)
    _check_counts(k2, n2)
    total, hits = n1 + n2, k1 + k2
    low, high = max(0, hits - n2), min(n1, hits)
    if k1 <= low:
        return 1.0
    logs = [_log_comb(hits, x) + _log_comb(total - hits, n1 - x) - _log_comb(total, n1) for x in range(k1, high + 1)]
    top = max(logs)
    return min(1.0, math.exp(top) * sum(math.exp(v - top) for v in logs))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (same order as given): reject H_i at level alpha iff adjusted_i < alpha."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class Comparison:
    """Class-hit counts with and without an attribute, and what the test says about them."""

    hits_with: int
    n_with: int
    hits_without: int
    n_without: int

    def __post_init__(self) -> None:
        _check_counts(self.hits_with, self.n_with)
        _check_counts(self.hits_without, self.n_without)
        if not self.n_with or not self.n_without:
            raise ValueError("a comparison needs images on both sides")

    @property
    def rate_with(self) -> float:
        return self.hits_with / self.n_with

    @property
    def rate_without(self) -> float:
        return self.hits_without / self.n_without

    @property
    def effect(self) -> float:
        """How much the attribute raises the class's rate (negative: it lowers it)."""
        return self.rate_with - self.rate_without

    def p_value(self) -> float:
        return fisher_greater(self.hits_with, self.n_with, self.hits_without, self.n_without)

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        return newcombe_interval(self.hits_with, self.n_with, self.hits_without, self.n_without, confidence)


__all__ = ["Comparison", "fisher_greater", "holm", "newcombe_interval", "wilson_interval"]
