r"""LaTeX of the report's cross tables (``report --latex``): booktabs tables for a paper.

:func:`report_latex` turns the long-format report (``report.csv``) and its pairs
(``report_pairs.csv``) into a fragment to ``\input``: one booktabs table per ranked per-item
statistic, rows (data set, model), columns the explainers. Each cell holds the mean, with
its 95 % bootstrap CI on the line below; in each row the best mean is bold, those the paired
tests do not separate from it are underlined, and a significant difference from the reference
explainer (SIDU) is marked with an arrow. :func:`standalone_latex` wraps the fragment in a
complete document that needs no package beyond ``booktabs``; :func:`escape_latex` makes any
label print literally. Nothing here computes a statistic: means, CIs, n and verdicts are read
from the report's tables.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence, Set

import pandas as pd

from sidu_bench.metrics import get_statistic
from sidu_bench.stats import FAMILYWISE_ALPHA, VERDICT_BETTER, VERDICT_WORSE
from sidu_bench.tables.statistics import ranked_metrics, reference_explainer

BETTER_MARK = "$^{\\uparrow}$"
"""Follows the mean of an explainer significantly better than the row's reference."""
WORSE_MARK = "$^{\\downarrow}$"
"""Follows the mean of an explainer significantly worse than the row's reference."""
MISSING = "--"
"""A cell without a number (nothing scored, or the explainer did not run on that row)."""
REFERENCE_SUFFIX = " (ref.)"
TEMPERATURE_MARK = "\\S"
"""Follows a verdict against the reference that changes with the map's temperature."""
"""Appended to the header of a column that is the reference of a row."""

_ESCAPES = {
    "\\": "\\textbackslash{}",
    "{": "\\{",
    "}": "\\}",
    "$": "\\$",
    "&": "\\&",
    "#": "\\#",
    "^": "\\textasciicircum{}",
    "_": "\\_",
    "%": "\\%",
    "~": "\\textasciitilde{}",
    "<": "\\textless{}",
    ">": "\\textgreater{}",
    "|": "\\textbar{}",
    "[": "{[}",
    "]": "{]}",
}
_LIGATURES = {"-": "-", "`": "`", "'": "'", "!": "`", "?": "`"}
"""A character and the next one that would form a ligature with it (``--``, ``''``, ``!```)."""
_TIE_TOLERANCE = 1e-12
"""Means this close (relative) tie for the best of a row."""


def escape_latex(text: str) -> str:
    r"""``text`` as LaTeX that prints it literally in text mode (any font encoding).

    Escapes ``\ { } $ & # ^ _ % ~`` and ``< > |`` (which the default OT1 encoding would print
    as other glyphs), braces ``[`` and ``]`` (so a cell that starts with one is not read as the
    optional argument of the preceding ``\\``) and breaks the ligatures ``--``, ``---``,
    ``````, ``''``, ``!``` and ``?```. Other characters, ``:`` and ``=`` among them, stay as
    they are.

    Args:
        text: a label, e.g. an explainer, data set or model name.

    Returns:
        The escaped text.

    Example:
        >>> print(escape_latex("my_expl%2:a=1 & b~c"))
        my\_expl\%2:a=1 \& b\textasciitilde{}c
    """
    out = []
    for position, char in enumerate(text):
        out.append(_ESCAPES.get(char, char))
        following = text[position + 1 : position + 2]
        if following and _LIGATURES.get(char) == following:
            out.append("{}")
    return "".join(out)


def _number(value: float) -> str:
    """3 decimals, a math minus for negatives, :data:`MISSING` for NaN."""
    if value is None or math.isnan(value):
        return MISSING
    text = f"{value:.3f}"
    return f"$-${text[1:]}" if text.startswith("-") else text


def _n_cell(counts: Sequence[int]) -> str:
    """The row's n: one number, or the range ``lo--hi`` when the explainers differ."""
    if not counts:
        return MISSING
    low, high = min(counts), max(counts)
    return str(low) if low == high else f"{low}--{high}"


