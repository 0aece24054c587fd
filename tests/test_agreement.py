"""Agreement between metrics and split-half reliability, each against a plainly written reference.

The references below are float64 loops: ranks by counting, tie groups by counting, means by
summing, Pearson by hand.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from sidu_bench.tables.agreement import (
    RATERS,
    agreement_markdown,
    agreement_table,
    concordance_test,
    kendalls_w,
    most_discordant,
    reference_share,
    spearman_matrix,
    split_half_reliability,
)

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------
# Plain references


def loop_ranks(row):
    """Average ranks by counting: 1 + #smaller + (#equal - 1) / 2."""
    ranks = []
    for x in row:
        smaller = sum(1 for y in row if y < x)
        equal = sum(1 for y in row if y == x)
        ranks.append(1.0 + smaller + (equal - 1) / 2.0)
    return ranks


def loop_w(table):
    m, n = len(table), len(table[0])
    ranks = [loop_ranks(row) for row in table]
    sums = [sum(ranks[j][i] for j in range(m)) for i in range(n)]
    mean = m * (n + 1) / 2.0
    s = sum((r - mean) ** 2 for r in sums)
    ties = 0.0
    for row in table:
        seen = []
        for x in row:
            if x not in seen:
                seen.append(x)
                t = sum(1 for y in row if y == x)
                ties += t**3 - t
    denominator = m * m * (n**3 - n) - m * ties
    return float("nan") if denominator == 0 else 12.0 * s / denominator


def loop_pearson(a, b):
    n = len(a)
    ma, mb = sum(a) / n, sum(b) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True))
    va = sum((x - ma) ** 2 for x in a)
    vb = sum((y - mb) ** 2 for y in b)
    return float("nan") if va == 0 or vb == 0 else cov / math.sqrt(va * vb)


def loop_split_half(values, splits, seed):
    """The documented procedure, one split at a time."""
    rng = np.random.default_rng(seed)
    n, k = values.shape
    half = n // 2
    rhos, tied = [], 0
    for _ in range(splits):
        order = np.argsort(rng.random(n), kind="stable")
        first = [sum(float(values[i, e]) for i in order[:half]) / half for e in range(k)]
        second = [sum(float(values[i, e]) for i in order[half:]) / (n - half) for e in range(k)]
        if len(set(first)) == 1 or len(set(second)) == 1:
            tied += 1
            continue
        rhos.append(loop_pearson(loop_ranks(first), loop_ranks(second)))
    return rhos, tied


def exact_p(table):
    """P(W_perm >= W_obs) over all relative permutations of raters 2..m (rater 1 held fixed)."""
    observed = loop_w(table)
    n = len(table[0])
    permutations = list(itertools.permutations(range(n)))
    reached = total = 0
    for chosen in itertools.product(permutations, repeat=len(table) - 1):
        shuffled = [table[0]] + [
            [row[i] for i in order] for row, order in zip(table[1:], chosen, strict=True)
        ]
        total += 1
        reached += loop_w(shuffled) >= observed - 1e-12
    return reached / total


# ---------------------------------------------------------------------------------------------
# Kendall's W


def test_kendalls_w_matches_the_loop_on_tied_integer_tables():
    rng = np.random.default_rng(1)
    checked = 0
    for _ in range(300):
        m, n = int(rng.integers(2, 7)), int(rng.integers(2, 8))
        table = rng.integers(0, 3, size=(m, n)).astype(float)
        expected = loop_w(table.tolist())
        if math.isnan(expected):
            assert math.isnan(kendalls_w(table))
            continue
        assert kendalls_w(table) == pytest.approx(expected, abs=1e-12)
        checked += 1
    assert checked > 250


def test_kendalls_w_by_hand():
    assert kendalls_w(np.array([[1, 2, 3, 4]] * 3)) == pytest.approx(1.0)
    # Two raters in opposite order: every rank sum is n + 1, S = 0.
    assert kendalls_w(np.array([[1, 2, 3], [3, 2, 1]])) == pytest.approx(0.0)
    # 3 raters x 4 objects, one tie:
    #   rater 1 scores 1, 2, 3, 4 -> ranks 1, 2, 3, 4
    #   rater 2 scores 1, 3, 3, 4 -> ranks 1, 2.5, 2.5, 4  (one tie group of 2: T = 8 - 2 = 6)
    #   rater 3 scores 2, 1, 4, 3 -> ranks 2, 1, 4, 3
    # rank sums 4, 5.5, 9.5, 11; mean 7.5; S = 12.25 + 4 + 4 + 12.25 = 32.5
    # W = 12 * 32.5 / (9 * 60 - 3 * 6) = 390 / 522 = 65 / 87
    scores = np.array([[1, 2, 3, 4], [1, 3, 3, 4], [2, 1, 4, 3]])
    assert kendalls_w(scores) == pytest.approx(65 / 87, abs=1e-12)
    # every rater ties every object: undefined
    assert math.isnan(kendalls_w(np.ones((3, 4))))


