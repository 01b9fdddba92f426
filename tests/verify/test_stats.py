"""The statistics on counts: exact p-values, intervals with their coverage, Holm's correction on null data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dexter.verify.stats import Comparison, fisher_greater, holm, newcombe_interval, wilson_interval


def test_fisher_greater_is_the_hypergeometric_tail():
    for k1, n1, k2, n2 in [(15, 64, 0, 64), (3, 10, 1, 12), (0, 5, 4, 5), (7, 7, 0, 3), (20, 40, 20, 40)]:
        hits, total = k1 + k2, n1 + n2
        direct = sum(math.comb(hits, x) * math.comb(total - hits, n1 - x) for x in range(k1, min(n1, hits) + 1))
        assert fisher_greater(k1, n1, k2, n2) == pytest.approx(direct / math.comb(total, n1), rel=1e-9)


def test_fisher_greater_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(50):
        n1, n2 = rng.integers(1, 80, size=2)
        k1, k2 = rng.integers(0, n1 + 1), rng.integers(0, n2 + 1)
        expected = stats.fisher_exact([[k1, n1 - k1], [k2, n2 - k2]], alternative="greater")[1]
        assert fisher_greater(int(k1), int(n1), int(k2), int(n2)) == pytest.approx(expected, rel=1e-7, abs=1e-12)


def test_wilson_interval_solves_the_score_equation():
    # the Wilson bounds are the p where |phat - p| = z * sqrt(p (1 - p) / n)
    z = 1.959963984540054
    for k, n in [(0, 10), (3, 10), (10, 10), (81, 263)]:
        low, high = wilson_interval(k, n)
        for p in (low, high):
            if 0 < p < 1:
                assert abs(k / n - p) == pytest.approx(z * math.sqrt(p * (1 - p) / n), abs=1e-9)
    assert wilson_interval(0, 10)[0] == 0 and wilson_interval(10, 10)[1] == 1


def test_newcombe_interval_covers_the_true_difference():
    rng = np.random.default_rng(1)
    for p1, p2, n in [(0.1, 0.1, 64), (0.6, 0.2, 32), (0.02, 0.0, 128)]:
        k1, k2 = rng.binomial(n, p1, size=2000), rng.binomial(n, p2, size=2000)
        covered = [lo <= p1 - p2 <= hi for lo, hi in (newcombe_interval(int(a), n, int(b), n) for a, b in zip(k1, k2))]
        assert 0.93 <= np.mean(covered), (p1, p2, n, np.mean(covered))  # at least nominal, minus simulation noise
    low, high = newcombe_interval(64, 64, 0, 64)
    assert -1 <= low < 1 and high == 1  # stays inside [-1, 1] at the boundary, unlike a Wald interval


def test_holm_adjustment():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_holm_holds_the_familywise_error_on_null_data():
    """Many classes, each with 8 null tests (no attribute changes the rate): how often is ANY test significant?"""
    rng = np.random.default_rng(2)
    alpha, families, m, n = 0.05, 1500, 8, 64
    any_raw = any_holm = 0
    per_test = []
    for _ in range(families):
        rate = rng.uniform(0.05, 0.6)
        p = [fisher_greater(int(rng.binomial(n, rate)), n, int(rng.binomial(2 * n, rate)), 2 * n) for _ in range(m)]
        per_test += [x < alpha for x in p]
        any_raw += min(p) < alpha
        any_holm += min(holm(p)) < alpha
    se = math.sqrt(alpha * (1 - alpha) / families)
    assert np.mean(per_test) <= alpha + 3 * math.sqrt(alpha / len(per_test))  # each test is exact (conservative)
    assert any_holm / families <= alpha + 3 * se  # the correction holds the nominal level ...
    assert any_holm / families >= 0.005  # ... without being vacuous
    assert any_raw / families > 2 * alpha  # uncorrected, some false claim is common: the correction is needed


def test_comparison_and_bad_counts():
    c = Comparison(15, 64, 0, 64)
    assert c.effect == pytest.approx(15 / 64) and c.p_value() < 1e-4
    low, high = c.interval()
    assert low < c.effect < high
    for bad in [(5, 4, 0, 4), (-1, 4, 0, 4)]:
        with pytest.raises(ValueError, match="hits"):
            Comparison(*bad)
    with pytest.raises(ValueError, match="both sides"):
        Comparison(0, 0, 1, 4)
