"""Can these rankings be trusted? Agreement between metrics and reliability of each metric.

Pure functions of a run's records (one row per item and explainer, as ``records.csv`` holds
them): no file is read or written here, and every random draw comes from a seeded
:func:`numpy.random.default_rng`. Per-item values are read as the tables read them
(:func:`sidu_bench.tables.statistics.scored_mask`: the same validity rules), and which
statistics a run has comes from the metric registry.

Three questions, one statistic each:

* Do the metrics rank the explainers alike? Kendall's coefficient of concordance ``W``
  (:func:`kendalls_w`, with the tie correction) over the *raters* (the per-item statistics of
  :data:`RATERS` the run computed, each explainer scored by its mean, oriented so that higher
  is better: the deletion AUC's sign is flipped) and the *objects* (the explainers other than
  the baselines of :data:`BASELINES`, which every metric puts last and which would inflate the
  agreement), with a permutation p-value (:func:`concordance_test`), and the pairwise Spearman
  correlations of the raters (:func:`spearman_matrix`).
* Does a metric rank the explainers alike on two halves of the items? Split-half reliability
  (:func:`split_half_reliability`) over *all* explainers of the run, baselines included (the
  question is whether the metric's own ranking is stable, and the baselines are part of it),
  on the items every explainer scores for that statistic.
* How often does a metric prefer the reference on single items? :func:`reference_share`.

:func:`agreement_table` gathers them in one long table with the columns of
:data:`AGREEMENT_COLUMNS`:

* ``statistic``: what the row holds, one of :data:`AGREEMENT_STATISTICS`.
* ``metric``: the rater statistic the row is about; for ``kendall_w`` and ``kendall_w_p`` the
  raters joined with ``'+'`` (in table order).
* ``other``: the second rater of a ``spearman`` pair, the compared explainer of a
  ``reference_share`` row, and for ``kendall_w`` / ``kendall_w_p`` the objects (explainers)
  joined with ``'+'``; ``''`` otherwise.
* ``value``: ``W``, its p-value, a Spearman correlation, the mean split-half rho, its
  Spearman-Brown step-up, the number of tied splits, or a share.
* ``low``, ``high``: for ``split_half_rho`` the 2.5 % and 97.5 % percentiles of the per-split
  rho (a spread over splits, not a confidence interval); NaN elsewhere.
* ``n``: the objects (explainers) for ``kendall_w``, ``kendall_w_p`` and ``spearman``; the items
  for ``split_half_rho``, ``split_half_spearman_brown`` and ``reference_share``; the splits drawn
  for ``split_half_tied``.

:func:`agreement_markdown` writes the section "Can these rankings be trusted?" from that table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from sidu_bench.metrics import Statistic, summary_statistics
from sidu_bench.tables.statistics import (
    _values,
    metric_seed,
    reference_explainer,
    scored_mask,
)

RATERS = (
    "pointing_game_hit_rate",
    "energy_pointing_game",
    "region_auc",
    "insertion_auc",
    "deletion_auc",
    "road",
)
"""The per-item statistics that rate the explainers, in table order.

One statistic per measurement: ``road`` stands for ROAD (``road_morf`` and ``road_lerf`` are its
parts), the hit rate for the pointing game (its per-class means are not per item).
"""
BASELINES = ("center", "random")
"""Explainer names (before ':') left out of the concordance's objects."""
AGREEMENT_COLUMNS = ("statistic", "metric", "other", "value", "low", "high", "n")
"""The columns of :func:`agreement_table` (see the module docstring)."""
AGREEMENT_STATISTICS = (
    "kendall_w",
    "kendall_w_p",
    "spearman",
    "split_half_rho",
    "split_half_spearman_brown",
    "split_half_tied",
    "reference_share",
)
"""The values of the ``statistic`` column, in the order rows appear."""
DRAWS = 10_000
"""Permutations of the concordance test."""
SPLITS = 1000
"""Random halvings of the split-half reliability."""
_CELLS_PER_BLOCK = 4_000_000
"""Array cells one vectorised block of draws may hold."""


