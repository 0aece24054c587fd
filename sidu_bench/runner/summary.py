"""Summarise a run's records: per-explainer means with CIs, and paired comparisons with SIDU.

Paired comparisons carry the mean per-item difference with its bootstrap CI (effect size) and a
sign-flip p-value; verdicts come from Holm-adjusted p-values over the family of comparisons in
one table (:func:`with_verdicts`).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from sidu_bench.metrics import (
    Statistic,
    get_statistic,
    localisation_summary,
    metric_columns,
    summary_statistics,
)
from sidu_bench.metrics.registry import NameView
from sidu_bench.stats import (
    EXACT_LIMIT,
    FAMILYWISE_ALPHA,
    PERMUTATION_DRAWS,
    VERDICT_NA,
    VERDICT_REFERENCE,
    Estimate,
    bootstrap_mean,
    holm,
    paired_difference,
    sign_flip_test,
    stratified_interval,
    verdict,
)

COMPARISON_SUFFIXES = ("_diff", "_diff_ci_low", "_diff_ci_high", "_p", "_p_holm", "_verdict")
"""Columns ``<metric><suffix>`` that ``summary.csv`` has per compared metric."""
SMALL_N = 10
"""Per-metric CIs from fewer items are shown in ``summary.md`` but marked."""

ITEM_COLUMNS = (
    "id",
    "category",
    "label",
    "target",
    "predicted",
    "predicted_prob",
    "target_prob",
    "explainer",
    "center_miss",
)
"""The first columns of ``records.csv``: the item, its prediction and the explainer."""
TIMING_COLUMNS = ("seconds", "metric_seconds", "backend", "device")
"""The last columns of ``records.csv``: the costs and where they were measured."""


def record_columns() -> tuple[str, ...]:
    """Columns of ``records.csv``, one row per (item, explainer).

    The item's, then each registered metric's (:func:`sidu_bench.metrics.metric_columns`),
    then the costs.
    """
    return (*ITEM_COLUMNS, *metric_columns(), *TIMING_COLUMNS)


RECORD_COLUMNS = NameView(record_columns)
""":func:`record_columns` as a sequence that sees metrics registered after import."""


def compared_statistics() -> tuple[Statistic, ...]:
    """The per-item statistics of the paired comparisons (the pointing game as its hits)."""
    return tuple(statistic for statistic in summary_statistics() if statistic.compared)


_PAIR_COLUMNS = (
    "explainer",
    "reference",
    "metric",
    "difference",
    "ci_low",
    "ci_high",
    "n",
    "n_nonzero",
    "p",
)


def metric_seed(seed: int, metric: str) -> int:
    """The bootstrap seed of one metric: stable across runs, processes and platforms."""
    return (seed * 1_000_003 + zlib.crc32(metric.encode("utf-8"))) % 2**32


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


def estimate(records: pd.DataFrame, metric: str, *, seed: int) -> Estimate:
    """The summary estimate of the statistic ``metric`` over one explainer's records.

    Per-item statistics: the mean with its bootstrap CI. Per-class statistics: the metrics'
    per-class mean (:func:`sidu_bench.metrics.localisation_summary`, categories by name) with a
    stratified bootstrap CI (:func:`sidu_bench.stats.stratified_interval`); ``n`` counts items.
    """
    statistic = get_statistic(metric)
    rows = _scored(records, statistic)
    values = _values(rows, statistic)
    if not statistic.per_class:
        return bootstrap_mean(values, seed=metric_seed(seed, metric))
    if not values.size:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    names, codes = np.unique(rows["category"].astype(str).to_numpy(object), return_inverse=True)
    per_class = localisation_summary(
        torch.tensor(values),
        torch.ones(values.size, dtype=torch.bool),
        categories=torch.tensor(codes, dtype=torch.int64),
    ).all_items.per_class_mean
    groups = [values[codes == code] for code in range(len(names))]
    return Estimate(
        per_class, *stratified_interval(groups, seed=metric_seed(seed, metric)), values.size
    )


def summarise(records: pd.DataFrame, explainers: list[str], *, seed: int) -> pd.DataFrame:
    """One row per explainer: ``n_images``, each metric with CI and n, and the time per image."""
    rows = []
    for label in explainers:
        part = records[records["explainer"] == label]
        row: dict[str, object] = {"explainer": label, "n_images": len(part)}
        for metric in (statistic.name for statistic in summary_statistics()):
            result = estimate(part, metric, seed=seed)
            row[metric] = result.mean
            row[f"{metric}_ci_low"] = result.low
            row[f"{metric}_ci_high"] = result.high
            row[f"{metric}_n"] = result.n
        row["seconds_per_image"] = float(part["seconds"].mean()) if len(part) else float("nan")
        row["metric_seconds_per_image"] = (
            float(part["metric_seconds"].mean()) if len(part) else float("nan")
        )
        rows.append(row)
    return pd.DataFrame(rows)


def comparison_seed(seed: int, metric: str, explainer: str, reference: str) -> int:
    """The sign-flip test's Monte Carlo seed of one comparison (stable like :func:`metric_seed`)."""
    return metric_seed(seed, f"sign-flip:{metric}:{explainer}:{reference}")


