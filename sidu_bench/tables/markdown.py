"""Markdown of every table: a run's ``summary.md`` and the cross tables of ``report.md``.

Cells read ``mean [low, high] (n=N)``; a CI from fewer than :data:`SMALL_N` items is marked †;
a per-class mean whose classes mostly hold one scored item is marked ‡ and the per-item
statistic it is ranked on becomes the headline. The verdict and ranking rules are written out
with the numbers they use; which statistics exist, their direction and ranking come from the
metric registry. Nothing here computes a statistic (:mod:`sidu_bench.tables.statistics`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence, Set

import numpy as np
import pandas as pd

from sidu_bench.metrics import get_statistic, summary_statistics
from sidu_bench.stats import EXACT_LIMIT, FAMILYWISE_ALPHA, PERMUTATION_DRAWS
from sidu_bench.tables.statistics import (
    SECONDS,
    family_size,
    ranked_metrics,
    report_metrics,
)

SMALL_N = 10
"""CIs from fewer items are shown but marked †."""
SMALL_N_NOTE = (
    f"† n < {SMALL_N}: the CI is shown, but a bootstrap of so few items is a rough guide."
)
SINGLETON_REASON = "it weighs single items and has no CI"
"""Why a per-class mean over classes of one item each is marked ‡."""


def format_cell(value: float, low: float, high: float, n: int, fmt: Callable[[float], str]) -> str:
    """Format ``value [low, high] (n=N)``; a dash when nothing was scored, no CI when undefined."""
    if n == 0 or np.isnan(value):
        return "–"
    if np.isnan(low):
        return f"{fmt(value)} (n={n})"
    return f"{fmt(value)} [{fmt(low)}, {fmt(high)}] (n={n})"


def metric_cell(value: float, low: float, high: float, n: int) -> tuple[str, bool]:
    """A metric's cell (3 decimals) and whether it carries the small-n mark †."""
    cell = format_cell(value, low, high, n, "{:.3f}".format)
    small = 0 < n < SMALL_N and not np.isnan(low)
    return (f"{cell} †" if small else cell), small