@pytest.mark.parametrize(
    "scores",
    [np.ones((1, 4)), np.ones((3, 1)), np.ones(4), np.array([[1.0, np.nan], [1.0, 2.0]])],
)
def test_bad_scores_are_refused(scores):
    for function in (kendalls_w, spearman_matrix):
        with pytest.raises(ValueError, match="scores"):
            function(scores)
    with pytest.raises(ValueError, match="scores"):
        concordance_test(scores, seed=0)


# ---------------------------------------------------------------------------------------------
# Permutation p


@pytest.mark.parametrize(
    "table",
    [
        [[1, 2, 3], [1, 2, 3], [1, 2, 3]],
        [[1, 2, 3], [1, 3, 2], [2, 2, 1]],
        [[3, 1, 2], [2, 1, 3], [3, 2, 1]],
    ],
)
def test_permutation_p_matches_exact_enumeration(table):
    w, p = concordance_test(np.array(table, dtype=float), draws=10_000, seed=5)
    assert w == pytest.approx(loop_w(table))
    assert p == pytest.approx(exact_p(table), abs=0.01)


def test_perfect_agreement_of_five_objects_is_significant_and_seeded():
    scores = np.array([[1, 2, 3, 4, 5]] * 3, dtype=float)
    w, p = concordance_test(scores, draws=10_000, seed=3)
    assert w == pytest.approx(1.0)
    # exact p is 1 / 120**2 ~ 7e-5: the Monte Carlo p sits at its floor 1 / (1 + draws)
    assert 1 / 10_001 <= p < 0.001
    assert concordance_test(scores, draws=10_000, seed=3) == (w, p)
    w, p = concordance_test(np.ones((3, 4)), seed=0)  # every object tied: no test
    assert math.isnan(w)
    assert math.isnan(p)


def test_draws_must_be_positive():
    with pytest.raises(ValueError, match="draws"):
        concordance_test(np.eye(3), draws=0, seed=0)


# ---------------------------------------------------------------------------------------------
# Spearman matrix


def test_spearman_matrix_matches_scipy():
    rng = np.random.default_rng(2)
    for m in (2, 3, 5):
        scores = rng.integers(0, 4, size=(m, 7)).astype(float)
        scores[:, 0] = 10.0 + np.arange(m)  # no rater ties every object
        expected = spearmanr(scores.T).statistic
        expected = np.array([[1.0, expected], [expected, 1.0]]) if m == 2 else expected
        np.testing.assert_allclose(spearman_matrix(scores), expected, atol=1e-12)


def test_spearman_matrix_is_nan_for_a_fully_tied_rater():
    matrix = spearman_matrix(np.array([[1.0, 2.0, 3.0], [2.0, 2.0, 2.0], [3.0, 1.0, 2.0]]))
    assert np.isnan(matrix[1]).all()
    assert np.isnan(matrix[:, 1]).all()
    assert matrix[0, 2] == pytest.approx(-0.5)


# ---------------------------------------------------------------------------------------------
# Split-half reliability


@pytest.mark.parametrize(("n", "k", "seed"), [(9, 4, 0), (12, 6, 7), (5, 3, 11)])
def test_split_half_matches_the_loop(n, k, seed):
    values = np.random.default_rng(seed + 100).normal(size=(n, k)) + np.arange(k)
    result = split_half_reliability(values, splits=300, seed=seed)
    rhos, tied = loop_split_half(values, 300, seed)
    assert (result.used, result.tied, result.n_items) == (len(rhos), tied, n)
    mean = sum(rhos) / len(rhos)
    assert result.rho == pytest.approx(mean, abs=1e-12)
    assert result.spearman_brown == pytest.approx(2 * mean / (1 + mean), abs=1e-12)
    assert result.low == pytest.approx(np.percentile(rhos, 2.5), abs=1e-12)
    assert result.high == pytest.approx(np.percentile(rhos, 97.5), abs=1e-12)


