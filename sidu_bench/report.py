"""Cross tables of finished run folders: ``python -m sidu_bench report RUN_DIR...``.

Everything comes from what the runs stored (their configuration, summary and records, read
through :class:`~sidu_bench.runner.RunFolder`); no map or metric is recomputed. Rows are
(data set, model), columns explainer x metric, each cell the run's own summary value with its
95 % CI and n. Every pair of explainers of a row is compared on the items both score
(``report_pairs.csv``: the pair columns of :data:`sidu_bench.tables.statistics.PAIR_COLUMNS`
after ``dataset`` and ``model``), with the verdict rule of ``summary.md``: Holm-adjusted
sign-flip tests, the family being all pairs x ranked metrics of one (data set, model).

Runs share a table only if their protocols agree on the run-wide fields and on the entries of
the metrics both computed (:func:`sidu_bench.runner.config.protocol_differences`; the package
version is shown, not compared; the input size may differ). ``allow_mixed_protocols`` lets
disagreeing runs in and marks the table. Statistics and Markdown: :mod:`sidu_bench.tables`.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sidu_bench.html_report import write_html_report
from sidu_bench.io import atomic_write_bytes, check_writable_folder, escape_cell
from sidu_bench.metrics import list_metrics, registered_metrics
from sidu_bench.runner.config import RunConfig, check_protocols
from sidu_bench.runner.figures import png_bytes, pyplot_or_none
from sidu_bench.runner.folder import RunFolder
from sidu_bench.tables.agreement import spearman_frame
from sidu_bench.tables.latex import report_latex, standalone_latex
from sidu_bench.tables.markdown import report_markdown
from sidu_bench.tables.statistics import (
    PAIR_COLUMNS,
    SECONDS,
    all_pairs,
    compare_pairs,
    ranked_metrics,
    rankings,
    report_metrics,
    weak_per_class,
)
from sidu_bench.tables.trust import TRUST_COLUMNS, trust_markdown, trust_table, unstable_verdicts

log = logging.getLogger(__name__)

PAIRS_FILE = "report_pairs.csv"
AGREEMENT_FILE = "report_agreement.csv"
SHORT_NAMES = {
    "pointing_game_hit_rate": "pointing hits",
    "energy_pointing_game": "energy",
    "region_auc": "region AUC",
    "insertion_auc": "insertion",
    "deletion_auc": "deletion",
    "road": "ROAD",
}
"""The agreement figure's axis labels of the built-in metrics."""
LATEX_FILE = "report.tex"
LATEX_STANDALONE = "report_standalone.tex"
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
    "metric_protocol_id",
    "mixed_protocols",
)
"""Columns of ``report.csv`` (long format, one row per cell)."""


@dataclass(frozen=True)
class ReportRun:
    """What the report reads of one finished run folder."""

    folder: RunFolder
    content: dict[str, object]
    config: RunConfig
    summary: pd.DataFrame
    records: pd.DataFrame

    @property
    def key(self) -> tuple[str, str]:
        """The (data set, model) row of the run."""
        return self.config.dataset, self.config.model

    @property
    def protocol(self) -> dict[str, object]:
        """The run's protocol object."""
        return self.content["protocol"]

    @property
    def version(self) -> str:
        """The sidu-bench version that made the run ("unknown" when not recorded)."""
        versions = (self.content.get("environment") or {}).get("versions") or {}
        return str(versions.get("sidu-bench") or "unknown")

    def description(self) -> dict[str, object]:
        """The run's line in the report header (folder, versions, device, backend)."""
        environment = self.content.get("environment") or {}
        return {
            "path": self.folder.path,
            "dataset": self.key[0],
            "model": self.key[1],
            "version": self.version,
            "protocol_id": protocol_id(self.protocol),
            "device": f"{self.config.device} {environment.get('device_name', '')}",
            "backend": (environment.get("backend") or {}).get("name", "unknown"),
        }


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


def load_run(run_dir: Path) -> ReportRun:
    """Read a finished run folder, with an error naming it when it is missing or corrupt."""
    folder = RunFolder(run_dir)
    config = folder.run_config()
    records = folder.records(config.metrics)
    if records.empty:
        raise ValueError(f"{folder} holds no records (every item was left out?): nothing to report")
    return ReportRun(folder, folder.config(), config, folder.summary(), records)