def _listed(names: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return " and ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else "".join(names)


def format_p(value: float) -> str:
    """A p-value with 3 significant digits, a dash when it is undefined."""
    return "–" if np.isnan(value) else f"{value:.3g}"


def verdict_rule(family: str) -> str:
    """The rule of the verdicts, for comparisons Holm-adjusted over ``family`` (in words)."""
    return (
        "Verdicts come from a two-sided paired sign-flip permutation test of the mean "
        f"difference (exact up to {EXACT_LIMIT} non-zero differences, else "
        f"{PERMUTATION_DRAWS:,} seeded draws), Holm-adjusted over {family} at family-wise "
        f'{FAMILYWISE_ALPHA}; "n too small" means even the smallest achievable p could not pass '
        f"(m × 2^(1 − n0) > {FAMILYWISE_ALPHA}, n0 = items whose values differ)."
    )


def summary_markdown(
    summary: pd.DataFrame,
    comparisons: pd.DataFrame | None,
    header: Mapping[str, object],
    *,
    weak: Mapping[str, tuple[int, int]] | None = None,
    metrics: Sequence[str] | None = None,
    trust: str = "",
    unstable: Set[tuple[str, str, str]] = frozenset(),
) -> str:
    """A run's ``summary.md``: header, metric table with 95 % CIs, comparisons, trust section.

    Args:
        summary: :func:`~sidu_bench.tables.statistics.summarise` of the run.
        comparisons: the reference family
            (:func:`~sidu_bench.tables.statistics.compare_pairs`), or ``None`` without one.
        header: the run header, one bullet per entry.
        weak: the per-class statistics with one scored item in most classes
            (:func:`~sidu_bench.tables.statistics.weak_per_class`): marked ‡, and the per-item
            statistic that ranks each (the pointing game's hit rate) leads as the headline.
        metrics: the metrics the run computed, whose statistics are the columns (default: all).
        trust: the section "Can these rankings be trusted?"
            (:func:`~sidu_bench.tables.trust.trust_markdown`), appended as it is.
        unstable: ``(explainer, reference, statistic)`` of the verdicts that change with the
            map's temperature (:func:`~sidu_bench.tables.trust.unstable_verdicts`): marked §.

    Returns:
        The Markdown text.
    """
    weak = weak or {}
    statistics = summary_statistics(metrics)
    columns = [statistic.name for statistic in statistics]
    titles = {column: column for column in columns}
    headlines = {}
    for metric in weak:
        headline = get_statistic(metric).ranked_by
        if headline is not None:
            columns.remove(headline)
            columns.insert(columns.index(metric), headline)
            titles[headline] = f"{headline} (headline)"
            headlines[metric] = get_statistic(headline).label
        titles[metric] = f"{metric} ‡"
    lower = [s.label for s in statistics if not s.higher_is_better]
    rule = f"Higher is better except {_listed(lower)}." if lower else "Higher is better."
    lines = [f"# {header.get('dataset')} × {header.get('model')}", ""]
    lines += [f"- **{key}**: {value}" for key, value in header.items()]
    lines += ["", f"Mean [95 % bootstrap CI] (n scored). {rule}", ""]
    names = ["explainer", *(titles[column] for column in columns), "s/image"]
    lines.append("| " + " | ".join(names) + " |")
    lines.append("|" + "---|" * len(names))
    marked = False
    for _, row in summary.iterrows():
        cells = [str(row["explainer"])]
        for column in columns:
            cell, small = metric_cell(
                row[column],
                row[f"{column}_ci_low"],
                row[f"{column}_ci_high"],
                int(row[f"{column}_n"]),
            )
            marked |= small
            cells.append(cell)
        cells.append(f"{row[SECONDS]:.3g}")
        lines.append("| " + " | ".join(cells) + " |")
    notes = [SMALL_N_NOTE] if marked else []
    for metric, (single, classes) in weak.items():
        notes.append(
            f"‡ {metric} is a per-class mean with one scored item in {single} of its {classes} "
            f"classes: {SINGLETON_REASON}"
            + (f", so the {headlines[metric]} is the headline." if metric in headlines else ".")
        )
    if notes:
        lines += ["", *notes]
    if comparisons is not None and len(comparisons):
        lines += _comparison_section(comparisons, unstable)
    if trust:
        lines += ["", trust.rstrip("\n")]
    return "\n".join(lines) + "\n"


def _comparison_section(
    comparisons: pd.DataFrame, unstable: Set[tuple[str, str, str]]
) -> list[str]:
    lines = [
        "",
        "## Paired comparison with the reference explainer",
        "",
        "Mean per-item difference (explainer − reference) with its paired bootstrap 95 % CI "
        "(the effect size). "
        + verdict_rule(f"the m = {family_size(comparisons)} comparisons of this table"),
        "",
        "| explainer | metric | difference [95 % CI] | n | n0 | p | p (Holm) | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in comparisons.itertuples():
        cell = format_cell(row.diff, row.diff_ci_low, row.diff_ci_high, 1, "{:+.3f}".format)
        cell = cell.replace(" (n=1)", "")
        mark = " §" if (row.explainer, row.reference, row.metric) in unstable else ""
        lines.append(
            f"| {row.explainer} | {row.metric} | {cell} | {row.n} | {row.n_nonzero} | "
            f"{format_p(row.p)} | {format_p(row.p_holm)} | {row.verdict}{mark} |"
        )
    if unstable:
        lines += [
            "",
            "§ the verdict changes when the map's temperature changes (see \"Can these rankings "
            'be trusted?", Temperature).',
        ]
    return lines


def ranking_rule(pairs_file: str, metrics: Sequence[str] | None = None) -> str:
    """How the report's ``rank`` is decided, for the statistics of ``metrics`` (default: all)."""
    lower = _listed([s.label for s in summary_statistics(metrics) if not s.higher_is_better])
    order = f"best first; lower is better for {lower}" if lower else "best first"
    ranked = ranked_metrics(metrics)
    on_other = "; ".join(f"{name} on {paired}" for name, paired in ranked.items() if name != paired)
    unranked = [m for m in report_metrics(metrics) if m not in ranked and m not in ranked.values()]
    return (
        f"Per (data set, model) and metric, explainers are ordered by their summary mean ({order}) "
        "and every pair is compared on the items both score. "
        + verdict_rule("all pairs x ranked metrics of the (data set, model)")
        + " One explainer is significantly better than another only when that adjusted p is at "
        f"most {FAMILYWISE_ALPHA}. A rank boundary goes before position p only if every explainer "
        "before p is significantly better than every explainer from p on; an explainer's rank is "
        "1 + the number of explainers above its boundary, so explainers that cannot be separated "
        "share a rank. "
        + (
            f"A per-class mean is ranked on its per-item statistic ({on_other}). "
            if on_other
            else ""
        )
        + f"Not ranked: {', '.join(unranked)}. Every pair's difference, CI, p, Holm p and "
        f"verdict are in {pairs_file}."
    )


def report_markdown(
    *,
    runs: Sequence[Mapping[str, object]],
    protocol: Mapping[str, object],
    mismatches: Sequence[str],
    table: pd.DataFrame,
    pairs: pd.DataFrame,
    weak: Mapping[tuple[str, str], Mapping[str, tuple[int, int]]],
    pairs_file: str,
    metrics: Sequence[str] | None = None,
    trust: Sequence[str] = (),
    unstable: Set[tuple[str, str, str, str, str]] = frozenset(),
) -> str:
    """``report.md``: header (protocol, versions, runs), cross tables, rankings, trust section.

    Args:
        runs: one mapping per run folder with ``path``, ``dataset``, ``model``, ``version``,
            ``protocol_id``, ``device`` and ``backend``.
        protocol: the protocol object of the first run.
        mismatches: one line per run whose protocol differs (a mixed table), else empty.
        table: the long-format report (``report.csv``).
        pairs: the pairs of every row (``report_pairs.csv``).
        weak: per (data set, model), the per-class statistics that are marked ‡, with counts.
        pairs_file: the name of the pairs file, for the prose.
        metrics: the metrics any of the runs computed (default: all registered).
        trust: the trust section of each (data set, model), in table order
            (:func:`~sidu_bench.tables.trust.trust_markdown`).
        unstable: ``(data set, model, explainer, reference, statistic)`` of the verdicts that
            change with the map's temperature: their rankings are marked §.
    """
    lines = ["# sidu-bench report", ""]
    if mismatches:
        lines += ["> **WARNING: mixed protocols** — these runs do not share one protocol, so the"]
        lines += ["> table compares numbers that were not measured the same way:", ">"]
        lines += [f"> - {line}" for line in mismatches]
        lines.append("")
    lines += [f"- **sidu-bench versions**: {', '.join(sorted({str(r['version']) for r in runs}))}"]
    ids = ", ".join(sorted({str(run["protocol_id"]) for run in runs}))
    lines += [f"- **protocol id(s)** (each run's whole protocol object): {ids}"]
    if "metric_protocol_id" in table.columns:
        by_id = table.groupby("metric_protocol_id", sort=False)["metric"].unique()
        listed = "; ".join(f"{key} ({', '.join(map(str, names))})" for key, names in by_id.items())
        lines += [
            "- **protocol id of each statistic's numbers** (the run-wide fields and its metric's "
            "entry, not the other metrics a run computed; a statistic under one id was measured "
            f"the same way in every cell): {listed}"
        ]
    lines += ["", "## Protocol", ""]
    lines += _flatten(protocol)
    lines += [
        "",
        "## Run folders",
        "",
        "Device and forward backend are environment, not protocol (they change results only "
        "within float tolerance), so runs that differ in them share a table; they are shown here.",
        "",
        "| run folder | data set | model | sidu-bench | protocol id | device | backend |",
        "|---|---|---|---|---|---|---|",
    ]
    keys = ("path", "dataset", "model", "version", "protocol_id", "device", "backend")
    lines += ["| " + " | ".join(str(run[key]) for key in keys) + " |" for run in runs]
    lines += ["", "## Cross tables", "", "Mean [95 % bootstrap CI] (n scored), from each run's"]
    lines += ["own summary."]
    marked = False
    for metric in report_metrics(metrics):
        section, small = _metric_section(table, metric, weak)
        lines += section
        marked |= small
    if marked:
        lines += ["", SMALL_N_NOTE]
    lines += _ranking_section(table, pairs, pairs_file, metrics, unstable)
    lines += ["", f"Ranking rule: {ranking_rule(pairs_file, metrics)}"]
    if trust:
        lines += [
            "",
            "## Can these rankings be trusted?",
            "",
            "Per data set × model, from the records (numbers in `report_agreement.csv`, the "
            "metrics' Spearman matrices in `agreement.png`); the temperature check tests the "
            "report's all-pairs family.",
        ]
        lines += ["", *(section.rstrip("\n") + "\n" for section in trust)]
    return "\n".join(lines).rstrip("\n") + "\n"


def _flatten(protocol: Mapping[str, object], prefix: str = "") -> list[str]:
    lines = []
    for key, value in protocol.items():
        if isinstance(value, Mapping):
            lines += _flatten(value, f"{prefix}{key}.")
        else:
            lines.append(f"- `{prefix}{key}`: {value}")
    return lines


def _metric_section(
    table: pd.DataFrame, metric: str, weak: Mapping[tuple[str, str], Mapping[str, tuple[int, int]]]
) -> tuple[list[str], bool]:
    part = table[table["metric"] == metric]
    explainers = list(dict.fromkeys(part["explainer"]))
    seconds = metric == SECONDS
    better = "higher" if seconds or get_statistic(metric).higher_is_better else "lower"
    title = "mean seconds per image; n = images" if seconds else f"{better} is better"
    lines = ["", f"### {metric} ({title})", ""]
    lines.append("| data set | model | " + " | ".join(explainers) + " |")
    lines.append("|---|---|" + "---|" * len(explainers))
    notes, marked = [], False
    for (dataset, model), row in part.groupby(["dataset", "model"], sort=False):
        by_explainer = row.set_index("explainer")
        cells = []
        for label in explainers:
            if label not in by_explainer.index:
                cells.append("")
                continue
            cell = by_explainer.loc[label]
            if seconds:
                cells.append(format_cell(cell["value"], np.nan, np.nan, cell["n"], "{:.3g}".format))
                continue
            text, small = metric_cell(cell["value"], cell["ci_low"], cell["ci_high"], cell["n"])
            cells.append(text)
            marked |= small
        counts = weak.get((dataset, model), {}).get(metric)
        if counts is not None:
            cells = [f"{cell} ‡" if cell not in ("–", "") else cell for cell in cells]
            notes.append(f"{dataset} × {model}: {counts[0]} of {counts[1]} classes")
        lines.append(f"| {dataset} | {model} | " + " | ".join(cells) + " |")
    if notes:
        headline = get_statistic(metric).ranked_by
        lines += [
            "",
            "‡ a per-class mean whose classes mostly hold a single scored item "
            f"({'; '.join(notes)}): {SINGLETON_REASON}"
            + (f", so read {headline} above, on which it is ranked." if headline else "."),
        ]
    return lines, marked


def _ranking_section(
    table: pd.DataFrame,
    pairs: pd.DataFrame,
    pairs_file: str,
    metrics: Sequence[str] | None,
    unstable: Set[tuple[str, str, str, str, str]],
) -> list[str]:
    families = [
        f"{dataset} × {model}: m = {family_size(part)}"
        for (dataset, model), part in pairs.groupby(["dataset", "model"], sort=False)
    ]
    lines = ["", "## Rankings", "", "Paired comparisons on the same items (rule below); every"]
    lines += [f"pair's difference, CI, p, Holm p and verdict are in `{pairs_file}`."]
    if families:
        lines += [f"Holm families (all pairs x ranked metrics): {'; '.join(families)}."]
    lines += ["", "| data set | model | metric | ranking |", "|---|---|---|---|"]
    ranked = table[table["rank"].notna()].sort_values("rank", kind="stable")
    for (dataset, model), row in ranked.groupby(["dataset", "model"], sort=False):
        computed = set(table[(table["dataset"] == dataset) & (table["model"] == model)]["metric"])
        for metric, paired in ranked_metrics(metrics).items():
            if metric not in computed:  # the cell's runs did not compute it
                continue
            part = row[row["metric"] == metric]
            order = " · ".join(f"{cell.rank}. {cell.explainer}" for cell in part.itertuples())
            name = metric if paired == metric else f"{metric} (on {paired})"
            moved = any(key[:2] == (dataset, model) and key[4] == paired for key in unstable)
            lines.append(f"| {dataset} | {model} | {name} | {order}{' §' if moved else ''} |")
    if unstable:
        lines += [
            "",
            "§ at least one verdict this ranking rests on changes when the map's temperature "
            'changes (see "Can these rankings be trusted?").',
        ]
    return lines