def _is_true(value: object) -> bool:
    """A ``mixed_protocols`` cell as a bool (``True`` or the text ``"True"``)."""
    return value is True or str(value).strip().lower() == "true"


def _verdicts(pairs: pd.DataFrame) -> dict[tuple[str, ...], str]:
    """``(data set, model, metric, explainer, reference) -> verdict`` of every stored pair."""
    keys = ("dataset", "model", "metric", "explainer", "reference", "verdict")
    if pairs is None or not len(pairs) or not set(keys) <= set(pairs.columns):
        return {}
    columns = [pairs[key].astype(str).tolist() for key in keys]
    return {tuple(row[:-1]): row[-1] for row in zip(*columns, strict=True)}


def _verdict(
    verdicts: Mapping[tuple[str, ...], str], row: tuple[str, str], metric: str, a: str, b: str
) -> str | None:
    """The verdict of ``a`` vs ``b`` (a pair stored as ``(b, a)`` flipped), None if not stored."""
    found = verdicts.get((*row, metric, a, b))
    if found is not None:
        return found
    found = verdicts.get((*row, metric, b, a))
    if found == VERDICT_BETTER:
        return VERDICT_WORSE
    if found == VERDICT_WORSE:
        return VERDICT_BETTER
    return found


def _separated(verdict: str | None) -> bool:
    return verdict in (VERDICT_BETTER, VERDICT_WORSE)


def _row_cells(
    row: pd.DataFrame,
    key: tuple[str, str],
    metric: str,
    explainers: Sequence[str],
    verdicts: Mapping[tuple[str, ...], str],
    unstable: Set[tuple[str, str, str, str, str]] = frozenset(),
) -> tuple[list[str], list[str], str | None]:
    """The mean line's and the CI line's cells of one (data set, model), and its reference."""
    cells = {str(cell.explainer): cell for cell in row.itertuples()}
    means = {label: float(cell.value) for label, cell in cells.items() if not pd.isna(cell.value)}
    higher = get_statistic(metric).higher_is_better
    best: list[str] = []
    if means:
        top = max(means.values()) if higher else min(means.values())
        best = [
            label
            for label, mean in means.items()
            if math.isclose(mean, top, rel_tol=_TIE_TOLERANCE, abs_tol=_TIE_TOLERANCE)
        ]
    reference = reference_explainer(list(cells))
    mean_line, ci_line = [], []
    for label in explainers:
        if label not in means:
            mean_line.append(MISSING)
            ci_line.append("")
            continue
        text = _number(means[label])
        if label in best:
            text = f"\\textbf{{{text}}}"
        elif any(
            (found := _verdict(verdicts, key, metric, label, other)) is not None
            and not _separated(found)
            for other in best
        ):
            text = f"\\underline{{{text}}}"
        if reference is not None and label != reference:
            against = _verdict(verdicts, key, metric, label, reference)
            text += {VERDICT_BETTER: BETTER_MARK, VERDICT_WORSE: WORSE_MARK}.get(against or "", "")
            if {(*key, label, reference, metric), (*key, reference, label, metric)} & unstable:
                text += TEMPERATURE_MARK
        mean_line.append(text)
        cell = cells[label]
        low, high = float(cell.ci_low), float(cell.ci_high)
        interval = (
            MISSING if math.isnan(low) or math.isnan(high) else f"[{_number(low)}, {_number(high)}]"
        )
        ci_line.append(f"{{\\scriptsize {interval}}}")
    return mean_line, ci_line, reference