def protocol_id(protocol: dict[str, object]) -> str:
    """A short stable id of a protocol object (12 hex digits of its canonical JSON's SHA-256)."""
    text = json.dumps(protocol, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def metric_protocol_id(
    protocol: dict[str, object], computed: Sequence[str], metric: str | None
) -> str:
    """The id of the protocol one metric's numbers were measured under.

    :func:`protocol_id` of the run-wide fields and ``metric``'s own entry, leaving out the
    entries of the run's other metrics (``computed``): two runs that computed different sets of
    metrics share it on each metric they share, exactly when the report's protocol check would
    let them share that metric's table. ``metric`` ``None``: the run-wide fields alone (the
    seconds per image).
    """
    others = set(computed) - {metric}
    return protocol_id({key: value for key, value in protocol.items() if key not in others})


def statistic_owner(statistic: str) -> str | None:
    """The registered metric a summary statistic belongs to (``None``: seconds per image)."""
    for metric in registered_metrics():
        if any(candidate.name == statistic for candidate in metric.statistics):
            return metric.name
    return None


def _group(runs: Sequence[ReportRun]) -> dict[tuple[str, str], list[ReportRun]]:
    """Runs by (data set, model); an explainer may come from one run of its row only."""
    groups: dict[tuple[str, str], list[ReportRun]] = {}
    owner: dict[tuple[str, str, str], RunFolder] = {}
    for run in runs:
        groups.setdefault(run.key, []).append(run)
        for explainer in run.summary.index:
            cell = (*run.key, str(explainer))
            if cell in owner:
                raise ValueError(
                    f"explainer {explainer!r} of {run.key[0]} x {run.key[1]} is in two run "
                    f"folders: {owner[cell]} and {run.folder}"
                )
            owner[cell] = run.folder
    return groups


def computed_metrics(runs: Sequence[ReportRun]) -> list[str]:
    """The registered metrics any of ``runs`` computed, in table order."""
    return [name for name in list_metrics() if any(name in run.config.metrics for run in runs)]


def _cells(
    run: ReportRun, ranks: dict[str, dict[str, int]], metrics: Sequence[str]
) -> list[dict[str, object]]:
    rows = []
    for explainer, summary in run.summary.iterrows():
        for metric in report_metrics(metrics):
            if metric == SECONDS:
                low = high = math.nan
                n = summary["n_images"]
            else:  # a metric registered after the run has no columns: nothing scored
                low = summary.get(f"{metric}_ci_low", math.nan)
                high = summary.get(f"{metric}_ci_high", math.nan)
                n = summary.get(f"{metric}_n", 0)
            rows.append(
                {
                    "dataset": run.key[0],
                    "model": run.key[1],
                    "explainer": explainer,
                    "metric": metric,
                    "value": summary.get(metric, math.nan),
                    "ci_low": low,
                    "ci_high": high,
                    "n": int(n),
                    "rank": ranks.get(metric, {}).get(str(explainer)),
                    "run_dir": str(run.folder),
                    "sidu_bench_version": run.version,
                    "protocol_version": run.protocol.get("protocol_version"),
                    "protocol_id": protocol_id(run.protocol),
                    "metric_protocol_id": metric_protocol_id(
                        run.protocol, run.config.metrics, statistic_owner(metric)
                    ),
                }
            )
    return rows


@dataclass(frozen=True)
class ReportTables:
    """What the report computes from its runs (its files are written from these).

    Attributes:
        table: one row per (data set, model, explainer, metric) cell (:data:`REPORT_COLUMNS`).
        pairs: one row per (data set, model, pair, ranked metric): ``dataset``, ``model`` and
            the pair columns (:data:`~sidu_bench.tables.statistics.PAIR_COLUMNS`).
        weak: per (data set, model), the per-class statistics whose classes mostly hold one
            scored item.
        trust: per (data set, model), the trust section's table
            (:func:`~sidu_bench.tables.trust.trust_table` over the row's all-pairs family).
        metrics: per (data set, model), the metrics its runs computed (a cell whose runs did
            not compute a metric has no rows, pairs or sanity checks for it).
    """

    table: pd.DataFrame
    pairs: pd.DataFrame
    weak: dict[tuple[str, str], dict[str, tuple[int, int]]]
    trust: dict[tuple[str, str], pd.DataFrame]
    metrics: dict[tuple[str, str], list[str]]

    def agreement(self) -> pd.DataFrame:
        """``report_agreement.csv``: ``dataset``, ``model``, then :data:`TRUST_COLUMNS`."""
        columns = ["dataset", "model", *TRUST_COLUMNS]
        frames = [
            frame.assign(dataset=dataset, model=model)[columns]
            for (dataset, model), frame in self.trust.items()
            if len(frame)
        ]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def report_table(runs: Sequence[ReportRun], *, mixed: bool) -> ReportTables:
    """The long-format report, its pairs, the per-class means marked ‡, and the trust tables."""
    rows, pair_frames, weak, trust, computed = [], [], {}, {}, {}
    for (dataset, model), group in _group(runs).items():
        metrics = computed[(dataset, model)] = computed_metrics(group)
        records = pd.concat([run.records for run in group], ignore_index=True)
        summary = pd.concat([run.summary for run in group])
        explainers = [str(label) for label in summary.index]
        records = records[records["explainer"].isin(explainers)]
        family = all_pairs(explainers)
        seed = group[0].config.seed
        pairs = compare_pairs(records, family, list(ranked_metrics(metrics).values()), seed=seed)
        trust[(dataset, model)] = trust_table(
            records, explainers, metrics, seed=seed, comparisons=pairs
        )
        ranks = rankings(pairs, summary, metrics)
        for run in group:
            rows += _cells(run, ranks, metrics)
        pair_frames.append(pairs.assign(dataset=dataset, model=model))
        weak[(dataset, model)] = weak_per_class(records, metrics)
    table = pd.DataFrame(rows, columns=REPORT_COLUMNS[:-1])
    table["rank"] = table["rank"].astype("Int64")
    table["mixed_protocols"] = mixed
    frames = [frame for frame in pair_frames if len(frame)]
    columns = ["dataset", "model", *PAIR_COLUMNS]
    pairs = (
        pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
    )
    return ReportTables(table, pairs, weak, trust, computed)


def figure_png(table: pd.DataFrame) -> bytes | None:
    """Insertion AUC against seconds per image (log x), one subplot per data set, as PNG.

    Colour is the explainer, marker the model; one legend of each sits beside the plots, so no
    point is hidden under it. ``None`` when matplotlib is missing (a warning is logged) or no
    run computed insertion AUC (logged).
    """
    if not (table["metric"] == "insertion_auc").any():
        log.info("no run computed insertion_deletion: faithfulness_vs_cost.png is not drawn")
        return None
    plt = pyplot_or_none("figure")
    if plt is None:
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
    png = png_bytes(figure)
    plt.close(figure)
    return png


def agreement_png(trust: dict[tuple[str, str], pd.DataFrame]) -> bytes | None:
    """The metrics' Spearman matrices (one heatmap per data set x model) as PNG.

    ``None`` when no row has two metrics to correlate, or matplotlib is missing.
    """
    matrices = {key: spearman_frame(frame) for key, frame in trust.items()}
    matrices = {key: frame for key, frame in matrices.items() if len(frame) >= 2}
    if not matrices:
        return None
    plt = pyplot_or_none("agreement figure")
    if plt is None:
        return None
    columns = min(3, len(matrices))
    rows = math.ceil(len(matrices) / columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(3.8 * columns + 1, 3.6 * rows), squeeze=False, layout="constrained"
    )
    for axis, ((dataset, model), frame) in zip(axes.ravel(), matrices.items(), strict=False):
        image = axis.imshow(frame.to_numpy(dtype=float), vmin=-1, vmax=1, cmap="RdBu")
        names = [SHORT_NAMES.get(str(name), str(name)) for name in frame.index]
        axis.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
        axis.set_yticks(range(len(names)), names, fontsize=7)
        for (i, j), value in np.ndenumerate(frame.to_numpy(dtype=float)):
            axis.text(
                j,
                i,
                "–" if np.isnan(value) else f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=6,
                color="white" if abs(value) > 0.6 else "black",
            )
        axis.set_title(f"{dataset} × {model}", fontsize=9)
    for axis in axes.ravel()[len(matrices) :]:
        axis.axis("off")
    figure.colorbar(image, ax=axes, shrink=0.8, label="Spearman correlation")
    figure.suptitle("agreement of the metrics' explainer rankings")
    png = png_bytes(figure)
    plt.close(figure)
    return png


def build_report(
    run_dirs: Sequence[Path],
    *,
    out: Path,
    allow_mixed_protocols: bool = False,
    html: bool = False,
    latex: bool = False,
) -> list[Path]:
    """Write ``report.csv``, ``report.md``, ``report_pairs.csv`` and the figure into ``out``.

    Args:
        run_dirs: finished run folders.
        out: output folder (created if needed).
        allow_mixed_protocols: build the table even if the runs' protocols disagree (marked).
        html: also write ``report.html`` and its ``report_files/`` (:mod:`sidu_bench.html_report`).
        latex: also write ``report.tex`` (booktabs tables to input in a paper) and
            ``report_standalone.tex``, a document around it (:mod:`sidu_bench.tables.latex`).

    Returns:
        The files written.

    Raises:
        FileNotFoundError: a run folder or one of its files is missing.
        ValueError: a file is corrupt, protocols disagree (unless allowed), or an explainer of a
            (data set, model) row comes from two run folders.
    """
    if not run_dirs:
        raise ValueError("report needs at least one run folder")
    out = check_writable_folder(Path(out), "out")
    runs = [load_run(path) for path in run_dirs]
    mismatches = check_protocols(
        [(run.folder, run.content) for run in runs],
        allow_mixed=allow_mixed_protocols,
        purpose="share a table",
    )
    tables = report_table(runs, mixed=bool(mismatches))
    table, pairs = tables.table, tables.pairs
    metrics = computed_metrics(runs)
    unstable = {
        (*key, *verdict)
        for key, frame in tables.trust.items()
        for verdict in unstable_verdicts(frame)
    }
    trust = [
        trust_markdown(frame, tables.metrics[key], heading=f"### {key[0]} × {key[1]}")
        for key, frame in tables.trust.items()
    ]
    markdown = report_markdown(
        runs=[run.description() for run in runs],
        protocol=runs[0].protocol,
        mismatches=mismatches,
        table=table,
        pairs=pairs,
        weak=tables.weak,
        pairs_file=PAIRS_FILE,
        metrics=metrics,
        trust=trust,
        unstable=unstable,
    )
    texts = ("dataset", "model", "explainer", "reference", "run_dir")
    figure = figure_png(table)
    files = {
        "report.csv": _csv(table, texts).encode("utf-8"),
        "report.md": markdown.encode("utf-8"),
        PAIRS_FILE: _csv(pairs, texts).encode("utf-8"),
        AGREEMENT_FILE: _csv(tables.agreement(), (*texts, "metric", "other")).encode("utf-8"),
        "faithfulness_vs_cost.png": figure,
        "agreement.png": agreement_png(tables.trust),
    }
    if latex:
        files[LATEX_FILE] = report_latex(table, pairs, metrics, unstable).encode("utf-8")
        files[LATEX_STANDALONE] = standalone_latex(LATEX_FILE).encode("utf-8")
    written = []
    for name, content in files.items():
        if content is not None:
            atomic_write_bytes(out / name, content)
            written.append(out / name)
    if html:
        written.append(
            write_html_report(
                runs,
                table,
                pairs,
                out=out,
                mismatches=mismatches,
                figure=figure,
                trust=tables.trust,
            )
        )
    return written


def _csv(table: pd.DataFrame, text_columns: Sequence[str]) -> str:
    """``table`` as CSV, its text cells escaped against spreadsheet formulas (``escape_cell``)."""
    columns = [name for name in text_columns if name in table.columns]
    return table.assign(**{c: table[c].map(escape_cell) for c in columns}).to_csv(index=False)
