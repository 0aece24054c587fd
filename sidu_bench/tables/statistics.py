"""The statistics of every table: estimates, paired comparisons, verdicts and rankings.

Pure functions of a run's records (one row per item and explainer, as ``records.csv`` holds
them): no file is read or written here. Which columns exist, their direction, whether a
statistic is per item or per class and which rows score it all come from the metric registry
(:func:`sidu_bench.metrics.summary_statistics`).

Paired comparisons carry the mean per-item difference with its paired bootstrap CI (the effect
size) and a sign-flip p-value; verdicts come from Holm-adjusted p-values over one *family* of
comparisons. Two families are in use: ``summary.md`` compares every explainer with the reference
(:func:`reference_pairs`), ``report`` compares every pair of explainers of a (data set, model)
(:func:`all_pairs`). The protocol: docs/protocol.md, item 8.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from sidu_bench.metrics import Statistic, get_statistic, registered_metrics, summary_statistics
from sidu_bench.stats import (
    VERDICT_BETTER,
    VERDICT_NA,
    VERDICT_REFERENCE,
    VERDICT_WORSE,
    Estimate,
    bootstrap_mean,
    holm,
    paired_difference,
    sign_flip_test,
    stratified_interval,
    verdict,
)

PAIR_COLUMNS = (
    "explainer",
    "reference",
    "metric",
    "diff",
    "diff_ci_low",
    "diff_ci_high",
    "n",
    "n_nonzero",
    "p",
    "p_holm",
    "verdict",
)
"""One paired comparison ``explainer - reference`` of one metric, after its family's Holm step.

``diff`` is the mean per-item difference with its paired bootstrap CI; ``n`` the items both
score, ``n_nonzero`` those whose values differ; ``p`` the two-sided sign-flip p-value and
``p_holm`` its Holm adjustment within the family; ``verdict`` one of the ``VERDICT_*`` strings.
"""
COMPARISON_SUFFIXES = tuple(
    f"_{column}" for column in PAIR_COLUMNS[3:] if column not in ("n", "n_nonzero")
)
"""Columns ``<metric><suffix>`` that ``summary.csv`` has per compared metric (pair columns)."""
SECONDS = "seconds_per_image"
"""The cost column of the summaries and the report (not ranked)."""
REFERENCE_EXPLAINER = "sidu"
"""The reference of ``summary.md``: the first explainer whose name (before ':') is this."""


def compared_statistics(metrics: Sequence[str] | None = None) -> tuple[Statistic, ...]:
    """The per-item statistics of ``metrics`` (default: all) compared in pairs."""
    return tuple(statistic for statistic in summary_statistics(metrics) if statistic.compared)


def report_metrics(metrics: Sequence[str] | None = None) -> list[str]:
    """Metric columns of the report of ``metrics`` (default: all), in table order, then the cost.

    A per-class statistic ranked on a per-item one (the pointing game on its hit rate) comes
    after that per-item statistic, so the quantity its ranking rests on is shown with its CI.
    """
    names = []
    for statistic in summary_statistics(metrics):
        if statistic.in_report:
            if statistic.per_class and statistic.ranked_by is not None:
                names.append(statistic.ranked_by)
            names.append(statistic.name)
    return [*dict.fromkeys(names), SECONDS]


def ranked_metrics(metrics: Sequence[str] | None = None) -> dict[str, str]:
    """Report statistic -> the per-item statistic it is ranked on (``metrics``: default all)."""
    return {
        statistic.name: statistic.ranking
        for statistic in summary_statistics(metrics)
        if statistic.in_report and statistic.ranking is not None
    }


def reference_explainer(explainers: Sequence[str]) -> str | None:
    """The first label whose explainer name is ``sidu`` (``sidu:threshold=0.5`` counts), or None.

    Example:
        >>> reference_explainer(["gradcam", "sidu:threshold=0.5", "sidu"])
        'sidu:threshold=0.5'
    """
    return next((label for label in explainers if label.split(":")[0] == REFERENCE_EXPLAINER), None)


def metric_seed(seed: int, metric: str) -> int:
    """The bootstrap seed of one metric: stable across runs, processes and platforms."""
    return (seed * 1_000_003 + zlib.crc32(metric.encode("utf-8"))) % 2**32


def comparison_seed(seed: int, metric: str, explainer: str, reference: str) -> int:
    """The sign-flip test's Monte Carlo seed of one comparison (stable like :func:`metric_seed`)."""
    return metric_seed(seed, f"sign-flip:{metric}:{explainer}:{reference}")