def compare_pair(
    records: pd.DataFrame, explainer: str, reference: str, metric: str, *, seed: int
) -> dict[str, object]:
    """One paired comparison ``explainer - reference`` of ``metric``, before the family's Holm step.

    The items are those both explainers score (the pointing game's hits as 0/1, so its
    comparison is on the hit rate). The effect size is the mean difference with its paired
    bootstrap CI (seeded as the metric's summary CI); ``p`` is the two-sided sign-flip test.

    Args:
        records: ``records.csv`` rows of (at least) both explainers.
        explainer: the compared explainer's label.
        reference: the reference explainer's label.
        metric: the name of one of :func:`compared_statistics`.
        seed: the run's seed.

    Returns:
        ``explainer``, ``reference``, ``metric``, ``difference``, ``ci_low``, ``ci_high``, ``n``,
        ``n_nonzero`` and ``p`` (NaN when ``n`` is 0).
    """
    names = [statistic.name for statistic in compared_statistics()]
    if metric not in names:
        raise ValueError(f"metric must be one of {', '.join(names)}, got {metric!r}")
    base = records[records["explainer"] == reference].set_index("id")
    other = records[records["explainer"] == explainer].set_index("id")
    joined = _paired_values(base, other, metric)
    differences = joined["other"].to_numpy() - joined["base"].to_numpy()
    result = paired_difference(joined["other"], joined["base"], seed=metric_seed(seed, metric))
    p = (
        sign_flip_test(differences, seed=comparison_seed(seed, metric, explainer, reference))
        if result.n
        else float("nan")
    )
    return {
        "explainer": explainer,
        "reference": reference,
        "metric": metric,
        "difference": result.mean,
        "ci_low": result.low,
        "ci_high": result.high,
        "n": result.n,
        "n_nonzero": int(np.count_nonzero(differences)),
        "p": p,
    }


def family_size(comparisons: pd.DataFrame) -> int:
    """``m``: the comparisons of a family that were tested (``n > 0``)."""
    return int((comparisons["n"] > 0).sum()) if len(comparisons) else 0


def with_verdicts(comparisons: pd.DataFrame) -> pd.DataFrame:
    """Add ``p_holm`` and ``verdict`` to comparisons that form one family (one printed table).

    The Holm adjustment runs over every row with ``n > 0``; rows with ``n = 0`` get NaN and
    ``"n/a"``. The verdict rule is :func:`sidu_bench.stats.verdict` with ``m`` = the number of
    tested rows.

    Args:
        comparisons: rows of :func:`compare_pair`.

    Returns:
        A copy with the two columns added.
    """
    table = comparisons.copy()
    m = family_size(table)
    if not len(table):
        return table.assign(p_holm=pd.Series(dtype=float), verdict=pd.Series(dtype=object))
    table["p_holm"] = holm(table["p"].to_numpy(dtype=float))
    table["verdict"] = [
        verdict(
            row.difference,
            row.p_holm,
            n=int(row.n),
            n_nonzero=int(row.n_nonzero),
            family_size=max(m, 1),
            higher_is_better=get_statistic(row.metric).higher_is_better,
        )
        for row in table.itertuples()
    ]
    return table


