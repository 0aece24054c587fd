"""Bootstrap statistics against plainly written loops drawing the same indices."""

import numpy as np
import pytest

from sidu_bench.stats import bootstrap_mean, paired_difference, stratified_interval


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


def test_class_interval_is_stratified():
    # Per-class means 1 and 0: every stratified resample keeps both classes exactly (the hit
    # rate's resamples would vary), so the CI of the per-class mean collapses to 0.5.
    assert stratified_interval([[1, 1, 1, 1], [0, 0]], seed=0) == (0.5, 0.5)


def test_class_interval_is_undefined_when_a_category_has_one_item():
    # One item per category (a small --limit run): stratified resamples never vary, so a CI of
    # zero width would claim certainty; the CI is undefined instead.
    low, high = stratified_interval([[1.0], [0.0], [1.0, 1.0]], seed=0)
    assert np.isnan(low)
    assert np.isnan(high)
    assert all(np.isnan(stratified_interval([], seed=0)))


def test_class_interval_matches_plain_loop():
    rng = np.random.default_rng(5)
    values = (rng.random(30) > 0.4).astype(float)
    groups = [values[i::4] for i in range(4)]
    low, high = stratified_interval(groups, seed=9)
    draws = np.random.default_rng(9)
    indices = [draws.integers(0, g.size, size=(1000, g.size)) for g in groups]
    means = []
    for r in range(1000):
        per_group = []
        for group, index in zip(groups, indices, strict=True):
            total = 0.0
            for i in index[r]:
                total += group[i]
            per_group.append(total / group.size)
        means.append(sum(per_group) / len(per_group))
    assert low == pytest.approx(np.quantile(means, 0.025), abs=1e-12)
    assert high == pytest.approx(np.quantile(means, 0.975), abs=1e-12)
    assert low < high


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
    with pytest.raises(ValueError, match="each group contains NaN"):
        stratified_interval([[1.0, float("nan")], [0.0, 1.0]], seed=0)