def test_split_half_counts_tied_splits():
    # Two explainers, one hit each on different items: a split with items 0 and 1 in the same
    # half ties both halves (0.5/0.5 and 0/0); otherwise rho = -1. P(tie) = 1/3.
    values = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    result = split_half_reliability(values, splits=1000, seed=4)
    rhos, tied = loop_split_half(values, 1000, 4)
    assert (result.tied, result.used) == (tied, len(rhos))
    assert 250 < result.tied < 420
    assert result.rho == pytest.approx(-1.0)
    assert math.isnan(result.spearman_brown)
    # binary hits with more explainers: tie counts agree with the loop exactly
    hits = np.random.default_rng(9).integers(0, 2, size=(7, 3)).astype(float)
    result = split_half_reliability(hits, splits=500, seed=1)
    assert result.tied == loop_split_half(hits, 500, 1)[1]


def test_split_half_with_every_split_tied_is_nan():
    result = split_half_reliability(np.ones((6, 3)), splits=50, seed=0)
    assert (result.used, result.tied, result.n_items) == (0, 50, 6)
    assert np.isnan([result.rho, result.spearman_brown, result.low, result.high]).all()


def test_split_half_refuses_bad_values():
    with pytest.raises(ValueError, match="values"):
        split_half_reliability(np.ones((1, 3)), seed=0)
    with pytest.raises(ValueError, match="values"):
        split_half_reliability(np.array([[1.0, np.nan], [1.0, 2.0]]), seed=0)
    with pytest.raises(ValueError, match="splits"):
        split_half_reliability(np.eye(3), splits=0, seed=0)


# ---------------------------------------------------------------------------------------------
# Reference share


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_reference_share_matches_a_loop(higher_is_better):
    values = np.random.default_rng(3).integers(0, 3, size=(11, 4)).astype(float)
    shares = reference_share(values, 1, higher_is_better)
    for e in range(4):
        if e == 1:
            assert math.isnan(shares[e])
            continue
        total = 0.0
        for i in range(11):
            ref, other = values[i, 1], values[i, e]
            if ref == other:
                total += 0.5
            elif (ref > other) == higher_is_better:
                total += 1.0
        assert shares[e] == pytest.approx(total / 11)


def test_reference_share_refuses_a_bad_index():
    with pytest.raises(ValueError, match="reference_index"):
        reference_share(np.ones((3, 2)), 2, True)


# ---------------------------------------------------------------------------------------------
# The table

EXPLAINERS = ["sidu", "gradcam", "rise:masks=10", "center", "random"]
METRICS = ["pointing_game", "energy_pointing_game", "region_auc", "insertion_deletion", "road"]