def paired_comparisons(
    records: pd.DataFrame, reference: str, explainers: list[str], *, seed: int
) -> pd.DataFrame:
    """Every explainer against ``reference`` on every compared metric, as one Holm family.

    Args:
        records: the run's records.
        reference: the reference explainer's label.
        explainers: the run's explainer labels in table order (the reference is skipped).
        seed: the run's seed.

    Returns:
        One row per (explainer, metric): ``explainer``, ``reference``, ``metric``,
        ``difference``, ``ci_low``, ``ci_high``, ``n``, ``n_nonzero``, ``p``, ``p_holm``,
        ``verdict``.
    """
    rows = [
        compare_pair(records, label, reference, metric, seed=seed)
        for label in explainers
        if label != reference
        for metric in (statistic.name for statistic in compared_statistics())
    ]
    return with_verdicts(pd.DataFrame(rows, columns=_PAIR_COLUMNS))


def _paired_values(base: pd.DataFrame, other: pd.DataFrame, metric: str) -> pd.DataFrame:
    statistic = get_statistic(metric)
    scored_base = _scored(base.reset_index(), statistic).set_index("id")
    scored_other = _scored(other.reset_index(), statistic).set_index("id")
    shared = scored_base.index.intersection(scored_other.index)
    return pd.DataFrame(
        {
            "base": _values(scored_base.loc[shared], statistic),
            "other": _values(scored_other.loc[shared], statistic),
        }
    )


def with_comparison_columns(
    summary: pd.DataFrame, comparisons: pd.DataFrame | None, reference: str | None
) -> pd.DataFrame:
    """``summary`` with, per compared metric, the columns of :data:`COMPARISON_SUFFIXES`.

    Each explainer's row gets its comparison with ``reference``; the reference's own row gets
    NaN and the verdict ``"reference"``; without a reference every verdict is ``"n/a"``. The
    existing columns are kept as they are, the new ones appended.
    """
    found = {}
    if comparisons is not None:
        found = {(row.explainer, row.metric): row for row in comparisons.itertuples()}
    columns: dict[str, list[object]] = {}
    for metric in (statistic.name for statistic in compared_statistics()):
        for suffix in COMPARISON_SUFFIXES:
            columns[f"{metric}{suffix}"] = []
        for label in summary["explainer"]:
            row = found.get((label, metric))
            values = (
                (row.difference, row.ci_low, row.ci_high, row.p, row.p_holm, row.verdict)
                if row is not None
                else (*[float("nan")] * 5, VERDICT_REFERENCE if label == reference else VERDICT_NA)
            )
            for suffix, value in zip(COMPARISON_SUFFIXES, values, strict=True):
                columns[f"{metric}{suffix}"].append(value)
    added = pd.DataFrame(columns, index=summary.index)
    return pd.concat([summary, added], axis=1)


