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

from sidu_bench.stats import (
    EXACT_LIMIT,
    FAMILYWISE_ALPHA,
    PERMUTATION_DRAWS,
    VERDICT_NA,
    VERDICT_REFERENCE,
    Estimate,
    bootstrap_class_mean,
    bootstrap_mean,
    holm,
    paired_difference,
    sign_flip_test,
    verdict,
)

SUMMARY_METRICS = (
    "pointing_game",
    "pointing_game_hit_rate",
    "pointing_game_center_miss",
    "energy_pointing_game",
    "region_auc",
    "insertion_auc",
    "deletion_auc",
)
"""Metric columns of ``summary.csv``, each with ``_ci_low``, ``_ci_high`` and ``_n``."""
PER_CLASS_METRICS = ("pointing_game", "pointing_game_center_miss")
"""Per-class means (TorchRay's pointing-game score): not per-item, so not compared in pairs."""
COMPARED_METRICS = tuple(name for name in SUMMARY_METRICS if name not in PER_CLASS_METRICS)
"""Per-item metrics of the paired comparisons (the pointing game as per-item hits)."""
COMPARISON_SUFFIXES = ("_diff", "_diff_ci_low", "_diff_ci_high", "_p", "_p_holm", "_verdict")
"""Columns ``<metric><suffix>`` that ``summary.csv`` has per compared metric."""
LOWER_IS_BETTER = ("deletion_auc",)
"""Metrics where lower is better (every other metric: higher is better)."""
SMALL_N = 10
"""Per-metric CIs from fewer items are shown in ``summary.md`` but marked."""

RECORD_COLUMNS = (
    "id",
    "category",
    "label",
    "target",
    "predicted",
    "predicted_prob",
    "target_prob",
    "explainer",
    "center_miss",
    "pointing_game_hit",
    "pointing_game_valid",
    "energy_pointing_game",
    "region_auc",
    "insertion_auc",
    "deletion_auc",
    "seconds",
    "metric_seconds",
    "backend",
    "device",
)
"""Columns of ``records.csv``, one row per (item, explainer)."""
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


def _scored(records: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The rows that score ``metric`` (pointing game: valid items; subset for center-miss)."""
    if metric.startswith("pointing_game"):
        rows = records[records["pointing_game_valid"].astype(bool)]
        if metric == "pointing_game_center_miss":
            rows = rows[rows["center_miss"].astype(bool)]
        return rows
    return records[records[metric].notna()]


def _values(rows: pd.DataFrame, metric: str) -> np.ndarray:
    column = "pointing_game_hit" if metric.startswith("pointing_game") else metric
    return rows[column].astype(float).to_numpy()


def estimate(records: pd.DataFrame, metric: str, *, seed: int) -> Estimate:
    """The summary estimate of ``metric`` over one explainer's records."""
    rows = _scored(records, metric)
    values = _values(rows, metric)
    if metric in PER_CLASS_METRICS:
        return bootstrap_class_mean(
            values, rows["category"].astype(str).tolist(), seed=metric_seed(seed, metric)
        )
    return bootstrap_mean(values, seed=metric_seed(seed, metric))


def summarise(records: pd.DataFrame, explainers: list[str], *, seed: int) -> pd.DataFrame:
    """One row per explainer: ``n_images``, each metric with CI and n, and the time per image."""
    rows = []
    for label in explainers:
        part = records[records["explainer"] == label]
        row: dict[str, object] = {"explainer": label, "n_images": len(part)}
        for metric in SUMMARY_METRICS:
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
        metric: one of :data:`COMPARED_METRICS`.
        seed: the run's seed.

    Returns:
        ``explainer``, ``reference``, ``metric``, ``difference``, ``ci_low``, ``ci_high``, ``n``,
        ``n_nonzero`` and ``p`` (NaN when ``n`` is 0).
    """
    if metric not in COMPARED_METRICS:
        raise ValueError(f"metric must be one of {', '.join(COMPARED_METRICS)}, got {metric!r}")
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
            higher_is_better=row.metric not in LOWER_IS_BETTER,
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
        for metric in COMPARED_METRICS
    ]
    return with_verdicts(pd.DataFrame(rows, columns=_PAIR_COLUMNS))


def _paired_values(base: pd.DataFrame, other: pd.DataFrame, metric: str) -> pd.DataFrame:
    scored_base = _scored(base.reset_index(), metric).set_index("id")
    scored_other = _scored(other.reset_index(), metric).set_index("id")
    shared = scored_base.index.intersection(scored_other.index)
    return pd.DataFrame(
        {
            "base": _values(scored_base.loc[shared], metric),
            "other": _values(scored_other.loc[shared], metric),
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
    for metric in COMPARED_METRICS:
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
    for metric in PER_CLASS_METRICS:
        items = _scored(records, metric).drop_duplicates("id")
        sizes = items["category"].astype(str).value_counts()
        counts[metric] = (int((sizes == 1).sum()), int(sizes.size))
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
            item in most classes (:func:`mostly_singletons`), the hit rate leads the table as
            the headline and a note says so.

    Returns:
        The Markdown text.
    """
    singletons = singletons or {}
    weak = {metric: counts for metric, counts in singletons.items() if mostly_singletons(*counts)}
    metrics = list(SUMMARY_METRICS)
    titles = {metric: metric for metric in metrics}
    if "pointing_game" in weak:
        metrics.remove("pointing_game_hit_rate")
        metrics.insert(metrics.index("pointing_game"), "pointing_game_hit_rate")
        titles["pointing_game_hit_rate"] = "pointing_game_hit_rate (headline)"
    for metric in weak:
        titles[metric] = f"{metric} ‡"
    lines = [f"# {header.get('dataset')} × {header.get('model')}", ""]
    lines += [f"- **{key}**: {value}" for key, value in header.items()]
    lines += ["", "Mean [95 % bootstrap CI] (n scored). Higher is better except deletion AUC.", ""]
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
            + (", so the hit rate is the headline." if metric == "pointing_game" else ".")
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
