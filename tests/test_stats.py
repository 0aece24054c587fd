"""Bootstrap statistics against plainly written loops drawing the same indices."""

import numpy as np
import pytest

from sidu_bench.stats import bootstrap_class_mean, bootstrap_mean, paired_difference


def plain_bootstrap_mean(values, seed, resamples=1000):
    rng = np.random.default_rng(seed)
    n = len(values)
    indices = rng.integers(0, n, size=(resamples, n))
    means = []
    for row in indices:
        total = 0.0
        for i in row:
            total += values[i]
        means.append(total / n)
    return np.quantile(means, 0.025), np.quantile(means, 0.975)


def test_bootstrap_mean_matches_plain_loop():
    values = np.random.default_rng(1).normal(size=40)
    estimate = bootstrap_mean(values, seed=7)
    low, high = plain_bootstrap_mean(list(values), 7)
    assert estimate.mean == pytest.approx(float(np.mean(values)), abs=1e-15)
    assert estimate.low == pytest.approx(low, abs=1e-12)
    assert estimate.high == pytest.approx(high, abs=1e-12)
    assert estimate.n == 40


def test_bootstrap_width_follows_the_standard_error():
    values = np.random.default_rng(2).normal(size=2000)
    estimate = bootstrap_mean(values, seed=0)
    expected = 2 * 1.96 * values.std(ddof=0) / np.sqrt(values.size)
    assert (estimate.high - estimate.low) == pytest.approx(expected, rel=0.1)


def test_large_inputs_draw_in_blocks_with_the_same_result():
    values = np.random.default_rng(3).random(5000)
    estimate = bootstrap_mean(values, seed=4, resamples=1000)
    low, high = plain_bootstrap_mean(values, 4)
    assert estimate.low == pytest.approx(low, abs=1e-12)
    assert estimate.high == pytest.approx(high, abs=1e-12)


def test_class_mean_is_stratified():
    values = [1, 1, 1, 1, 0, 0]
    categories = ["a", "a", "a", "a", "b", "b"]
    estimate = bootstrap_class_mean(values, categories, seed=0)
    # Per-class means 1 and 0: TorchRay's score is their mean 0.5 (the hit rate would be 0.667),
    # and every stratified resample keeps both classes exactly: the CI collapses to 0.5.
    assert estimate.mean == 0.5
    assert (estimate.low, estimate.high) == (0.5, 0.5)
    assert estimate.n == 6


def test_class_mean_has_no_ci_when_a_category_has_one_item():
    # One item per category (a small --limit run): stratified resamples never vary, so a CI of
    # zero width would claim certainty; the CI is undefined instead.
    estimate = bootstrap_class_mean([1, 0, 1, 1], ["a", "b", "c", "c"], seed=0)
    assert estimate.mean == pytest.approx((1 + 0 + 1) / 3)
    assert np.isnan(estimate.low)
    assert np.isnan(estimate.high)
    assert estimate.n == 4


def test_class_mean_matches_plain_loop():
    rng = np.random.default_rng(5)
    values = (rng.random(30) > 0.4).astype(float)
    categories = [f"c{i % 4}" for i in range(30)]
    estimate = bootstrap_class_mean(values, categories, seed=9)
    groups = {name: values[[c == name for c in categories]] for name in sorted(set(categories))}
    draws = np.random.default_rng(9)
    per_group = {name: draws.integers(0, g.size, size=(1000, g.size)) for name, g in groups.items()}
    means = []
    for r in range(1000):
        means.append(np.mean([groups[name][per_group[name][r]].mean() for name in groups]))
    assert estimate.mean == pytest.approx(np.mean([g.mean() for g in groups.values()]))
    assert estimate.low == pytest.approx(np.quantile(means, 0.025), abs=1e-12)
    assert estimate.high == pytest.approx(np.quantile(means, 0.975), abs=1e-12)


def test_paired_difference_is_the_bootstrap_of_the_differences():
    # The CI of a paired comparison is an effect size: the plain bootstrap of the per-item
    # differences (verdicts come from the sign-flip test, tests/test_stats_permutation.py).
    rng = np.random.default_rng(6)
    base = rng.random(50)
    other = base + 0.1 + 0.01 * rng.normal(size=50)
    better = paired_difference(other, base, seed=0)
    low, high = plain_bootstrap_mean(list(other - base), 0)
    assert better.mean == pytest.approx(float(np.mean(other - base)), abs=1e-15)
    assert better.mean == pytest.approx(0.1, abs=0.01)
    assert better.low == pytest.approx(low, abs=1e-12)
    assert better.high == pytest.approx(high, abs=1e-12)
    assert better.low > 0
    assert better.n == 50


def test_degenerate_and_bad_inputs():
    empty = bootstrap_mean([], seed=0)
    assert empty.n == 0
    assert np.isnan(empty.mean)
    single = bootstrap_mean([3.0], seed=0)
    assert single.mean == 3.0
    assert np.isnan(single.low)
    with pytest.raises(ValueError, match="values contains NaN"):
        bootstrap_mean([1.0, float("nan")], seed=0)
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference([1.0, 2.0], [1.0], seed=0)
    with pytest.raises(ValueError, match="categories must have one entry per value"):
        bootstrap_class_mean([1.0, 0.0], ["a"], seed=0)