def _caption(
    metric: str,
    part: pd.DataFrame,
    also_ranks: Sequence[str],
    *,
    referenced: bool,
    tempered: bool = False,
) -> tuple[str, str]:
    """The short (list of tables) and the full caption of one metric's table."""
    statistic = get_statistic(metric)
    direction = "higher is better" if statistic.higher_is_better else "lower is better"
    name = escape_latex(metric)
    title = f" ({escape_latex(statistic.label)})" if statistic.label != metric else ""
    short = f"{name}{title}, {direction}"
    sentences = [
        f"{name}{title}, {direction}: mean over the items scored, its 95\\,\\% "
        "percentile-bootstrap CI below; n: items scored (a range when the explainers differ); "
        f"{MISSING}: nothing scored.",
        "Bold: the best mean of the row; underlined: not significantly different from it"
        + (
            f"; {BETTER_MARK}/{WORSE_MARK}: significantly better/worse than the row's "
            "reference explainer, marked (ref.)."
            if referenced
            else "."
        ),
        "Significance: two-sided paired sign-flip permutation tests, Holm-adjusted over all "
        "pairs of explainers $\\times$ ranked metrics of each data set $\\times$ model row, "
        f"family-wise $\\alpha = {FAMILYWISE_ALPHA}$.",
    ]
    if tempered:
        sentences.append(
            f"{TEMPERATURE_MARK}: that verdict changes when the map is min-max scaled and raised "
            "to 1/2 or 2 (the report's trust section)."
        )
    if also_ranks:
        ranked = ", ".join(escape_latex(other) for other in also_ranks)
        sentences.append(f"The report ranks {ranked} on this statistic.")
    id_column = next((c for c in ("metric_protocol_id", "protocol_id") if c in part.columns), None)
    if id_column is not None:
        ids = sorted({str(value) for value in part[id_column].dropna()})
        mixed = "mixed_protocols" in part.columns and any(
            _is_true(value) for value in part["mixed_protocols"]
        )
        if ids or mixed:
            listed = ", ".join(escape_latex(value) for value in ids) or MISSING
            noun = "Protocol ids" if len(ids) > 1 else "Protocol id"
            sentences.append(f"{noun}: {listed}" + (" (mixed protocols)." if mixed else "."))
    return short, " ".join(sentences)


def _metric_table(
    part: pd.DataFrame,
    metric: str,
    verdicts: Mapping[tuple[str, ...], str],
    also_ranks: Sequence[str],
    unstable: Set[tuple[str, str, str, str, str]] = frozenset(),
) -> list[str]:
    """One metric's ``table`` environment."""
    explainers = [str(label) for label in dict.fromkeys(part["explainer"].astype(str))]
    body, references = [], set()
    groups = part.groupby([part["dataset"].astype(str), part["model"].astype(str)], sort=False)
    for position, ((dataset, model), row) in enumerate(groups):
        mean_line, ci_line, reference = _row_cells(
            row, (dataset, model), metric, explainers, verdicts, unstable
        )
        references.add(reference)
        counts = [int(n) for n in row["n"] if not pd.isna(n)]
        if position:
            body.append("\\addlinespace")
        body.append(
            " & ".join([escape_latex(dataset), escape_latex(model), _n_cell(counts), *mean_line])
            + " \\\\"
        )
        body.append(" & ".join(["", "", "", *ci_line]) + " \\\\")
    headers = [
        escape_latex(label) + (REFERENCE_SUFFIX if label in references else "")
        for label in explainers
    ]
    references.discard(None)
    tempered = any(entry[4] == metric for entry in unstable)
    short, caption = _caption(
        metric, part, also_ranks, referenced=bool(references), tempered=tempered
    )
    return [
        "\\begin{table}[htbp]",
        "\\centering",
        f"\\caption[{short}]{{{caption}}}",
        f"\\label{{tab:sidu-bench-{metric.replace('_', '-')}}}",
        f"\\begin{{tabular}}{{llr{'c' * len(explainers)}}}",
        "\\toprule",
        " & ".join(["data set", "model", "n", *headers]) + " \\\\",
        "\\midrule",
        *body,
        "\\bottomrule",
        "\\end{tabular}",
        "\\end{table}",
    ]


