"""Sign-flip test, Holm adjustment and verdict rule against plainly written references."""

import itertools
import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from sidu_bench.runner.folder import record_columns
from sidu_bench.stats import (
    EXACT_LIMIT,
    FAMILYWISE_ALPHA,
    PERMUTATION_DRAWS,
    VERDICT_BETTER,
    VERDICT_NA,
    VERDICT_NONE,
    VERDICT_TOO_SMALL,
    VERDICT_WORSE,
    holm,
    min_achievable_p,
    sign_flip_test,
    too_small,
    verdict,
)
from sidu_bench.tables.statistics import compare_pairs, compared_statistics, reference_pairs

LABELS = ["sidu", "gradcam", "scorecam", "rise", "center", "random"]


def exact_p(differences):
    """Enumerate every sign pattern of the non-zero differences in exact rational arithmetic."""
    values = [Fraction(float(d)) for d in differences]
    observed = abs(sum(values))
    nonzero = [v for v in values if v != 0]
    extreme = 0
    for signs in itertools.product((1, -1), repeat=len(nonzero)):
        if abs(sum(s * v for s, v in zip(signs, nonzero, strict=True))) >= observed:
            extreme += 1
    return extreme / 2 ** len(nonzero)


def float_p(differences):
    """The same enumeration in floats, with ties within 1e-9 of sum |d| (for n0 up to 18)."""
    observed = abs(math.fsum(differences))
    tolerance = 1e-9 * math.fsum(abs(d) for d in differences)
    nonzero = [d for d in differences if d != 0]
    extreme = 0
    for signs in itertools.product((1, -1), repeat=len(nonzero)):
        total = math.fsum(s * d for s, d in zip(signs, nonzero, strict=True))
        if abs(total) >= observed - tolerance:
            extreme += 1
    return extreme / 2 ** len(nonzero)


@pytest.mark.parametrize(
    ("differences", "expected"),
    [
        # n = 3: only +++ and --- reach |6|
        ([1.0, 2.0, 3.0], 2 / 8),
        # observed |2|: the sums are 6, 4, 2, 0, 0, -2, -4, -6, so all but the two zeros count
        ([1.0, -2.0, 3.0], 6 / 8),
        # a zero carries no sign: two flippable signs, sums 2, 0, 0, -2
        ([1.0, 1.0, 0.0], 2 / 4),
        # all differences zero: nothing to test
        ([0.0, 0.0, 0.0], 1.0),
        # n = 6, one sign pattern of six: only the observed and its mirror
        ([0.5] * 6, 2 / 64),
        # n = 6 with a zero and tied magnitudes: S = 5 - 2k over five +-1, |S| >= 3 for k in
        # {0, 1, 4, 5}: 1 + 5 + 5 + 1 = 12 of 32
        ([1.0, 1.0, 1.0, 1.0, -1.0, 0.0], 12 / 32),
        # n = 6 with two zeros: +-2 +-2 +-1 +-1 reaching |4|: 3 patterns each side, 6 of 16
        ([2.0, 2.0, -1.0, 1.0, 0.0, 0.0], 6 / 16),
        # decimal ties that binary floats split (0.1 + 0.2 != 0.3): sums of +-0.1 +-0.2 +-0.3
        # +0.7 reach 0.7 in 5 patterns (two of them ties), and their mirrors: 10 of 16
        ([0.1, 0.2, -0.3, 0.7], 10 / 16),
    ],
)
def test_hand_computed_exact_p_values(differences, expected):
    assert sign_flip_test(differences, seed=0) == expected


def test_exact_branch_matches_brute_force_on_random_inputs():
    rng = np.random.default_rng(11)
    for trial in range(40):
        n = int(rng.integers(1, 11))
        if trial % 2:
            # a grid of eighths: exact in binary, so ties and zeros are exact too
            differences = rng.integers(-4, 5, size=n) / 8.0
        else:
            differences = rng.normal(0.2, 1.0, size=n)
            differences[rng.random(n) < 0.2] = 0.0
        p = sign_flip_test(differences, seed=trial)
        assert p == exact_p(differences), differences
        nonzero = int(np.count_nonzero(differences))
        assert (p * 2**nonzero).is_integer()
        if nonzero and abs(differences.sum()) > 0:
            assert p >= min_achievable_p(nonzero)


def test_statistic_is_the_mean_so_its_sign_and_scale_do_not_matter():
    differences = np.array([0.3, -0.1, 0.25, 0.4, -0.05, 0.2, 0.0, 0.15])
    p = sign_flip_test(differences, seed=0)
    assert sign_flip_test(-differences, seed=0) == p
    assert sign_flip_test(1000.0 * differences, seed=0) == p
    assert sign_flip_test(differences[::-1], seed=0) == p