@dataclass(frozen=True)
class SplitHalf:
    """Split-half reliability of one metric's ranking of the explainers.

    Attributes:
        rho: the mean Spearman correlation over the used splits (NaN when none was used).
        spearman_brown: ``2 rho / (1 + rho)`` of that mean: the reliability of the full set.
        low: the 2.5 % percentile of the per-split rho (a spread over splits, not a CI).
        high: the 97.5 % percentile of the per-split rho.
        used: the splits whose rho was computed.
        tied: the splits left out because one half's means were all tied.
        n_items: the items that were split.
    """

    rho: float
    spearman_brown: float
    low: float
    high: float
    used: int
    tied: int
    n_items: int


def _matrix(scores: np.ndarray, name: str, *, rows: str, columns: str) -> np.ndarray:
    """``scores`` as a float64 matrix of at least 2 x 2 without NaN, else ValueError."""
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] < 2 or array.shape[1] < 2:
        raise ValueError(
            f"{name} must be a 2-D array of at least 2 {rows} x 2 {columns}, "
            f"got shape {array.shape}"
        )
    if np.isnan(array).any():
        raise ValueError(f"{name} contains NaN")
    return array


def _tie_sum(ranks: np.ndarray) -> float:
    """``sum_j T_j``: over raters and their tie groups of size t, ``t^3 - t``."""
    total = 0.0
    for row in ranks:
        _, counts = np.unique(row, return_counts=True)
        total += float(np.sum(counts.astype(np.float64) ** 3 - counts))
    return total


def _spread(ranks: np.ndarray) -> np.ndarray:
    """``S``: the squared deviations of the objects' rank sums from their mean (last axes)."""
    sums = ranks.sum(axis=-2)
    return ((sums - sums.mean(axis=-1, keepdims=True)) ** 2).sum(axis=-1)


def _concordance(ranks: np.ndarray, spread: np.ndarray | float) -> np.ndarray | float:
    m, n = ranks.shape
    denominator = m**2 * (n**3 - n) - m * _tie_sum(ranks)
    if denominator <= 0:
        return np.full_like(spread, np.nan) if isinstance(spread, np.ndarray) else float("nan")
    return 12.0 * spread / denominator


def kendalls_w(scores: np.ndarray) -> float:
    """Kendall's coefficient of concordance ``W`` of raters scoring objects, tie-corrected.

    Each rater's row is ranked with average ranks for ties (higher score, higher rank); with
    ``m`` raters, ``n`` objects, ``R_i`` the rank sum of object i and ``S = sum_i (R_i -
    mean R)^2``, ``W = 12 S / (m^2 (n^3 - n) - m sum_j T_j)``, where ``T_j`` sums ``t^3 - t``
    over the tie groups (of size t) of rater j. ``W`` is 1 when the raters rank alike and near 0
    when their rankings are unrelated.

    Args:
        scores: raters x objects, each rater's scores oriented so that higher is better.

    Returns:
        ``W`` in ``[0, 1]``; NaN when every rater ties every object.

    Raises:
        ValueError: ``scores`` is not 2-D, has fewer than 2 raters or 2 objects, or holds NaN.

    Example:
        >>> kendalls_w(np.array([[1, 2, 3], [1, 2, 3]]))
        1.0
    """
    ranks = rankdata(_matrix(scores, "scores", rows="raters", columns="objects"), axis=1)
    return float(_concordance(ranks, float(_spread(ranks))))