def report_latex(
    table: pd.DataFrame,
    pairs: pd.DataFrame,
    metrics: Sequence[str],
    unstable: Set[tuple[str, str, str, str, str]] = frozenset(),
) -> str:
    r"""The report's cross tables as a LaTeX fragment to ``\input`` (needs ``booktabs``).

    One booktabs ``table`` per ranked per-item statistic of ``metrics`` (the distinct values of
    :func:`~sidu_bench.tables.statistics.ranked_metrics`, so the pointing game appears once, as
    its hit rate; no cost table); a statistic without rows in ``table`` gets none. Rows are the
    (data set, model) pairs and columns the explainers, both in table order. A cell is the mean
    (3 decimals) over its CI ``[low, high]`` in ``\scriptsize``; ``--`` when there is no mean.
    In each row the best mean (by the statistic's direction; all tied ones) is bold and every
    explainer whose stored pair with a best one has a verdict other than better/worse is
    underlined. When the row has a reference explainer
    (:func:`~sidu_bench.tables.statistics.reference_explainer`), an explainer significantly
    better than it gets :data:`BETTER_MARK`, one significantly worse :data:`WORSE_MARK` (a
    pair stored as ``(reference, explainer)`` read flipped); the reference's header ends ``(ref.)``.

    Args:
        table: the long-format report (``report.csv``: ``dataset``, ``model``, ``explainer``,
            ``metric``, ``value``, ``ci_low``, ``ci_high``, ``n``, and for the caption
            ``mixed_protocols`` and ``metric_protocol_id``, else ``protocol_id``).
        pairs: the report's all-pairs comparisons (``report_pairs.csv``), verdicts read as
            ``explainer`` vs ``reference``.
        metrics: the registered metric names the runs computed.
        unstable: ``(data set, model, explainer, reference, statistic)`` of the verdicts that
            change with the map's temperature (the trust section): their mark is followed by
            :data:`TEMPERATURE_MARK`.

    Returns:
        The fragment (a comment line when there is no table).
    """
    verdicts = _verdicts(pairs)
    ranked = ranked_metrics(metrics)
    lines = ["% sidu-bench report tables (sidu_bench.tables.latex); needs \\usepackage{booktabs}."]
    for metric in dict.fromkeys(ranked.values()):
        part = table[table["metric"].astype(str) == metric]
        if not len(part):
            continue
        also = [name for name, paired in ranked.items() if paired == metric and name != metric]
        lines += ["", *_metric_table(part, metric, verdicts, also, unstable)]
    return "\n".join(lines) + "\n"


def standalone_latex(fragment: str = "report.tex") -> str:
    r"""A complete landscape A4 document that inputs ``fragment`` (booktabs only).

    The page is set without ``geometry``: pdfTeX's page size follows the landscape paper and
    the text block is widened to the page less half-inch margins, so wide tables fit.

    Args:
        fragment: the path of the fragment from the document's folder (as ``\input`` reads it).

    Returns:
        The document's source.
    """
    return "\n".join(
        [
            "\\documentclass[landscape,a4paper,10pt]{article}",
            "\\usepackage{booktabs}",
            "\\ifdefined\\pdfpagewidth",
            "  \\pdfpagewidth=\\paperwidth",
            "  \\pdfpageheight=\\paperheight",
            "\\fi",
            "\\setlength{\\oddsidemargin}{-0.5in}",
            "\\setlength{\\evensidemargin}{-0.5in}",
            "\\setlength{\\textwidth}{\\paperwidth}",
            "\\addtolength{\\textwidth}{-1in}",
            "\\setlength{\\topmargin}{-0.5in}",
            "\\setlength{\\headheight}{0pt}",
            "\\setlength{\\headsep}{0pt}",
            "\\setlength{\\textheight}{\\paperheight}",
            "\\addtolength{\\textheight}{-1.5in}",
            "\\pagestyle{empty}",
            "\\begin{document}",
            f"\\input{{{fragment}}}",
            "\\end{document}",
            "",
        ]
    )
