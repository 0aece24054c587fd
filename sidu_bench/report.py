"""Cross tables of finished run folders: ``python -m sidu_bench report RUN_DIR...``.

Everything comes from what the runs stored (``config.json``, ``summary.csv``, ``records.csv``);
no map or metric is recomputed. Rows are (data set, model), columns explainer x metric, each cell
the run's own summary value with its 95 % CI and n. Every pair of explainers of a row is compared
on the items both score (``report_pairs.csv``, :data:`PAIR_COLUMNS`), with the verdict rule of
``summary.md``: Holm-adjusted sign-flip tests, the family being all pairs x ranked metrics of one
(data set, model).

Runs share a table only if the ``protocol`` objects of their ``config.json`` agree (the package
version is shown, not compared; the input size may differ). ``allow_mixed_protocols`` lets
disagreeing runs in and marks the table.

The metrics, their directions and which are ranked come from the registered metric descriptions
(:func:`sidu_bench.metrics.summary_statistics`); the ranking rule is :func:`ranking_rule`.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sidu_bench.compare import read_summary
from sidu_bench.io import atomic_write_text
from sidu_bench.metrics import get_statistic, summary_statistics
from sidu_bench.runner.config import differing_fields, read_config
from sidu_bench.runner.figures import pyplot_or_none, save_png
from sidu_bench.runner.summary import (
    compare_pair,
    family_size,
    format_cell,
    mostly_singletons,
    per_class_singletons,
    with_verdicts,
)
from sidu_bench.stats import FAMILYWISE_ALPHA, VERDICT_BETTER, VERDICT_WORSE

log = logging.getLogger(__name__)

RECORDS_FILE = "records.csv"
PAIRS_FILE = "report_pairs.csv"
SECONDS = "seconds_per_image"
"""The cost column of the report (after the metrics; not ranked)."""
PAIR_COLUMNS = (
    "dataset",
    "model",
    "explainer_a",
    "explainer_b",
    "metric",
    "diff",
    "diff_ci_low",
    "diff_ci_high",
    "p",
    "p_holm",
    "verdict",
    "n",
)
"""Columns of ``report_pairs.csv``: one row per (data set, model, pair, ranked metric).

``diff`` is the mean per-item difference ``explainer_a - explainer_b`` with its paired bootstrap
CI; ``explainer_b`` (the earlier of the two in table order) plays the reference, so "better than
reference" means ``explainer_a`` is significantly better than ``explainer_b``.
"""
REPORT_COLUMNS = (
    "dataset",
    "model",
    "explainer",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "n",
    "rank",
    "run_dir",
    "sidu_bench_version",
    "protocol_version",
    "protocol_id",
    "mixed_protocols",
)
"""Columns of ``report.csv`` (long format, one row per cell)."""


def report_metrics() -> list[str]:
    """Metric columns of the report, in table order: the statistics it shows, then the cost.

    A per-class statistic ranked on a per-item one (the pointing game on its hit rate) comes
    after that per-item statistic, so the quantity its ranking rests on is shown with its CI.
    """
    names = []
    for statistic in summary_statistics():
        if statistic.in_report:
            if statistic.per_class and statistic.ranked_by is not None:
                names.append(statistic.ranked_by)
            names.append(statistic.name)
    return [*dict.fromkeys(names), SECONDS]


def ranked_metrics() -> dict[str, str]:
    """Report metric -> the per-item statistic of the paired comparisons it is ranked on."""
    return {
        statistic.name: statistic.ranking
        for statistic in summary_statistics()
        if statistic.in_report and statistic.ranking is not None
    }


def ranking_rule() -> str:
    """How ``rank`` is decided (written into ``report.md``)."""
    lower = " and ".join(s.label for s in summary_statistics() if not s.higher_is_better)
    direction = f"best first; lower is better for {lower}" if lower else "best first"
    return (
        "Per (data set, model) and metric, explainers are ordered by their summary mean "
        f"({direction}). Every pair is compared on the items both score "
        "by a two-sided paired sign-flip permutation test of the mean per-item difference, "
        "Holm-adjusted over all pairs x ranked metrics of the (data set, model) at family-wise "
        f"{FAMILYWISE_ALPHA}; one is significantly better than the other only when that adjusted "
        f'p is at most {FAMILYWISE_ALPHA} ("no significant difference" and "n too small" separate '
        "nothing). A rank boundary goes before position p only if every explainer before p is "
        "significantly better than every explainer from p on; an explainer's rank is 1 + the "
        "number of explainers above its boundary. So an explainer is ranked above another only if "
        "it is significantly better, and explainers that cannot be separated share a rank. The "
        "pointing game is ranked on per-item hits (its per-class mean is not a per-item "
        "quantity); the center-miss pointing game and seconds per image are not ranked. Every "
        f"pair's difference, CI, p, Holm p and verdict are in {PAIRS_FILE}."
    )


@dataclass(frozen=True)
class RunFolder:
    """What the report reads of one finished run folder."""

    path: Path
    config: dict[str, object]
    summary: pd.DataFrame
    records: pd.DataFrame

    @property
    def key(self) -> tuple[str, str]:
        """The (data set, model) row of the run."""
        return str(self.config.get("dataset")), str(self.config.get("model"))

    @property
    def protocol(self) -> dict[str, object]:
        """The run's protocol object."""
        return self.config["protocol"]

    @property
    def version(self) -> str:
        """The sidu-bench version that made the run ("unknown" when not recorded)."""
        versions = (self.config.get("environment") or {}).get("versions") or {}
        return str(versions.get("sidu-bench") or "unknown")