def test_monte_carlo_branch_is_within_binomial_error_of_the_exact_value():
    differences = np.random.default_rng(2).normal(0.25, 1.0, size=EXACT_LIMIT + 2)
    exact = float_p(list(differences))  # 2 ** 18 patterns
    assert 0.1 < exact < 0.5, "precondition: a p-value away from 0 and 1"
    p = sign_flip_test(differences, seed=5)
    n = PERMUTATION_DRAWS
    assert (p * (n + 1)) == pytest.approx(round(p * (n + 1)), abs=1e-6), "p = (b + 1) / (N + 1)"
    assert abs(p - exact) <= 4 * math.sqrt(exact * (1 - exact) / n) + 1 / (n + 1)
    assert sign_flip_test(differences, seed=5) == p, "seeded: reproducible"
    assert sign_flip_test(differences, seed=6) != p


def test_branch_boundary_and_the_monte_carlo_shape():
    at_limit = np.full(EXACT_LIMIT, 0.5)
    assert sign_flip_test(at_limit, seed=0) == 2 / 2**EXACT_LIMIT  # exact: beyond any MC floor
    with_zeros = np.r_[at_limit, np.zeros(4)]  # zeros are not flipped: still exact
    assert sign_flip_test(with_zeros, seed=0) == 2 / 2**EXACT_LIMIT
    beyond = np.full(EXACT_LIMIT + 1, 0.5)
    assert sign_flip_test(beyond, seed=0) == 1 / (PERMUTATION_DRAWS + 1)  # no draw as extreme
    few = sign_flip_test(np.r_[beyond, -0.2, 0.1], seed=3, draws=99)
    assert (few * 100) == pytest.approx(round(few * 100), abs=1e-9)
    assert 1 / 100 <= few <= 1


def test_sign_flip_rejects_bad_input():
    with pytest.raises(ValueError, match="differences contains NaN"):
        sign_flip_test([1.0, float("nan")], seed=0)
    with pytest.raises(ValueError, match="differences must be finite"):
        sign_flip_test([1.0, float("inf")], seed=0)
    with pytest.raises(ValueError, match="differences must be one-dimensional"):
        sign_flip_test([[1.0, 2.0]], seed=0)
    with pytest.raises(ValueError, match="draws must be at least 1"):
        sign_flip_test([1.0], seed=0, draws=0)


def test_holm_hand_worked_example():
    # sorted: 0.005, 0.01, 0.03, 0.04 -> 4 x 0.005 = 0.02, 3 x 0.01 = 0.03, 2 x 0.03 = 0.06,
    # 1 x 0.04 = 0.04 raised to 0.06 by monotonicity; back in input order:
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])  # 2 x 0.5 capped at 1
    np.testing.assert_allclose(holm([0.01, 0.01, 0.5]), [0.03, 0.03, 0.5])  # ties
    adjusted = holm([0.01, float("nan"), 0.02])  # NaN is no test: m = 2
    np.testing.assert_allclose(adjusted[[0, 2]], [0.02, 0.02])
    assert np.isnan(adjusted[1])
    assert holm([]).size == 0