def scored_mask(records: pd.DataFrame, statistic: Statistic) -> pd.Series:
    """Which rows score ``statistic``: its ``scored_by`` flag, else a value, within its subset.

    A column the records lack (a metric registered after the run) scores no row.
    """
    if statistic.column not in records.columns:
        return pd.Series(False, index=records.index)
    if statistic.scored_by is None:
        mask = records[statistic.column].notna()
    else:
        mask = records[statistic.scored_by].astype(bool)
    if statistic.subset is not None:
        mask &= records[statistic.subset].astype(bool)
    return mask


def _scored(records: pd.DataFrame, statistic: Statistic) -> pd.DataFrame:
    return records[scored_mask(records, statistic)]


def _values(rows: pd.DataFrame, statistic: Statistic) -> np.ndarray:
    if statistic.column not in rows.columns:
        return np.empty(0)
    return rows[statistic.column].astype(float).to_numpy()


def per_class_mean(values: np.ndarray, categories: np.ndarray) -> float:
    """TorchRay's pointing-game score: the mean over categories of each category's mean value.

    Categories are compared as text; for hits (0/1) this is ``mean_k(hits_k / trials_k)``. NaN
    without values.

    Example:
        >>> per_class_mean(np.array([1.0, 0.0, 1.0]), np.array(["a", "a", "b"]))
        0.75
    """
    if not values.size:
        return float("nan")
    _, codes = np.unique(categories.astype(str), return_inverse=True)
    sums = np.bincount(codes, weights=values)
    return float(np.mean(sums / np.bincount(codes)))


def estimate(records: pd.DataFrame, metric: str, *, seed: int) -> Estimate:
    """The summary estimate of the statistic ``metric`` over one explainer's records.

    Per-item statistics: the mean with its bootstrap CI. Per-class statistics: the mean of the
    per-category means (:func:`per_class_mean`) with a stratified bootstrap CI
    (:func:`sidu_bench.stats.stratified_interval`, categories in name order); ``n`` counts items.
    """
    statistic = get_statistic(metric)
    rows = _scored(records, statistic)
    values = _values(rows, statistic)
    if not statistic.per_class:
        return bootstrap_mean(values, seed=metric_seed(seed, metric))
    categories = rows["category"].astype(str).to_numpy(object) if values.size else values
    names, codes = np.unique(categories, return_inverse=True)
    groups = [values[codes == code] for code in range(len(names))]
    interval = stratified_interval(groups, seed=metric_seed(seed, metric))
    return Estimate(per_class_mean(values, categories), *interval, values.size)