def per_class_singletons(records: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """For each per-class mean: (classes with a single scored item, classes with any).

    Validity is a property of the item (its region), so items are counted once whatever the
    explainer.
    """
    counts = {}
    for statistic in summary_statistics():
        if statistic.per_class:
            items = _scored(records, statistic).drop_duplicates("id")
            sizes = items["category"].astype(str).value_counts()
            counts[statistic.name] = (int((sizes == 1).sum()), int(sizes.size))
    return counts


def mostly_singletons(singletons: int, classes: int) -> bool:
    """The headline rule: more than half of the classes have one scored item.

    Such a per-class mean weighs single items by ``1 / classes`` and has no CI (a stratified
    bootstrap cannot vary a one-item class), so the hit rate is the headline instead.
    """
    return classes > 0 and 2 * singletons > classes


def format_cell(value: float, low: float, high: float, n: int, fmt: Callable[[float], str]) -> str:
    """Format ``value [low, high] (n=N)``; a dash when nothing was scored, no CI when undefined."""
    if n == 0 or np.isnan(value):
        return "–"
    if np.isnan(low):
        return f"{fmt(value)} (n={n})"
    return f"{fmt(value)} [{fmt(low)}, {fmt(high)}] (n={n})"


def summary_markdown(
    summary: pd.DataFrame,
    comparisons: pd.DataFrame | None,
    header: dict[str, object],
    *,
    singletons: dict[str, tuple[int, int]] | None = None,
) -> str:
    """The Markdown summary: run header, the metric table with 95 % CIs, paired comparisons.

    Args:
        summary: the :func:`summarise` table.
        comparisons: :func:`paired_comparisons` (one family), or ``None`` without a reference.
        header: the run header, one bullet per entry.
        singletons: :func:`per_class_singletons` of the records; where a per-class mean has one
            item in most classes (:func:`mostly_singletons`), the per-item statistic that ranks
            it (the pointing game's hit rate) leads the table as the headline, and a note says
            so.

    Returns:
        The Markdown text.
    """
    singletons = singletons or {}
    weak = {metric: counts for metric, counts in singletons.items() if mostly_singletons(*counts)}
    statistics = summary_statistics()
    metrics = [statistic.name for statistic in statistics]
    titles = {metric: metric for metric in metrics}
    headlines = {}
    for metric in weak:
        headline = get_statistic(metric).ranked_by
        if headline is not None:
            metrics.remove(headline)
            metrics.insert(metrics.index(metric), headline)
            titles[headline] = f"{headline} (headline)"
            headlines[metric] = get_statistic(headline).label
        titles[metric] = f"{metric} ‡"
    lower = [statistic.label for statistic in statistics if not statistic.higher_is_better]
    direction = f"Higher is better except {' and '.join(lower)}." if lower else "Higher is better."
    lines = [f"# {header.get('dataset')} × {header.get('model')}", ""]
    lines += [f"- **{key}**: {value}" for key, value in header.items()]
    lines += ["", f"Mean [95 % bootstrap CI] (n scored). {direction}", ""]
    names = ["explainer", *(titles[metric] for metric in metrics), "s/image"]
    lines.append("| " + " | ".join(names) + " |")
    lines.append("|" + "---|" * len(names))
    marked = False
    for _, row in summary.iterrows():
        cells = [str(row["explainer"])]
        for metric in metrics:
            n = int(row[f"{metric}_n"])
            cell = format_cell(
                row[metric], row[f"{metric}_ci_low"], row[f"{metric}_ci_high"], n, "{:.3f}".format
            )
            if 0 < n < SMALL_N and not np.isnan(row[f"{metric}_ci_low"]):
                cell += " †"
                marked = True
            cells.append(cell)
        cells.append(f"{row['seconds_per_image']:.3g}")
        lines.append("| " + " | ".join(cells) + " |")
    notes = []
    if marked:
        notes.append(
            f"† n < {SMALL_N}: the CI is shown, but a bootstrap of so few items is a rough guide."
        )
    for metric, (single, classes) in weak.items():
        notes.append(
            f"‡ {metric} is a per-class mean with one scored item in {single} of its {classes} "
            "classes: it weighs single items and has no CI"
            + (f", so the {headlines[metric]} is the headline." if metric in headlines else ".")
        )
    if notes:
        lines += ["", *notes]
    if comparisons is not None and len(comparisons):
        lines += _comparison_section(comparisons)
    return "\n".join(lines) + "\n"


def verdict_rule(m: int) -> str:
    """The one-sentence verdict rule of a table whose family has ``m`` tested comparisons."""
    return (
        "Verdicts come from a two-sided paired sign-flip permutation test of the mean "
        f"difference (exact up to {EXACT_LIMIT} non-zero differences, else "
        f"{PERMUTATION_DRAWS:,} seeded draws), Holm-adjusted over the m = {m} comparisons of "
        f'this table at family-wise {FAMILYWISE_ALPHA}; "n too small" means even the smallest '
        f"achievable p could not pass (m × 2^(1 − n0) > {FAMILYWISE_ALPHA}, n0 = items whose "
        "values differ)."
    )


def _comparison_section(comparisons: pd.DataFrame) -> list[str]:
    lines = [
        "",
        "## Paired comparison with the reference explainer",
        "",
        "Mean per-item difference (explainer − reference) with its paired bootstrap 95 % CI "
        "(the effect size). " + verdict_rule(family_size(comparisons)),
        "",
        "| explainer | metric | difference [95 % CI] | n | n0 | p | p (Holm) | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in comparisons.itertuples():
        cell = format_cell(row.difference, row.ci_low, row.ci_high, 1, "{:+.3f}".format)
        cell = cell.replace(" (n=1)", "")
        lines.append(
            f"| {row.explainer} | {row.metric} | {cell} | {row.n} | {row.n_nonzero} | "
            f"{_format_p(row.p)} | {_format_p(row.p_holm)} | {row.verdict} |"
        )
    return lines


def _format_p(value: float) -> str:
    return "–" if np.isnan(value) else f"{value:.3g}"