def concordance_test(scores: np.ndarray, *, draws: int = DRAWS, seed: int) -> tuple[float, float]:
    """Kendall's ``W`` with a permutation p-value of the hypothesis that the raters are unrelated.

    Each draw shuffles every rater's ranks independently (uniform random permutations from
    ``numpy.random.default_rng(seed)``; ties move with their ranks, so the tie correction is
    unchanged) and recomputes ``W``; ``p = (1 + #{W_perm >= W_obs}) / (1 + draws)``, where a
    permuted rank-sum spread within ``1e-9`` (relative) of the observed one counts as reaching
    it.

    Args:
        scores: raters x objects, oriented so that higher is better.
        draws: permutations, at least 1.
        seed: the generator's seed.

    Returns:
        ``(W, p)``; both NaN when ``W`` is (every rater ties every object).

    Raises:
        ValueError: bad ``scores`` (see :func:`kendalls_w`) or ``draws`` < 1.
    """
    array = _matrix(scores, "scores", rows="raters", columns="objects")
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    ranks = rankdata(array, axis=1)
    observed = float(_spread(ranks))
    w = float(_concordance(ranks, observed))
    if np.isnan(w):
        return w, float("nan")
    threshold = observed - 1e-9 * max(observed, 1.0)
    rng = np.random.default_rng(seed)
    block = max(1, _CELLS_PER_BLOCK // ranks.size)
    reached = 0
    for start in range(0, draws, block):
        size = min(block, draws - start)
        order = np.argsort(rng.random((size, *ranks.shape)), axis=2)
        shuffled = np.take_along_axis(np.broadcast_to(ranks, order.shape), order, axis=2)
        reached += int(np.count_nonzero(_spread(shuffled) >= threshold))
    return w, (1 + reached) / (1 + draws)


def _pearson_rows(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Pearson correlation of matching rows; NaN where a row is constant."""
    a = first - first.mean(axis=-1, keepdims=True)
    b = second - second.mean(axis=-1, keepdims=True)
    norms = np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, (a * b).sum(axis=-1) / np.where(norms > 0, norms, 1.0), np.nan)


def spearman_matrix(scores: np.ndarray) -> np.ndarray:
    """Pairwise Spearman correlations of the raters' rankings of the objects.

    Each rater's row is ranked with average ranks; entry ``(i, j)`` is the Pearson correlation
    of raters i and j's ranks.

    Args:
        scores: raters x objects.

    Returns:
        raters x raters; NaN in the rows and columns of a rater that ties every object.

    Raises:
        ValueError: ``scores`` is not 2-D, has fewer than 2 raters or 2 objects, or holds NaN.
    """
    ranks = rankdata(_matrix(scores, "scores", rows="raters", columns="objects"), axis=1)
    return _pearson_rows(ranks[:, None, :], ranks[None, :, :])


def split_half_reliability(values: np.ndarray, *, splits: int = SPLITS, seed: int) -> SplitHalf:
    """How alike one metric ranks the explainers on two random halves of the items.

    The procedure, exactly: ``rng = numpy.random.default_rng(seed)``; split s (in order) draws
    ``keys = rng.random(n)`` and takes ``order = numpy.argsort(keys, kind="stable")``; the first
    half is ``order[: n // 2]``, the second the rest. (Splits are drawn in blocks,
    ``rng.random((block, n))``, which yields the same numbers.) Each half's mean per explainer
    is taken; a split where either half's means are all tied is left out (counted in ``tied``);
    otherwise its rho is the Spearman correlation (average ranks) of the two mean vectors.

    Args:
        values: items x explainers, only items every explainer scores.
        splits: random halvings, at least 1.
        seed: the generator's seed.

    Returns:
        The :class:`SplitHalf` (NaN statistics when no split was used).

    Raises:
        ValueError: ``values`` is not 2-D, has fewer than 2 items or 2 explainers, or holds
            NaN; or ``splits`` < 1.
    """
    array = _matrix(values, "values", rows="items", columns="explainers")
    if splits < 1:
        raise ValueError(f"splits must be at least 1, got {splits}")
    n, k = array.shape
    half = n // 2
    rng = np.random.default_rng(seed)
    block = max(1, _CELLS_PER_BLOCK // (n * k))
    rhos = []
    for start in range(0, splits, block):
        order = np.argsort(rng.random((min(block, splits - start), n)), axis=1, kind="stable")
        picked = array[order]  # (splits, n, k)
        first = picked[:, :half].sum(axis=1) / half
        second = picked[:, half:].sum(axis=1) / (n - half)
        tied = (first == first[:, :1]).all(axis=1) | (second == second[:, :1]).all(axis=1)
        rho = _pearson_rows(rankdata(first, axis=1), rankdata(second, axis=1))
        rhos.append(np.where(tied, np.nan, rho))
    every = np.concatenate(rhos)
    used = every[~np.isnan(every)]
    if not used.size:
        nan = float("nan")
        return SplitHalf(nan, nan, nan, nan, 0, splits, n)
    rho = float(used.mean())
    brown = 2.0 * rho / (1.0 + rho) if rho > -1.0 else float("nan")
    low, high = np.percentile(used, [2.5, 97.5])
    return SplitHalf(rho, brown, float(low), float(high), int(used.size), splits - used.size, n)


def reference_share(values: np.ndarray, reference_index: int, higher_is_better: bool) -> np.ndarray:
    """Per explainer, the share of items on which the metric scores the reference better.

    Args:
        values: items x explainers (items every explainer scores).
        reference_index: the reference's column.
        higher_is_better: the metric's direction.

    Returns:
        One share per explainer in ``[0, 1]`` (ties count one half); NaN at ``reference_index``.

    Raises:
        ValueError: ``values`` is not 2-D with at least one item, or holds NaN, or
            ``reference_index`` is not one of its columns.

    Example:
        >>> reference_share(np.array([[1.0, 0.0], [1.0, 1.0]]), 0, True)
        array([ nan, 0.75])
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] < 1:
        raise ValueError(f"values must be a 2-D array of at least 1 item, got {array.shape}")
    if np.isnan(array).any():
        raise ValueError("values contains NaN")
    if not 0 <= reference_index < array.shape[1]:
        raise ValueError(
            f"reference_index must be a column of values (0 to {array.shape[1] - 1}), "
            f"got {reference_index}"
        )
    sign = 1.0 if higher_is_better else -1.0
    difference = sign * (array[:, [reference_index]] - array)
    shares = ((difference > 0) + 0.5 * (difference == 0)).mean(axis=0)
    shares[reference_index] = np.nan
    return shares


def _is_baseline(label: str) -> bool:
    return label.split(":")[0] in BASELINES


def _item_matrix(records: pd.DataFrame, statistic: Statistic, explainers: list[str]) -> np.ndarray:
    """Items x explainers of the statistic's values, items every explainer scores (id order)."""
    rows = records[scored_mask(records, statistic)]
    frame = pd.DataFrame(
        {
            "id": rows["id"].astype(str).to_numpy(),
            "explainer": rows["explainer"].astype(str).to_numpy(),
            "value": _values(rows, statistic),
        }
    )
    wide = frame.pivot(index="id", columns="explainer", values="value")
    wide = wide.reindex(columns=explainers).dropna()
    return wide.to_numpy(dtype=np.float64)


def _row(
    statistic: str,
    metric: str,
    other: str,
    value: float,
    n: int,
    low: float = float("nan"),
    high: float = float("nan"),
) -> dict[str, object]:
    return dict(
        zip(AGREEMENT_COLUMNS, (statistic, metric, other, value, low, high, n), strict=True)
    )


def agreement_table(
    records: pd.DataFrame,
    metrics: Sequence[str],
    *,
    seed: int,
    draws: int = DRAWS,
    splits: int = SPLITS,
) -> pd.DataFrame:
    """The agreement and reliability statistics of one run, one per row.

    The raters are the statistics of :data:`RATERS` among ``summary_statistics(metrics)`` that
    score at least one item of every object; a rater's score of an explainer is its mean over
    the items it scores for that explainer, sign-flipped when lower is better. The objects are
    the explainers (in records order) that are not baselines (:data:`BASELINES`). Concordance
    and Spearman rows need 2 raters and 2 objects; a rater's split-half rows need 2 explainers
    and 2 items every explainer scores; reference shares need a reference
    (:func:`~sidu_bench.tables.statistics.reference_explainer`) and are computed on the same
    items. The reference's own ``reference_share`` row has value NaN, so the table names it.
    Seeds: :func:`~sidu_bench.tables.statistics.metric_seed` of ``seed`` and
    ``"kendall_w"`` or ``"split_half:<statistic>"``.

    Args:
        records: a run's records (columns ``id``, ``explainer`` and the metrics' columns).
        metrics: the metrics the run computed, as in its ``config.json``.
        seed: the run's seed.
        draws: permutations of the concordance test.
        splits: random halvings of the split-half reliability.

    Returns:
        The rows, with the columns of :data:`AGREEMENT_COLUMNS` (see the module docstring), in
        the order of :data:`AGREEMENT_STATISTICS`, raters in table order within each.
    """
    explainers = [str(label) for label in pd.unique(records["explainer"])]
    objects = [label for label in explainers if not _is_baseline(label)]
    statistics = [s for s in summary_statistics(metrics) if s.name in RATERS]
    raters: list[str] = []
    scores = []
    for statistic in statistics:
        rows = records[scored_mask(records, statistic)]
        means = (
            pd.Series(_values(rows, statistic), index=rows["explainer"].astype(str).to_numpy())
            .groupby(level=0)
            .mean()
            .reindex(objects)
        )
        if objects and not means.isna().any():
            raters.append(statistic.name)
            sign = 1.0 if statistic.higher_is_better else -1.0
            scores.append(sign * means.to_numpy(dtype=np.float64))
    table: list[dict[str, object]] = []
    if len(raters) >= 2 and len(objects) >= 2:
        matrix = np.array(scores)
        w, p = concordance_test(matrix, draws=draws, seed=metric_seed(seed, "kendall_w"))
        joined, named = "+".join(raters), "+".join(objects)
        table.append(_row("kendall_w", joined, named, w, len(objects)))
        table.append(_row("kendall_w_p", joined, named, p, len(objects)))
        correlations = spearman_matrix(matrix)
        for i, first in enumerate(raters):
            for j in range(i + 1, len(raters)):
                table.append(_row("spearman", first, raters[j], correlations[i, j], len(objects)))
    halves, shares = [], []
    reference = reference_explainer(explainers)
    for statistic in statistics:
        values = _item_matrix(records, statistic, explainers)
        if len(explainers) < 2 or values.shape[0] < 2:
            continue
        result = split_half_reliability(
            values, splits=splits, seed=metric_seed(seed, f"split_half:{statistic.name}")
        )
        name, items = statistic.name, result.n_items
        halves.append(_row("split_half_rho", name, "", result.rho, items, result.low, result.high))
        halves.append(_row("split_half_spearman_brown", name, "", result.spearman_brown, items))
        halves.append(_row("split_half_tied", name, "", result.tied, splits))
        if reference is not None:
            position = explainers.index(reference)
            share = reference_share(values, position, statistic.higher_is_better)
            for label, value in zip(explainers, share, strict=True):
                shares.append(_row("reference_share", name, label, value, items))
    table.extend(halves + shares)
    frame = pd.DataFrame(table, columns=list(AGREEMENT_COLUMNS))
    return frame.astype({"value": float, "low": float, "high": float, "n": int})


def _rows(table: pd.DataFrame, statistic: str) -> pd.DataFrame:
    return table[table["statistic"] == statistic]


def spearman_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The symmetric Spearman matrix of the ``spearman`` rows (diagonal 1), raters in order."""
    rows = _rows(table, "spearman")
    names = list(dict.fromkeys([*rows["metric"], *rows["other"]]))
    frame = pd.DataFrame(np.eye(len(names)), index=names, columns=names)
    for row in rows.itertuples():
        frame.loc[row.metric, row.other] = frame.loc[row.other, row.metric] = row.value
    return frame


def most_discordant(table: pd.DataFrame) -> str | None:
    """The rater whose mean Spearman correlation with the other raters is lowest.

    Args:
        table: an :func:`agreement_table`.

    Returns:
        Its name (the first in table order on a tie); None without Spearman rows or when every
        correlation is NaN.
    """
    means = _mean_correlations(table)
    return None if means.isna().all() else str(means.idxmin())


def _mean_correlations(table: pd.DataFrame) -> pd.Series:
    frame = spearman_frame(table)
    values = frame.to_numpy(copy=True)
    np.fill_diagonal(values, np.nan)
    with np.errstate(all="ignore"):
        counts = (~np.isnan(values)).sum(axis=1)
        means = np.where(counts > 0, np.nansum(values, axis=1) / np.maximum(counts, 1), np.nan)
    return pd.Series(means, index=frame.index, dtype=float)


def _number(value: float) -> str:
    return "–" if np.isnan(value) else f"{value:.3f}"


def _p(value: float) -> str:
    if np.isnan(value):
        return "–"
    return "< 0.001" if value < 0.0005 else f"{value:.3f}"


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _listed(names: Sequence[str]) -> str:
    return " and ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else "".join(names)


def agreement_markdown(
    table: pd.DataFrame, *, heading: str = "## Can these rankings be trusted?"
) -> str:
    """The Markdown section "Can these rankings be trusted?" of an :func:`agreement_table`.

    Kendall's ``W`` with its p-value, objects and raters; the Spearman matrix; the metric that
    disagrees most with the rest; split-half reliability per metric; the reference's shares of
    items won per metric and explainer. Parts without rows are left out.

    Args:
        table: an :func:`agreement_table`.
        heading: the section's heading line.

    Returns:
        The section, ending in a newline.
    """
    lines = [heading, ""]
    concordance = _rows(table, "kendall_w")
    if len(concordance):
        row = concordance.iloc[0]
        p = _rows(table, "kendall_w_p")["value"].iloc[0]
        raters = str(row["metric"]).split("+")
        objects = str(row["other"]).split("+")
        lines += [
            f"Kendall's W = {_number(row['value'])} (permutation p = {_p(p)}): how alike "
            f"{len(raters)} metrics ({_listed(raters)}) rank {len(objects)} explainers "
            f"({_listed(objects)}) by their means; 1 is full agreement, 0 none. The baselines "
            f"({_listed(BASELINES)}) are left out: their distance from the rest would inflate "
            "the agreement."
            + (" Deletion AUC counts with its sign flipped." if "deletion_auc" in raters else ""),
            "",
        ]
    else:
        lines += ["Kendall's W needs at least 2 metrics and 2 non-baseline explainers.", ""]
    if len(_rows(table, "spearman")):
        frame = spearman_frame(table)
        names = list(frame.index)
        body = [[name, *(_number(v) for v in frame.loc[name])] for name in names]
        lines += ["Spearman correlation of the metrics' rankings of those explainers:", ""]
        lines += [*_markdown_table(["metric", *names], body), ""]
        discordant = most_discordant(table)
        if discordant is not None:
            mean = _mean_correlations(table)[discordant]
            lines += [
                f"{discordant} disagrees most with the rest: its mean correlation with the "
                f"other metrics is {_number(mean)}.",
                "",
            ]
    halves = _rows(table, "split_half_rho")
    if len(halves):
        brown = _rows(table, "split_half_spearman_brown").set_index("metric")["value"]
        tied = _rows(table, "split_half_tied").set_index("metric")
        body = [
            [
                str(row.metric),
                str(int(row.n)),
                _number(row.value),
                _number(brown[row.metric]),
                f"{_number(row.low)} to {_number(row.high)}",
                f"{int(tied.loc[row.metric, 'value'])} of {int(tied.loc[row.metric, 'n'])}",
            ]
            for row in halves.itertuples()
        ]
        lines += [
            "Split-half reliability: the items are halved at random, and the Spearman "
            "correlation (rho) of all explainers' means (baselines included) in the two halves "
            "is taken per split. The range is the 2.5-97.5 % spread of rho over the splits, not "
            "a confidence interval; splits where a half's means all tie are left out.",
            "",
            *_markdown_table(
                [
                    "metric",
                    "items",
                    "mean rho",
                    "Spearman-Brown",
                    "spread over splits",
                    "tied splits left out",
                ],
                body,
            ),
            "",
        ]
    shares = _rows(table, "reference_share")
    if len(shares):
        reference = reference_explainer(list(dict.fromkeys(shares["other"])))
        others = [o for o in dict.fromkeys(shares["other"]) if o != reference]
        wide = shares.pivot(index="metric", columns="other", values="value")
        metrics = list(dict.fromkeys(shares["metric"]))
        body = [[m, *(_number(wide.loc[m, o]) for o in others)] for m in metrics]
        lines += [
            f"Share of items on which each metric scores {reference} better than the explainer "
            "(ties count one half; the items every explainer scores):",
            "",
            *_markdown_table(["metric", *others], body),
            "",
        ]
    return "\n".join(lines)