def sequential_holm(p_values, alpha):
    """Holm's procedure as published: reject in ascending order while p_(k) <= alpha/(m-k+1)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = set()
    for k, index in enumerate(order):
        if p_values[index] > alpha / (len(p_values) - k):
            break
        rejected.add(index)
    return rejected


def test_holm_rejects_what_the_sequential_procedure_rejects():
    rng = np.random.default_rng(4)
    for _ in range(200):
        p_values = rng.random(int(rng.integers(1, 30))) ** 3
        adjusted = holm(p_values)
        assert (np.diff(adjusted[np.argsort(p_values, kind="stable")]) >= 0).all()
        assert (adjusted >= p_values).all()
        assert (adjusted <= 1).all()
        for alpha in (0.01, 0.05, 0.2):
            chosen = {int(i) for i in np.flatnonzero(adjusted <= alpha)}
            assert chosen == sequential_holm(list(p_values), alpha)


def test_holm_rejects_bad_input():
    with pytest.raises(ValueError, match=r"p_values must lie in \[0, 1\]"):
        holm([0.5, 1.2])
    with pytest.raises(ValueError, match="p_values must be one-dimensional"):
        holm([[0.5]])


def test_smallest_achievable_p_and_too_small_rule():
    assert min_achievable_p(1) == 1.0
    assert min_achievable_p(5) == 1 / 16
    for n0 in range(10):
        assert too_small(n0, 25), n0
    assert not too_small(10, 25)  # 25 / 512 = 0.0488
    assert not too_small(12, 75)  # 75 / 2048 = 0.037
    assert too_small(11, 75)  # 75 / 1024 = 0.073
    with pytest.raises(ValueError, match="family_size must be at least 1"):
        too_small(3, 0)


def test_verdict_rule():
    common = {"n": 40, "n_nonzero": 40, "family_size": 25}
    assert verdict(0.1, 0.01, higher_is_better=True, **common) == VERDICT_BETTER
    assert verdict(-0.1, 0.01, higher_is_better=True, **common) == VERDICT_WORSE
    assert verdict(-0.1, 0.01, higher_is_better=False, **common) == VERDICT_BETTER
    assert verdict(0.1, 0.2, higher_is_better=True, **common) == VERDICT_NONE
    assert verdict(0.1, FAMILYWISE_ALPHA, higher_is_better=True, **common) == VERDICT_BETTER
    small = {"n": 40, "n_nonzero": 9, "family_size": 25}
    assert verdict(0.1, 0.2, higher_is_better=True, **small) == VERDICT_TOO_SMALL
    nothing = {"n": 0, "n_nonzero": 0, "family_size": 25}
    assert verdict(float("nan"), float("nan"), higher_is_better=True, **nothing) == VERDICT_NA


def records_of(values):
    """Records of LABELS on len(values[label]) items, every compared metric equal to the value."""
    rows = []
    for label, per_item in values.items():
        for i, value in enumerate(per_item):
            rows.append(
                {
                    "id": f"item{i:02d}",
                    "category": f"c{i % 3}",
                    "explainer": label,
                    "center_miss": False,
                    "pointing_game_hit": bool(value > 0.5),
                    "pointing_game_valid": True,
                    "energy_pointing_game": value,
                    "region_auc": value,
                    "insertion_auc": value,
                    "deletion_auc": value,
                    "seconds": 0.1,
                    "metric_seconds": 0.1,
                }
            )
    return pd.DataFrame(rows, columns=list(record_columns()))


PER_ITEM_SCORES = ("energy_pointing_game", "region_auc", "insertion_auc", "deletion_auc")


METRICS = ("pointing_game", "energy_pointing_game", "region_auc", "insertion_deletion")
"""The metrics these records hold."""


def paired_comparisons(records, reference, labels, *, seed):
    """The family of summary.md: every explainer against the reference on every metric."""
    metrics = [statistic.name for statistic in compared_statistics(METRICS)]
    return compare_pairs(records, reference_pairs(labels, reference), metrics, seed=seed)


def noise_records(seed, n=30):
    rng = np.random.default_rng(seed)
    rows = []
    for label in LABELS:
        for i in range(n):
            rows.append(
                {
                    "id": f"item{i:02d}",
                    "category": f"c{i % 3}",
                    "explainer": label,
                    "center_miss": False,
                    "pointing_game_hit": bool(rng.random() < 0.5),
                    "pointing_game_valid": True,
                    **{column: rng.random() for column in PER_ITEM_SCORES},
                    "seconds": 0.1,
                    "metric_seconds": 0.1,
                }
            )
    return pd.DataFrame(rows, columns=list(record_columns()))


def test_pure_noise_gives_no_holm_verdict():
    comparisons = paired_comparisons(noise_records(1), "sidu", LABELS, seed=0)
    assert len(comparisons) == 25
    assert (comparisons["p"] < 0.05).any(), "precondition: a raw p below 0.05 from noise alone"
    assert not comparisons["verdict"].isin([VERDICT_BETTER, VERDICT_WORSE]).any()
    assert set(comparisons["verdict"]) <= {VERDICT_NONE, VERDICT_TOO_SMALL}
    np.testing.assert_allclose(comparisons["p_holm"], holm(comparisons["p"]))


def shifted(n):
    """Every explainer = SIDU + 0.6 on each of n items: n non-zero differences, one sign."""
    base = np.linspace(0.0, 0.3, n)
    return records_of({label: base + (0.0 if label == "sidu" else 0.6) for label in LABELS})


def test_nine_nonzero_differences_in_a_family_of_25_are_too_small():
    comparisons = paired_comparisons(shifted(9), "sidu", LABELS, seed=0)
    assert len(comparisons) == 25
    assert (comparisons["n_nonzero"] == 9).all()
    assert (comparisons["p"] == 2**-8).all(), "each raw p alone would pass 0.05"
    assert (comparisons["verdict"] == VERDICT_TOO_SMALL).all()


def test_ten_nonzero_differences_in_a_family_of_25_can_pass():
    comparisons = paired_comparisons(shifted(10), "sidu", LABELS, seed=0).set_index("metric")
    np.testing.assert_allclose(comparisons["p_holm"], 25 * 2**-9)
    assert (comparisons.drop(index="deletion_auc")["verdict"] == VERDICT_BETTER).all()
    assert (comparisons.loc["deletion_auc", "verdict"] == VERDICT_WORSE).all()  # lower is better
    np.testing.assert_allclose(comparisons.loc["insertion_auc", "diff"], 0.6)
    np.testing.assert_allclose(comparisons.loc["insertion_auc", "diff_ci_low"], 0.6)
    np.testing.assert_allclose(comparisons.loc["pointing_game_hit_rate", "diff"], 1.0)


def test_explainer_equal_to_the_reference_has_p_one_and_unscored_metric_is_na():
    values = {label: np.linspace(0.1, 0.9, 12) for label in LABELS[:2]}
    records = records_of(values)
    records["region_auc"] = np.nan
    comparisons = paired_comparisons(records, "sidu", LABELS[:2], seed=0).set_index("metric")
    assert comparisons.loc["region_auc", "verdict"] == VERDICT_NA
    assert comparisons.loc["region_auc", "n"] == 0
    assert np.isnan(comparisons.loc["region_auc", "p"])
    tested = comparisons.drop(index="region_auc")
    assert (tested["p"] == 1.0).all()
    assert (tested["n_nonzero"] == 0).all()
    assert (tested["verdict"] == VERDICT_TOO_SMALL).all()  # m = 4 tested comparisons, n0 = 0
