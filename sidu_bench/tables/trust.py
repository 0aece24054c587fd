"""The trust section of every table: "Can these rankings be trusted?" (issue 25).

Computed from a run's records only (no re-run), for ``summary.md`` (the reference family) and
for each (data set, model) row of ``report`` (the all-pairs family); written in the report also
as ``report_agreement.csv``. One long table, :data:`TRUST_COLUMNS`:

* the agreement and replicability rows of :func:`sidu_bench.tables.agreement.agreement_table`
  (Kendall's W and its permutation p, the metrics' Spearman matrix, split-half reliability, the
  reference's share of items), with an empty ``verdict``;
* ``temperature``: for each verdict of a statistic that is not invariant to a monotone change of
  the map and has variants (the energy pointing game), the comparison of the same pair on each
  variant (``metric`` the variant, ``other`` the pair ``"<explainer> vs <reference>"``,
  ``value`` the mean difference, ``low``/``high`` its CI, ``n``, and the ``verdict`` under the
  variant), the variant's family being the table's family with the statistic replaced by it;
* ``temperature_kept``: per pair of that statistic, 1 when the verdict is the same under every
  variant, else 0 (``verdict``: the verdict on the plain map);
* ``sanity``: each explainer against the center baseline on the model-randomisation checks
  (``mprt_last``, ``mprt_mean``, ``emprt``; the center's map does not depend on the weights, so
  it scores exactly 1 / 1 / 0), one Holm family of its own: ``other`` the explainer, ``value``
  the mean difference with its CI and ``n``, ``verdict`` ("better than reference" = passes).

Columns: ``statistic, metric, other, value, low, high, n, verdict``; the report adds ``dataset``
and ``model`` in front.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from sidu_bench.metrics import registered_metrics, summary_statistics
from sidu_bench.stats import VERDICT_BETTER, VERDICT_NA, VERDICT_WORSE
from sidu_bench.tables.agreement import AGREEMENT_COLUMNS, agreement_markdown, agreement_table
from sidu_bench.tables.statistics import (
    compare_pair,
    compare_pairs,
    compared_statistics,
    holm_verdicts,
)

TRUST_COLUMNS = (*AGREEMENT_COLUMNS, "verdict")
"""The columns of :func:`trust_table`."""
SANITY_STATISTICS = ("mprt_last", "mprt_mean", "emprt")
"""The model-randomisation statistics compared with the center baseline."""
CENTER = "center"
"""The baseline whose map ignores the weights (the sanity checks' reference)."""
TEMPERATURE_MARK = "§"
"""Marks a verdict that changes when the map's temperature changes."""


def _pair(explainer: str, reference: str) -> str:
    return f"{explainer} vs {reference}"


def temperature_rows(
    records: pd.DataFrame,
    comparisons: pd.DataFrame,
    metrics: Sequence[str],
    *,
    seed: int,
) -> list[dict[str, object]]:
    """The ``temperature`` and ``temperature_kept`` rows of a table's family.

    Args:
        records: the records.
        comparisons: the family's comparisons (:func:`compare_pairs` of ``pairs`` over the
            compared statistics of ``metrics``); the variant's family is this one with the
            statistic's comparisons run again on the variant.
        metrics: the metrics the runs computed.
        seed: the runs' seed.
    """
    family = [statistic.name for statistic in compared_statistics(metrics)]
    variants: dict[str, list[str]] = {}
    for statistic in summary_statistics(metrics):
        if statistic.variant_of in family:
            variants.setdefault(statistic.variant_of, []).append(statistic.name)
    rows = []
    for base, names in variants.items():
        plain = comparisons[comparisons["metric"] == base].set_index(["explainer", "reference"])
        verdicts = {key: [] for key in plain.index}
        for variant in names:
            # The family with the statistic replaced: the other comparisons are the same tests
            # (same seeds), so only the variant's are run again before the Holm step.
            replaced = comparisons.copy()
            for index in replaced.index[replaced["metric"] == base]:
                row = replaced.loc[index]
                tested_pair = compare_pair(
                    records, row["explainer"], row["reference"], variant, seed=seed
                )
                for column, value in tested_pair.items():
                    replaced.at[index, column] = value
            tested = holm_verdicts(replaced)
            for row in tested[tested["metric"] == variant].itertuples():
                verdicts[(row.explainer, row.reference)].append(row.verdict)
                rows.append(
                    _row(
                        "temperature",
                        variant,
                        _pair(row.explainer, row.reference),
                        row.diff,
                        row.diff_ci_low,
                        row.diff_ci_high,
                        row.n,
                        row.verdict,
                    )
                )
        for (explainer, reference), row in plain.iterrows():
            kept = all(verdict == row["verdict"] for verdict in verdicts[(explainer, reference)])
            rows.append(
                _row(
                    "temperature_kept",
                    base,
                    _pair(explainer, reference),
                    float(kept),
                    n=int(row["n"]),
                    verdict=row["verdict"],
                )
            )
    return rows


def sanity_outcome(verdict: str) -> str:
    """What a sanity row's verdict against the center means for the explainer.

    ``"passes"`` (significantly better than the center), ``"fails"`` (significantly worse),
    ``"undefined on every item"`` (``n/a``: the check is undefined wherever it was scored, e.g.
    MPRT on maps that are constant) or ``"does not pass"`` (no significant difference, or too few
    items that differ from the center, as for a map that ignores the weights just as the
    center's does).

    Example:
        >>> sanity_outcome("better than reference"), sanity_outcome("n too small")
        ('passes', 'does not pass')
    """
    if verdict == VERDICT_BETTER:
        return "passes"
    if verdict == VERDICT_WORSE:
        return "fails"
    if verdict == VERDICT_NA:
        return "undefined on every item"
    return "does not pass"


def sanity_rows(
    records: pd.DataFrame, explainers: Sequence[str], metrics: Sequence[str], *, seed: int
) -> list[dict[str, object]]:
    """Each explainer against the center baseline on the sanity checks (one Holm family)."""
    center = next((label for label in explainers if label.split(":")[0] == CENTER), None)
    names = [s.name for s in compared_statistics(metrics) if s.name in SANITY_STATISTICS]
    if center is None or not names:
        return []
    pairs = [(label, center) for label in explainers if label != center]
    tested = compare_pairs(records, pairs, names, seed=seed)
    return [
        _row(
            "sanity",
            row.metric,
            row.explainer,
            row.diff,
            row.diff_ci_low,
            row.diff_ci_high,
            row.n,
            row.verdict,
        )
        for row in tested.itertuples()
    ]


def _row(
    statistic: str,
    metric: str,
    other: str,
    value: float,
    low: float = float("nan"),
    high: float = float("nan"),
    n: int = 0,
    verdict: str = "",
) -> dict[str, object]:
    values = (statistic, metric, other, value, low, high, int(n), verdict)
    return dict(zip(TRUST_COLUMNS, values, strict=True))


def trust_table(
    records: pd.DataFrame,
    explainers: Sequence[str],
    metrics: Sequence[str],
    *,
    seed: int,
    comparisons: pd.DataFrame | None,
) -> pd.DataFrame:
    """The trust section's numbers for one table (one run, or one row of the report).

    Args:
        records: the records of the table's explainers.
        explainers: the explainers, in table order.
        metrics: the metrics the runs computed.
        seed: the runs' seed.
        comparisons: the table's family of comparisons, the reference or all pairs (None: no
            family, no temperature rows).
    """
    records = records[records["explainer"].isin(list(explainers))]
    agreement = agreement_table(records, metrics, seed=seed).assign(verdict="")
    rows = []
    if comparisons is not None and len(comparisons):
        rows += temperature_rows(records, comparisons, metrics, seed=seed)
    rows += sanity_rows(records, explainers, metrics, seed=seed)
    extra = pd.DataFrame(rows, columns=list(TRUST_COLUMNS))
    frames = [frame for frame in (agreement, extra) if len(frame)]
    table = pd.concat(frames, ignore_index=True) if frames else extra
    return table.astype({"value": float, "low": float, "high": float, "n": int})


def unstable_verdicts(table: pd.DataFrame) -> set[tuple[str, str, str]]:
    """``(explainer, reference, statistic)`` of the verdicts a change of temperature changes."""
    kept = table[(table["statistic"] == "temperature_kept") & (table["value"] == 0)]
    return {(*str(row.other).split(" vs ", 1), str(row.metric)) for row in kept.itertuples()}


def invariance_sentence(metrics: Sequence[str]) -> str:
    """Which of the run's metrics are invariant to a strictly increasing change of the map."""
    chosen = [metric for metric in registered_metrics() if metric.name in metrics]
    invariant = [m.name for m in chosen if m.monotone_invariant]
    not_invariant = [m.name for m in chosen if not m.monotone_invariant]
    text = "A strictly increasing change of the map (sharper or flatter, same order) leaves "
    text += (", ".join(invariant) or "none of the metrics") + " unchanged"
    if not_invariant:
        verb = "compares" if len(not_invariant) == 1 else "compare"
        text += (
            f"; it moves {', '.join(not_invariant)}, which {verb} how sharp maps are as much as "
            "where they point"
        )
    return text + " (docs/protocol.md, item 22)."


def trust_markdown(table: pd.DataFrame, metrics: Sequence[str], *, heading: str) -> str:
    """The section "Can these rankings be trusted?" of one table.

    Args:
        table: a :func:`trust_table`.
        metrics: the metrics the runs computed.
        heading: the section's Markdown heading line.
    """
    lines = [agreement_markdown(table, heading=heading).rstrip("\n"), ""]
    lines += [invariance_sentence(metrics), ""]
    kept = table[table["statistic"] == "temperature_kept"]
    if len(kept):
        variants = table[table["statistic"] == "temperature"]
        names = list(dict.fromkeys(variants["metric"]))
        by_pair = {(row.metric, row.other): row.verdict for row in variants.itertuples()}
        lines += [
            f"Temperature: each verdict of {_join(kept['metric'].unique())} again on the map "
            "min-max scaled and raised to a power (variants "
            + ", ".join(f"`{name}`" for name in names)
            + ", each tested in the table's Holm family with the plain statistic replaced). "
            f"{TEMPERATURE_MARK} marks a verdict that changes.",
            "",
            "| pair | metric | verdict | " + " | ".join(names) + " | kept |",
            "|---|---|---|" + "---|" * len(names) + "---|",
        ]
        for row in kept.itertuples():
            under = [by_pair.get((name, row.other), "–") for name in names]
            mark = "yes" if row.value == 1 else f"no {TEMPERATURE_MARK}"
            lines.append(
                f"| {row.other} | {row.metric} | {row.verdict} | "
                + " | ".join(under)
                + f" | {mark} |"
            )
        changed = int((kept["value"] == 0).sum())
        lines += ["", f"{changed} of {len(kept)} verdicts change with the temperature.", ""]
    sanity = table[table["statistic"] == "sanity"]
    if len(sanity):
        lines += [
            "Sanity (model-parameter randomisation): each explainer against the center baseline, "
            "whose map ignores the weights (MPRT 1, eMPRT 0); one Holm family. An explainer "
            "passes a check when it is significantly better than the center there.",
            "",
            "| explainer | check | difference [95 % CI] | n | verdict |",
            "|---|---|---|---|---|",
        ]
        for row in sanity.itertuples():
            difference = (
                "–"
                if np.isnan(row.value)
                else f"{row.value:+.3f} [{row.low:+.3f}, {row.high:+.3f}]"
            )
            lines.append(
                f"| {row.other} | {row.metric} | {difference} | {row.n} | {row.verdict} "
                f"({sanity_outcome(row.verdict)}) |"
            )
        lines.append("")
        if sanity["metric"].str.startswith("mprt").any():
            lines += [
                "n counts the items on which a check is defined: the MPRT correlation is undefined "
                "where a map is constant (the records' `mprt_undefined` counts those steps); n = 0 "
                "on `mprt_last` means the explainer's map of the fully randomised model was "
                "constant on every item.",
                "",
            ]
    return "\n".join(lines)


def _join(names: Sequence[str]) -> str:
    names = list(names)
    return " and ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else "".join(names)
