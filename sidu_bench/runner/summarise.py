"""Rebuild a run folder's summary and figures from what it stored.

Statistics are recomputed from the records (and the configuration, and the unreadable-item
listing), so changing them never needs a re-run: ``python -m sidu_bench summarise RUN_DIR`` calls
:func:`summarise_run`, and the runner calls it once every item is done. Figures are redrawn
where per-item arrays or the compact figure data exist.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sidu_bench.runner.figures import redraw_figures
from sidu_bench.runner.folder import SKIPPED_FILE, RunFolder
from sidu_bench.tables.markdown import summary_markdown
from sidu_bench.tables.statistics import (
    compare_pairs,
    compared_statistics,
    count_skipped_by_localisation,
    reference_explainer,
    reference_pairs,
    summarise,
    weak_per_class,
    with_comparison_columns,
)
from sidu_bench.tables.trust import trust_markdown, trust_table, unstable_verdicts


def summary_header(
    config: dict[str, object],
    n_items: int,
    skipped_by_localisation: int,
    skipped_unreadable: int,
) -> dict[str, object]:
    """The run header of ``summary.md``: one entry per line, in order.

    Args:
        config: the run folder's ``config.json`` content.
        n_items: items summarised (unreadable ones excluded).
        skipped_by_localisation: items the localisation metrics skipped (empty region).
        skipped_unreadable: items skipped because a file could not be read.

    Returns:
        ``{label: value}`` in display order.
    """
    header: dict[str, object] = {"dataset": config["dataset"], "model": config["model"]}
    if config["model_reason"]:
        header["model chosen because"] = config["model_reason"]
    header["layer"] = config["layer"]
    header["device"] = config["device"]
    backend = dict(config["environment"].get("backend") or {})
    if backend:
        name = backend.pop("name")
        details = ", ".join(f"{key}={value}" for key, value in backend.items())
        header["backend"] = f"{name} ({details})" if details else name
    step = config["step"]
    return {
        **header,
        "dtype": config["dtype"],
        "precision": config["precision"],
        "target": config["target"],
        "items": n_items,
        "skipped by localisation (empty region)": skipped_by_localisation,
        "skipped (unreadable or corrupt file)": (
            f"{skipped_unreadable} (listed in {SKIPPED_FILE})"
            if skipped_unreadable
            else skipped_unreadable
        ),
        "insertion/deletion": f"{config['steps']} steps" if step is None else f"{step} px per step",
        "pointing-game tolerance (px)": config["tolerance"],
        "seed": config["seed"],
        "reference explainer": reference_explainer(list(config["explainers"])),
    }


def summarise_run(
    run_dir: Path | RunFolder, *, localisation_skipped: int | None = None
) -> pd.DataFrame:
    """Rewrite ``summary.csv`` and ``summary.md``, and the figures where arrays are stored.

    The explainers (in table order) and the seed come from ``config.json``; the reference of
    the paired comparisons is :func:`~sidu_bench.tables.statistics.reference_explainer`.

    Args:
        run_dir: a finished run folder (``config.json`` and ``records.csv``).
        localisation_skipped: the header's count of items with an empty region; by default
            derived from the records.

    Returns:
        The ``summary.csv`` table.

    Raises:
        FileNotFoundError: ``config.json`` or ``records.csv`` is missing.
        ValueError: one of the files is corrupt.
    """
    folder = run_dir if isinstance(run_dir, RunFolder) else RunFolder(run_dir)
    content, config = folder.config(), folder.run_config()
    explainers = list(config.explainers)
    records = folder.records(config.metrics)
    records = records[records["explainer"].isin(explainers)]
    metrics = config.metrics
    summary = summarise(records, explainers, seed=config.seed, metrics=metrics)
    reference = reference_explainer(explainers)
    comparisons = None
    if reference is not None:
        pairs = reference_pairs(explainers, reference)
        compared = [statistic.name for statistic in compared_statistics(metrics)]
        comparisons = compare_pairs(records, pairs, compared, seed=config.seed)
    if localisation_skipped is None:
        localisation_skipped = count_skipped_by_localisation(records, config.metrics)
    header = summary_header(
        content, int(records["id"].nunique()), localisation_skipped, folder.count_skipped()
    )
    weak = weak_per_class(records, metrics)
    trust = trust_table(
        records,
        explainers,
        metrics,
        seed=config.seed,
        comparisons=comparisons,
    )
    markdown = summary_markdown(
        summary,
        comparisons,
        header,
        weak=weak,
        metrics=metrics,
        trust=trust_markdown(trust, metrics, heading="## Can these rankings be trusted?"),
        unstable=unstable_verdicts(trust),
    )
    table = with_comparison_columns(summary, comparisons, reference, metrics)
    folder.write_summary(table, markdown)
    if folder.has_items() or folder.figure_data():
        redraw_figures(folder, config, list(records["id"]))
    return table