def handmade_records():
    """6 items x 5 explainers; item i5 has no valid pointing-game region (but a hit)."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        for position, label in enumerate(EXPLAINERS):
            insertion = float(rng.uniform()) + 0.3 * position
            rows.append(
                {
                    "id": f"i{i}",
                    "category": "a" if i < 3 else "b",
                    "explainer": label,
                    "center_miss": False,
                    "pointing_game_hit": bool(i == 5 and label == "random")
                    or bool(rng.uniform() < 0.5),
                    "pointing_game_valid": i != 5,
                    "energy_pointing_game": float(rng.uniform()),
                    "region_auc": float(rng.uniform()),
                    "insertion_auc": insertion,
                    "deletion_auc": 2.0 - insertion,  # deletion ranks as insertion once flipped
                    "road_morf": float(rng.uniform()),
                    "road_lerf": float(rng.uniform()),
                    "road": float(rng.uniform()),
                }
            )
    return pd.DataFrame(rows)


def hand_means(records, column, *, valid_only):
    means = []
    for label in EXPLAINERS[:3]:
        part = records[records["explainer"] == label]
        if valid_only:
            part = part[part["pointing_game_valid"]]
        means.append(float(part[column].astype(float).mean()))
    return means


def test_agreement_table_on_handmade_records():
    records = handmade_records()
    table = agreement_table(records, METRICS, seed=0, draws=2000, splits=200)
    assert list(table.columns) == ["statistic", "metric", "other", "value", "low", "high", "n"]
    assert not table["metric"].isin(["road_morf", "road_lerf"]).any()
    assert not table["metric"].str.contains("road_").any()

    w_row = table[table["statistic"] == "kendall_w"].iloc[0]
    assert w_row["metric"] == "+".join(RATERS)
    assert w_row["other"] == "sidu+gradcam+rise:masks=10"  # the baselines are left out
    assert w_row["n"] == 3

    columns = [
        "pointing_game_hit",
        "energy_pointing_game",
        "region_auc",
        "insertion_auc",
        "deletion_auc",
        "road",
    ]
    scores = [hand_means(records, c, valid_only=c == "pointing_game_hit") for c in columns]
    scores[4] = [-x for x in scores[4]]  # deletion: lower is better
    assert w_row["value"] == pytest.approx(loop_w(scores), abs=1e-12)

    spearman = table[table["statistic"] == "spearman"].set_index(["metric", "other"])["value"]
    assert len(spearman) == 15
    assert spearman["insertion_auc", "deletion_auc"] == pytest.approx(1.0)
    for (i, a), (j, b) in itertools.combinations(enumerate(RATERS), 2):
        assert spearman[a, b] == pytest.approx(
            loop_pearson(loop_ranks(scores[i]), loop_ranks(scores[j])), nan_ok=True
        )

    halves = table[table["statistic"] == "split_half_rho"].set_index("metric")
    assert list(halves.index) == list(RATERS)
    assert halves.loc["pointing_game_hit_rate", "n"] == 5  # item i5 is not scored
    assert halves.loc["region_auc", "n"] == 6
    tied = table[table["statistic"] == "split_half_tied"]
    assert (tied["n"] == 200).all()

    shares = table[table["statistic"] == "reference_share"]
    assert len(shares) == len(RATERS) * len(EXPLAINERS)
    own = shares[shares["other"] == "sidu"]
    assert own["value"].isna().all()
    deletion = shares[shares["metric"] == "deletion_auc"].set_index("other")["value"]
    insertion = shares[shares["metric"] == "insertion_auc"].set_index("other")["value"]
    pd.testing.assert_series_equal(deletion, insertion, check_names=False)

    again = agreement_table(records, METRICS, seed=0, draws=2000, splits=200)
    pd.testing.assert_frame_equal(table, again)


def test_agreement_table_without_road_or_enough_objects():
    records = handmade_records()
    table = agreement_table(records, METRICS[:-1], seed=0, draws=100, splits=20)
    assert "road" not in set(table["metric"])
    two = records[records["explainer"].isin(["sidu", "center", "random"])]
    table = agreement_table(two, METRICS, seed=0, draws=100, splits=20)
    assert not table["statistic"].isin(["kendall_w", "kendall_w_p", "spearman"]).any()
    assert set(table["statistic"]) == {
        "split_half_rho",
        "split_half_spearman_brown",
        "split_half_tied",
        "reference_share",
    }
    text = agreement_markdown(table)
    assert "needs at least 2 metrics" in text
    assert most_discordant(table) is None


def test_most_discordant_and_markdown():
    rows = [
        ("spearman", "a", "b", 0.9),
        ("spearman", "a", "c", 0.8),
        ("spearman", "b", "c", -0.5),
    ]
    table = pd.DataFrame(
        [(*row, np.nan, np.nan, 4) for row in rows],
        columns=["statistic", "metric", "other", "value", "low", "high", "n"],
    )
    assert most_discordant(table) == "c"  # means: a 0.85, b 0.2, c 0.15

    full = agreement_table(handmade_records(), METRICS, seed=0, draws=500, splits=50)
    text = agreement_markdown(full)
    assert text.startswith("## Can these rankings be trusted?\n")
    assert "Kendall's W = " in text
    assert "sidu, gradcam and rise:masks=10" in text
    assert f"{most_discordant(full)} disagrees most with the rest" in text
    assert "not a confidence interval" in text
    assert "| metric | gradcam | rise:masks=10 | center | random |" in text


def test_agreement_table_on_real_records():
    run = ROOT / "results/reference-v2/imagenet-val-efficientnet_lite0"
    if not (run / "records.csv").exists():
        pytest.skip("reference records absent")
    records = pd.read_csv(run / "records.csv")
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    table = agreement_table(records, config["metrics"], seed=config["seed"])
    w = table.loc[table["statistic"] == "kendall_w", "value"].iloc[0]
    p = table.loc[table["statistic"] == "kendall_w_p", "value"].iloc[0]
    assert 0.0 <= w <= 1.0
    assert 0.0 < p <= 1.0
    assert "## Can these rankings be trusted?" in agreement_markdown(table)