def summarise(
    records: pd.DataFrame,
    explainers: Sequence[str],
    *,
    seed: int,
    metrics: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per explainer: ``n_images``, each statistic with CI and n, and the costs.

    The statistics are those of ``metrics`` (the metrics the run computed; default: all).
    """
    rows = []
    for label in explainers:
        part = records[records["explainer"] == label]
        row: dict[str, object] = {"explainer": label, "n_images": len(part)}
        for metric in (statistic.name for statistic in summary_statistics(metrics)):
            result = estimate(part, metric, seed=seed)
            row[metric] = result.mean
            row[f"{metric}_ci_low"] = result.low
            row[f"{metric}_ci_high"] = result.high
            row[f"{metric}_n"] = result.n
        for column, source in (
            (SECONDS, "seconds"),
            ("metric_seconds_per_image", "metric_seconds"),
        ):
            row[column] = float(part[source].mean()) if len(part) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def compare_pair(
    records: pd.DataFrame, explainer: str, reference: str, metric: str, *, seed: int
) -> dict[str, object]:
    """One paired comparison ``explainer - reference`` of ``metric``, before the Holm step.

    The items are those both explainers score (the pointing game's hits as 0/1, so its
    comparison is on the hit rate). The effect size is the mean difference with its paired
    bootstrap CI (seeded as the metric's summary CI); ``p`` is the two-sided sign-flip test.

    Args:
        records: the records of (at least) both explainers.
        explainer: the compared explainer's label.
        reference: the reference explainer's label.
        metric: the name of a per-item statistic: one of :func:`compared_statistics`, or a
            variant of one (:attr:`~sidu_bench.metrics.Statistic.variant_of`).
        seed: the run's seed.

    Returns:
        The :data:`PAIR_COLUMNS` up to ``p`` (NaN when ``n`` is 0).
    """
    statistic = get_statistic(metric)
    if statistic.per_class:
        names = ", ".join(s.name for s in summary_statistics() if not s.per_class)
        raise ValueError(f"metric must be a per-item statistic ({names}), got {metric!r}")
    scored = _scored(records, statistic).set_index("id")
    base = scored[scored["explainer"] == reference]
    other = scored[scored["explainer"] == explainer]
    shared = base.index.intersection(other.index)
    first, second = _values(other.loc[shared], statistic), _values(base.loc[shared], statistic)
    result = paired_difference(first, second, seed=metric_seed(seed, metric))
    differences = first - second
    p = (
        sign_flip_test(differences, seed=comparison_seed(seed, metric, explainer, reference))
        if result.n
        else float("nan")
    )
    return dict(
        zip(
            PAIR_COLUMNS,
            (explainer, reference, metric, result.mean, result.low, result.high, result.n),
            strict=False,
        ),
        n_nonzero=int(np.count_nonzero(differences)),
        p=p,
    )


def family_size(comparisons: pd.DataFrame) -> int:
    """``m``: the comparisons of a family that were tested (``n > 0``)."""
    return int((comparisons["n"] > 0).sum()) if len(comparisons) else 0


def reference_pairs(explainers: Sequence[str], reference: str) -> list[tuple[str, str]]:
    """``(explainer, reference)`` for every other explainer: the family of ``summary.md``."""
    return [(label, reference) for label in explainers if label != reference]


def all_pairs(explainers: Sequence[str]) -> list[tuple[str, str]]:
    """Every pair ``(later, earlier)`` in table order: the family of ``report``.

    The earlier explainer plays the reference, so with SIDU first its rows equal those of
    ``summary.md`` before the Holm step.

    Example:
        >>> all_pairs(["a", "b", "c"])
        [('b', 'a'), ('c', 'a'), ('c', 'b')]
    """
    return [
        (later, earlier)
        for position, earlier in enumerate(explainers)
        for later in explainers[position + 1 :]
    ]


def compare_pairs(
    records: pd.DataFrame,
    pairs: Sequence[tuple[str, str]],
    statistics: Sequence[str],
    *,
    seed: int,
) -> pd.DataFrame:
    """Every pair on every metric, as one Holm family (one printed table).

    The Holm adjustment runs over every comparison with ``n > 0``; those with ``n = 0`` get NaN
    and ``"n/a"``. The verdict rule is :func:`sidu_bench.stats.verdict` with ``m`` = the number
    of tested comparisons.

    Args:
        records: the records.
        pairs: ``(explainer, reference)`` pairs, e.g. :func:`reference_pairs` or
            :func:`all_pairs`.
        statistics: names of :func:`compared_statistics`.
        seed: the runs' seed.

    Returns:
        One row per (pair, metric), pairs outermost, with the :data:`PAIR_COLUMNS`.
    """
    rows = [
        compare_pair(records, explainer, reference, metric, seed=seed)
        for explainer, reference in pairs
        for metric in statistics
    ]
    return holm_verdicts(pd.DataFrame(rows, columns=list(PAIR_COLUMNS[:-2])))


def holm_verdicts(comparisons: pd.DataFrame) -> pd.DataFrame:
    """``comparisons`` (the :data:`PAIR_COLUMNS` up to ``p``) as one Holm family, with verdicts.

    Adds ``p_holm`` (Holm over every comparison with ``n > 0``; NaN where ``n = 0``) and
    ``verdict`` (:func:`sidu_bench.stats.verdict` with ``m`` = the tested comparisons).
    """
    table = comparisons[list(PAIR_COLUMNS[:-2])].reset_index(drop=True)
    m = max(family_size(table), 1)
    table["p_holm"] = holm(table["p"].to_numpy(dtype=float))
    table["verdict"] = pd.Series(
        [
            verdict(
                row.diff,
                row.p_holm,
                n=int(row.n),
                n_nonzero=int(row.n_nonzero),
                family_size=m,
                higher_is_better=get_statistic(row.metric).higher_is_better,
            )
            for row in table.itertuples()
        ],
        index=table.index,
        dtype=object,
    )
    return table


def with_comparison_columns(
    summary: pd.DataFrame,
    comparisons: pd.DataFrame | None,
    reference: str | None,
    metrics: Sequence[str] | None = None,
) -> pd.DataFrame:
    """``summary`` with, per compared metric, the columns of :data:`COMPARISON_SUFFIXES`.

    Each explainer's row gets its comparison with ``reference``; the reference's own row gets
    NaN and the verdict ``"reference"``; without a reference every verdict is ``"n/a"``. The
    existing columns are kept as they are, the new ones appended.
    """
    found = {}
    if comparisons is not None:
        found = {(row.explainer, row.metric): row for row in comparisons.itertuples()}
    names = [suffix[1:] for suffix in COMPARISON_SUFFIXES]
    columns: dict[str, list[object]] = {}
    for metric in (statistic.name for statistic in compared_statistics(metrics)):
        for suffix in COMPARISON_SUFFIXES:
            columns[f"{metric}{suffix}"] = []
        for label in summary["explainer"]:
            row = found.get((label, metric))
            values = (
                [getattr(row, name) for name in names]
                if row is not None
                else (*[float("nan")] * 5, VERDICT_REFERENCE if label == reference else VERDICT_NA)
            )
            for suffix, value in zip(COMPARISON_SUFFIXES, values, strict=True):
                columns[f"{metric}{suffix}"].append(value)
    added = pd.DataFrame(columns, index=summary.index)
    return pd.concat([summary, added], axis=1)


def mostly_singletons(singletons: int, classes: int) -> bool:
    """The headline rule: more than half of the classes have one scored item.

    Such a per-class mean weighs single items by ``1 / classes`` and has no CI (a stratified
    bootstrap cannot vary a one-item class), so the per-item statistic it is ranked on (the
    pointing game's hit rate) is the headline instead.
    """
    return classes > 0 and 2 * singletons > classes


def weak_per_class(
    records: pd.DataFrame, metrics: Sequence[str] | None = None
) -> dict[str, tuple[int, int]]:
    """The per-class statistics :func:`mostly_singletons` marks: (single-item classes, classes).

    Validity is a property of the item (its region), so items are counted once whatever the
    explainer.
    """
    weak = {}
    for statistic in summary_statistics(metrics):
        if statistic.per_class:
            items = _scored(records, statistic).drop_duplicates("id")
            sizes = items["category"].astype(str).value_counts()
            counts = (int((sizes == 1).sum()), int(sizes.size))
            if mostly_singletons(*counts):
                weak[statistic.name] = counts
    return weak


def count_skipped_by_localisation(records: pd.DataFrame, metrics: Sequence[str]) -> int:
    """Items no localisation metric could score (empty or missing region), from the records.

    An item counts when no statistic of a localisation metric (``uses_regions``) scores it.
    Zero when the run computed no localisation metric. Records cannot tell an empty region from
    a data set without regions: the runner, which knows, may pass its own count instead.
    """
    localisation = [metric for metric in registered_metrics() if metric.uses_regions]
    if not any(metric.name in metrics for metric in localisation):
        return 0
    scored = pd.Series(False, index=records.index)
    for metric in localisation:
        for statistic in metric.statistics:
            scored |= scored_mask(records, statistic)
    per_item = scored.groupby(records["id"], sort=False).any()
    return int((~per_item).sum())


def rank_groups(order: Sequence[str], better: set[tuple[str, str]]) -> dict[str, int]:
    """Ranks of explainers in ``order`` (best mean first) from significant pairwise wins.

    ``(a, b) in better`` means a is significantly better than b. A boundary goes before
    position p only if every explainer before p is significantly better than every one from p
    on; the rank is 1 + the number of explainers above the boundary.

    Example:
        >>> rank_groups(["a", "b", "c"], {("a", "c"), ("b", "c")})
        {'a': 1, 'b': 1, 'c': 3}
    """
    ranks: dict[str, int] = {}
    rank = 1
    for position, label in enumerate(order):
        if position and all((a, b) in better for a in order[:position] for b in order[position:]):
            rank = position + 1
        ranks[label] = rank
    return ranks


def rankings(
    pairs: pd.DataFrame, summary: pd.DataFrame, metrics: Sequence[str] | None = None
) -> dict[str, dict[str, int]]:
    """Rank of every explainer per ranked report metric (see :func:`rank_groups`).

    Explainers are ordered by their summary mean (best first, ties by label); a per-class metric
    ranked on a per-item statistic (the pointing game on its hit rate) and that statistic get
    the same ranks.

    Args:
        pairs: :func:`compare_pairs` over :func:`all_pairs` of the row.
        summary: the row's summary, indexed by explainer.
        metrics: the metrics of the row's runs (default: all registered).
    """
    better = set()
    for row in pairs.itertuples():
        if row.verdict == VERDICT_BETTER:
            better.add((row.metric, row.explainer, row.reference))
        elif row.verdict == VERDICT_WORSE:
            better.add((row.metric, row.reference, row.explainer))
    result = {}
    for metric, paired in ranked_metrics(metrics).items():
        if paired not in summary.columns:
            continue  # no run of the row computed it
        means = summary[paired].astype(float).dropna()
        sign = 1.0 if get_statistic(paired).higher_is_better else -1.0
        order = sorted(means.index, key=lambda label, m=means: (-sign * m[label], str(label)))
        wins = {(winner, loser) for name, winner, loser in better if name == paired}
        result[metric] = rank_groups([str(label) for label in order], wins)
        result.setdefault(paired, result[metric])
    return result