def expand_run_dirs(patterns: Sequence[str]) -> list[Path]:
    """Expand glob patterns the shell left unexpanded; plain paths are kept as given.

    Raises:
        FileNotFoundError: a pattern matches nothing.
    """
    paths: list[Path] = []
    for pattern in patterns:
        if not glob.has_magic(pattern):
            paths.append(Path(pattern))
            continue
        matches = sorted(glob.glob(pattern))
        if not matches:
            raise FileNotFoundError(f"no run folder matches {pattern!r}")
        paths += [Path(match) for match in matches]
    return list(dict.fromkeys(paths))


def load_run(run_dir: Path) -> RunFolder:
    """Read a finished run folder, with an error naming it when it is missing or corrupt."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist")
    config = read_config(run_dir)
    if config is None:
        raise FileNotFoundError(f"{run_dir} is not a run folder: it has no config.json")
    if not isinstance(config.get("protocol"), dict):
        raise ValueError(f"corrupt {run_dir / 'config.json'}: no 'protocol' object")
    return RunFolder(run_dir, config, read_summary(run_dir), _read_records(run_dir))


def _read_records(run_dir: Path) -> pd.DataFrame:
    path = run_dir / RECORDS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a finished run folder: {path} does not exist")
    try:
        records = pd.read_csv(path, dtype={"id": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ValueError(f"corrupt {path}: {error}") from error
    missing = {"id", "explainer"} - set(records.columns)
    if missing:
        raise ValueError(f"corrupt {path}: no {', '.join(sorted(missing))} column")
    return records


def protocol_id(protocol: dict[str, object]) -> str:
    """A short stable id of a protocol object (12 hex digits of its canonical JSON's SHA-256)."""
    text = json.dumps(protocol, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def protocol_mismatches(runs: Sequence[RunFolder]) -> list[str]:
    """One line per run whose protocol differs from the first run's, naming the fields."""
    first = runs[0]
    lines = []
    for run in runs[1:]:
        fields = [f"protocol.{name}" for name in differing_fields(first.protocol, run.protocol)]
        if fields:
            lines.append(f"{run.path} differs from {first.path} in {', '.join(fields)}")
    return lines


def _check_protocols(runs: Sequence[RunFolder], *, allow_mixed: bool) -> list[str]:
    mismatches = protocol_mismatches(runs)
    if mismatches and not allow_mixed:
        raise ValueError(
            "runs with different protocols cannot share a table:\n  "
            + "\n  ".join(mismatches)
            + "\n(--allow-mixed-protocols builds it anyway, marked as mixed)"
        )
    for line in mismatches:
        log.warning("mixed protocols: %s", line)
    return mismatches


def _row_records(group: Sequence[RunFolder]) -> pd.DataFrame:
    """The records of one (data set, model) row, from all its run folders."""
    return pd.concat([run.records for run in group], ignore_index=True)


def _group(runs: Sequence[RunFolder]) -> dict[tuple[str, str], list[RunFolder]]:
    """Runs by (data set, model); an explainer may come from one run of its row only."""
    groups: dict[tuple[str, str], list[RunFolder]] = {}
    owner: dict[tuple[str, str, str], Path] = {}
    for run in runs:
        groups.setdefault(run.key, []).append(run)
        for explainer in run.summary.index:
            cell = (*run.key, str(explainer))
            if cell in owner:
                raise ValueError(
                    f"explainer {explainer!r} of {run.key[0]} x {run.key[1]} is in two run "
                    f"folders: {owner[cell]} and {run.path}"
                )
            owner[cell] = run.path
    return groups


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


def pair_comparisons(records: pd.DataFrame, explainers: list[str], *, seed: int) -> pd.DataFrame:
    """Every pair of ``explainers`` on every ranked metric, as one Holm family.

    For each pair the earlier explainer in ``explainers`` is the reference: the comparison is
    ``later - earlier`` (so with SIDU first, its rows equal ``summary.md``'s before the Holm step).

    Args:
        records: the row's ``records.csv`` rows.
        explainers: the row's explainers in table order.
        seed: the runs' seed.

    Returns:
        The :func:`sidu_bench.runner.summary.with_verdicts` table (``explainer``,
        ``reference``, ``metric``, ``difference``, ..., ``p_holm``, ``verdict``).
    """
    rows = [
        compare_pair(records, later, earlier, metric, seed=seed)
        for position, earlier in enumerate(explainers)
        for later in explainers[position + 1 :]
        for metric in ranked_metrics().values()
    ]
    return with_verdicts(pd.DataFrame(rows))


def rankings(pairs: pd.DataFrame, summary: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Rank of every explainer per ranked report metric (:func:`ranking_rule`).

    A per-class metric ranked on a per-item statistic (the pointing game on its hit rate) and
    that statistic get the same ranks.

    Args:
        pairs: :func:`pair_comparisons` of the row.
        summary: the row's summary, indexed by explainer.
    """
    better = set()
    for row in pairs.itertuples() if len(pairs) else ():
        if row.verdict == VERDICT_BETTER:
            better.add((row.metric, row.explainer, row.reference))
        elif row.verdict == VERDICT_WORSE:
            better.add((row.metric, row.reference, row.explainer))
    result = {}
    for metric, paired in ranked_metrics().items():
        means = summary[paired].astype(float).dropna()
        sign = 1.0 if get_statistic(paired).higher_is_better else -1.0
        order = sorted(means.index, key=lambda label, m=means: (-sign * m[label], str(label)))
        wins = {(winner, loser) for name, winner, loser in better if name == paired}
        result[metric] = rank_groups([str(label) for label in order], wins)
        result.setdefault(paired, result[metric])
    return result


def run_seed(run: RunFolder) -> int:
    """The seed of a run's statistics (what ``summary.csv`` used).

    ``config.json``'s ``seed``, else that of its ``statistics`` object (protocol version 2),
    else the protocol's ``statistics`` (version 1), else 0.
    """
    candidates = (
        run.config.get("seed"),
        _mapping(run.config.get("statistics")).get("seed"),
        _mapping(run.protocol.get("statistics")).get("seed"),
    )
    for value in candidates:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return 0


def _mapping(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _cells(run: RunFolder, ranks: dict[str, dict[str, int]]) -> list[dict[str, object]]:
    rows = []
    for explainer, summary in run.summary.iterrows():
        for metric in report_metrics():
            if metric == SECONDS:
                low = high = float("nan")
                n = summary["n_images"]
            else:
                low, high = summary[f"{metric}_ci_low"], summary[f"{metric}_ci_high"]
                n = summary[f"{metric}_n"]
            rows.append(
                {
                    "dataset": run.key[0],
                    "model": run.key[1],
                    "explainer": explainer,
                    "metric": metric,
                    "value": summary[metric],
                    "ci_low": low,
                    "ci_high": high,
                    "n": int(n),
                    "rank": ranks.get(metric, {}).get(str(explainer)),
                    "run_dir": str(run.path),
                    "sidu_bench_version": run.version,
                    "protocol_version": run.protocol.get("protocol_version"),
                    "protocol_id": protocol_id(run.protocol),
                }
            )
    return rows


def report_table(runs: Sequence[RunFolder], *, mixed: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The long-format report and its pairs.

    Returns:
        ``(table, pairs)``: one row per (data set, model, explainer, metric) cell
        (:data:`REPORT_COLUMNS`), and one row per (data set, model, pair, ranked metric)
        (:data:`PAIR_COLUMNS`).
    """
    rows = []
    pair_frames = []
    for (dataset, model), group in _group(runs).items():
        records = _row_records(group)
        summary = pd.concat([run.summary for run in group])
        explainers = [str(label) for label in summary.index]
        pairs = pair_comparisons(
            records[records["explainer"].isin(explainers)], explainers, seed=run_seed(group[0])
        )
        ranks = rankings(pairs, summary)
        for run in group:
            rows += _cells(run, ranks)
        pair_frames.append(pairs.assign(dataset=dataset, model=model))
    table = pd.DataFrame(rows, columns=REPORT_COLUMNS[:-1])
    table["rank"] = table["rank"].astype("Int64")
    table["mixed_protocols"] = mixed
    return table, _pairs_table(pair_frames)


def _pairs_table(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [frame for frame in frames if len(frame)]
    if not frames:
        return pd.DataFrame(columns=PAIR_COLUMNS)
    names = {
        "explainer": "explainer_a",
        "reference": "explainer_b",
        "difference": "diff",
        "ci_low": "diff_ci_low",
        "ci_high": "diff_ci_high",
    }
    return pd.concat(frames, ignore_index=True).rename(columns=names)[list(PAIR_COLUMNS)]


def _flatten(protocol: dict[str, object], prefix: str = "") -> list[str]:
    lines = []
    for key, value in protocol.items():
        if isinstance(value, dict):
            lines += _flatten(value, f"{prefix}{key}.")
        else:
            lines.append(f"- `{prefix}{key}`: {value}")
    return lines


def _header(runs: Sequence[RunFolder], mismatches: Sequence[str]) -> list[str]:
    lines = ["# sidu-bench report", ""]
    if mismatches:
        lines += ["> **WARNING: mixed protocols** — these runs do not share one protocol, so the"]
        lines += ["> table compares numbers that were not measured the same way:", ">"]
        lines += [f"> - {line}" for line in mismatches]
        lines.append("")
    versions = sorted({run.version for run in runs})
    lines += [f"- **sidu-bench versions**: {', '.join(versions)}"]
    ids = sorted({protocol_id(run.protocol) for run in runs})
    lines += [f"- **protocol id(s)**: {', '.join(ids)}", "", "## Protocol", ""]
    lines += _flatten(runs[0].protocol)
    lines += ["", "## Run folders", ""]
    lines += [
        "Device and forward backend are environment, not protocol (they change results only "
        "within float tolerance), so runs that differ in them share a table; they are shown here.",
        "",
        "| run folder | data set | model | sidu-bench | protocol id | device | backend |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        environment = run.config.get("environment") or {}
        device = environment.get("device_name", "")
        kind = run.config.get("device") or environment.get("device") or ""
        backend = (environment.get("backend") or {}).get("name", "torch (protocol 1)")
        lines.append(
            f"| {run.path} | {run.key[0]} | {run.key[1]} | {run.version} | "
            f"{protocol_id(run.protocol)} | {kind} {device} | {backend} |"
        )
    return lines


def singleton_rows(runs: Sequence[RunFolder]) -> dict[tuple[str, str], dict[str, tuple[int, int]]]:
    """Per (data set, model): the per-class means with one scored item in most classes.

    Each maps to (classes with a single scored item, classes with any), as ``summary.md``
    counts them (:func:`sidu_bench.runner.summary.mostly_singletons`); such a mean weighs single
    items and has no CI, so the report marks it and points to the per-item statistic.
    """
    weak = {}
    for key, group in _group(runs).items():
        counts = per_class_singletons(_row_records(group))
        weak[key] = {metric: pair for metric, pair in counts.items() if mostly_singletons(*pair)}
    return weak


def _metric_section(
    table: pd.DataFrame, metric: str, weak: dict[tuple[str, str], dict[str, tuple[int, int]]]
) -> list[str]:
    part = table[table["metric"] == metric]
    explainers = list(dict.fromkeys(part["explainer"]))
    if metric == SECONDS:
        direction, fmt = "mean seconds per image; n = images", "{:.3g}"
    else:
        better = get_statistic(metric).higher_is_better
        direction, fmt = ("higher" if better else "lower") + " is better", "{:.3f}"
    notes = []
    lines = ["", f"### {metric} ({direction})", ""]
    lines.append("| data set | model | " + " | ".join(explainers) + " |")
    lines.append("|---|---|" + "---|" * len(explainers))
    for (dataset, model), row in part.groupby(["dataset", "model"], sort=False):
        by_explainer = row.set_index("explainer")
        cells = []
        for label in explainers:
            if label not in by_explainer.index:
                cells.append("")
                continue
            cell = by_explainer.loc[label]
            cells.append(
                format_cell(cell["value"], cell["ci_low"], cell["ci_high"], cell["n"], fmt.format)
            )
        counts = weak.get((dataset, model), {}).get(metric)
        if counts is not None:
            cells = [f"{cell} ‡" if cell != "–" else cell for cell in cells]
            notes.append(f"{dataset} × {model}: {counts[0]} of {counts[1]} classes")
        lines.append(f"| {dataset} | {model} | " + " | ".join(cells) + " |")
    if notes:
        headline = get_statistic(metric).ranked_by
        lines += [
            "",
            "‡ a per-class mean whose classes mostly hold a single scored item "
            f"({'; '.join(notes)}): it weighs single items and has no CI"
            + (f", so read {headline} above, on which it is ranked." if headline else "."),
        ]
    return lines


def _ranking_section(table: pd.DataFrame, pairs: pd.DataFrame) -> list[str]:
    families = [
        f"{dataset} × {model}: m = {family_size(part)}"
        for (dataset, model), part in pairs.groupby(["dataset", "model"], sort=False)
    ]
    lines = ["", "## Rankings", "", "Paired comparisons on the same items (rule below); every"]
    lines += [f"pair's difference, CI, p, Holm p and verdict are in `{PAIRS_FILE}`."]
    if families:
        lines += [f"Holm families (all pairs x ranked metrics): {'; '.join(families)}."]
    lines += ["", "| data set | model | metric | ranking |", "|---|---|---|---|"]
    ranked = table[table["rank"].notna()].sort_values("rank", kind="stable")
    for (dataset, model), row in ranked.groupby(["dataset", "model"], sort=False):
        for metric, paired in ranked_metrics().items():
            part = row[row["metric"] == metric]
            order = " · ".join(f"{cell.rank}. {cell.explainer}" for cell in part.itertuples())
            name = metric if paired == metric else f"{metric} (on {paired})"
            lines.append(f"| {dataset} | {model} | {name} | {order} |")
    return lines


def report_markdown(
    runs: Sequence[RunFolder],
    table: pd.DataFrame,
    pairs: pd.DataFrame,
    mismatches: Sequence[str],
) -> str:
    """``report.md``: header (protocol, versions, runs), the cross tables and the rankings."""
    lines = _header(runs, mismatches)
    lines += ["", "## Cross tables", "", "Mean [95 % bootstrap CI] (n scored), from each run's"]
    lines += ["own summary.csv."]
    weak = singleton_rows(runs)
    for metric in report_metrics():
        lines += _metric_section(table, metric, weak)
    lines += _ranking_section(table, pairs)
    lines += ["", f"Ranking rule: {ranking_rule()}"]
    return "\n".join(lines) + "\n"


def write_figure(table: pd.DataFrame, path: Path) -> Path | None:
    """Insertion AUC against seconds per image (log x), one subplot per data set.

    Colour is the explainer, marker the model; one legend of each sits beside the plots, so no
    point is hidden under it. Returns the file, or ``None`` when matplotlib is missing (a warning
    is logged).
    """
    plt = pyplot_or_none()
    if plt is None:
        log.warning("matplotlib is not installed (pip install 'sidu-bench[plot]'): no figure")
        return None
    wide = table.pivot_table(
        index=["dataset", "model", "explainer"], columns="metric", values="value", sort=False
    ).reset_index()
    datasets = list(dict.fromkeys(wide["dataset"]))
    colours = {name: f"C{i % 10}" for i, name in enumerate(dict.fromkeys(wide["explainer"]))}
    markers = dict(zip(dict.fromkeys(wide["model"]), "osD^vP*Xh<>", strict=False))
    figure, axes = plt.subplots(
        1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False, sharey=True
    )
    for axis, dataset in zip(axes[0], datasets, strict=True):
        for row in wide[wide["dataset"] == dataset].itertuples():
            seconds = row.seconds_per_image if row.seconds_per_image > 0 else np.nan
            axis.scatter(
                seconds,
                row.insertion_auc,
                color=colours[row.explainer],
                marker=markers.get(row.model, "o"),
            )
        axis.set_xscale("log")
        axis.set_title(dataset)
        axis.set_xlabel("seconds per image (log)")
        axis.grid(alpha=0.3)
    axes[0, 0].set_ylabel("insertion AUC")
    explainer_handles = [
        plt.Line2D([], [], color=colour, marker="o", linestyle="", label=name)
        for name, colour in colours.items()
    ]
    model_handles = [
        plt.Line2D([], [], color="0.4", marker=marker, linestyle="", label=name)
        for name, marker in markers.items()
    ]
    figure.legend(
        handles=explainer_handles, title="explainer", loc="upper left", bbox_to_anchor=(1.0, 0.95)
    )
    figure.legend(
        handles=model_handles, title="model", loc="lower left", bbox_to_anchor=(1.0, 0.05)
    )
    figure.suptitle("faithfulness vs cost")
    save_png(figure, path)
    plt.close(figure)
    return path


def build_report(
    run_dirs: Sequence[Path], *, out: Path, allow_mixed_protocols: bool = False
) -> list[Path]:
    """Write ``report.csv``, ``report.md``, ``report_pairs.csv`` and the figure into ``out``.

    Args:
        run_dirs: finished run folders.
        out: output folder (created if needed).
        allow_mixed_protocols: build the table even if the runs' protocols disagree (marked).

    Returns:
        The files written.

    Raises:
        FileNotFoundError: a run folder or one of its files is missing.
        ValueError: a file is corrupt, protocols disagree (unless allowed), or an explainer of a
            (data set, model) row comes from two run folders.
    """
    if not run_dirs:
        raise ValueError("report needs at least one run folder")
    runs = [load_run(path) for path in run_dirs]
    mismatches = _check_protocols(runs, allow_mixed=allow_mixed_protocols)
    table, pairs = report_table(runs, mixed=bool(mismatches))
    out = Path(out)
    written = [out / "report.csv", out / "report.md", out / PAIRS_FILE]
    markdown = report_markdown(runs, table, pairs, mismatches)
    atomic_write_text(written[0], table.to_csv(index=False))
    atomic_write_text(written[1], markdown)
    atomic_write_text(written[2], pairs.to_csv(index=False))
    figure = write_figure(table, out / "faithfulness_vs_cost.png")
    return written + ([figure] if figure is not None else [])
