"""Rebuild a run folder's ``summary.csv``, ``summary.md`` and figures from what it stored.

Statistics are recomputed from ``records.csv`` (and ``config.json``, and ``skipped.csv`` when
the run skipped unreadable files), so changing them never needs a re-run: ``python -m sidu_bench
summarise RUN_DIR`` calls :func:`summarise_run`, and the runner calls it once every item is done.
Figures are redrawn only where the per-item arrays (``items/``) exist; committed run folders
carry none, so their figures stay as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sidu_bench.io import atomic_write_text
from sidu_bench.metrics import get_metric, registered_metrics
from sidu_bench.runner.config import RunConfig, read_config
from sidu_bench.runner.figure_data import read_figure_data
from sidu_bench.runner.figures import write_figures
from sidu_bench.runner.storage import (
    ITEMS_FOLDER,
    RECORDS_FILE,
    ItemResult,
    ItemStore,
    read_record_file,
)
from sidu_bench.runner.summary import (
    paired_comparisons,
    per_class_singletons,
    scored_mask,
    summarise,
    summary_markdown,
    with_comparison_columns,
)

log = logging.getLogger(__name__)

SKIPPED_FILE = "skipped.csv"
SKIPPED_COLUMNS = ("id", "file", "reason")
"""Columns of ``skipped.csv``: one row per item skipped because a file could not be read."""
REFERENCE_EXPLAINER = "sidu"
"""The reference of the paired comparisons: the first explainer whose name (before ':') is this."""
SUMMARY_INPUT_COLUMNS = ("id", "category", "explainer", "center_miss", "seconds", "metric_seconds")
"""The item and cost columns of ``records.csv`` the summary reads (every protocol version's)."""


def required_record_columns(metrics: Sequence[str]) -> tuple[str, ...]:
    """The ``records.csv`` columns a run folder that computed ``metrics`` must have.

    :data:`SUMMARY_INPUT_COLUMNS` and the columns of each of ``metrics`` (the run's
    ``--metrics``); a registered metric the run did not compute may lack its columns.
    """
    return (
        *SUMMARY_INPUT_COLUMNS,
        *(column for name in metrics for column in get_metric(name).columns),
    )


def reference_explainer(explainers: Sequence[str]) -> str | None:
    """The first label whose explainer name is ``sidu`` (``sidu:threshold=0.5`` counts), or None.

    Example:
        >>> reference_explainer(["gradcam", "sidu:threshold=0.5", "sidu"])
        'sidu:threshold=0.5'
    """
    return next((label for label in explainers if label.split(":")[0] == REFERENCE_EXPLAINER), None)


def read_records(run_dir: Path, metrics: Sequence[str] = ()) -> pd.DataFrame:
    """Read ``records.csv`` with ids, categories and explainer labels as text, exactly as written.

    Only the numeric columns treat an empty field as missing, so a category named ``NA`` stays
    a category (the per-class bootstrap depends on the category names).

    Args:
        run_dir: the run folder.
        metrics: the metrics the run computed (``config.json``'s ``metrics``), whose columns
            must be there (:func:`required_record_columns`).

    Raises:
        FileNotFoundError: the folder has no ``records.csv``.
        ValueError: the file is corrupt or lacks a required column (named).
    """
    path = Path(run_dir) / RECORDS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} has no {RECORDS_FILE}: nothing to summarise")
    records = read_record_file(path)
    required = required_record_columns(metrics)
    missing = [name for name in required if name not in records.columns]
    if missing:
        raise ValueError(f"corrupt {path}: no {', '.join(missing)} column(s)")
    return records


def count_skipped_files(run_dir: Path) -> int:
    """Rows of ``skipped.csv`` (items skipped because a file could not be read); 0 without it.

    Raises:
        ValueError: the file exists but is not a CSV with the columns ``id,file,reason``.
    """
    path = Path(run_dir) / SKIPPED_FILE
    if not path.is_file():
        return 0
    try:
        skipped = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        return 0
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ValueError(f"corrupt {path}: {error}") from error
    if list(skipped.columns) != list(SKIPPED_COLUMNS):
        raise ValueError(
            f"corrupt {path}: columns must be {','.join(SKIPPED_COLUMNS)}, "
            f"got {','.join(map(str, skipped.columns))}"
        )
    return len(skipped)


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


def _backend(environment: object) -> str | None:
    backend = environment.get("backend") if isinstance(environment, dict) else None
    if not isinstance(backend, dict) or "name" not in backend:
        return None
    details = ", ".join(f"{key}={value}" for key, value in backend.items() if key != "name")
    return f"{backend['name']} ({details})" if details else str(backend["name"])


def summary_header(
    config: dict[str, object],
    n_items: int,
    skipped_by_localisation: int,
    skipped_unreadable: int,
) -> dict[str, object]:
    """The run header of ``summary.md``: one entry per line, in order.

    ``model chosen because`` (``config["model_reason"]``), ``backend``
    (``config["environment"]["backend"]``: its ``name``, then its other fields) and
    ``precision`` appear only when ``config.json`` records them (protocol version 2); every
    other field is read with a default, so folders of any protocol version give a header.

    Args:
        config: the run folder's ``config.json`` content.
        n_items: items summarised (unreadable ones excluded).
        skipped_by_localisation: items the localisation metrics skipped (empty region).
        skipped_unreadable: items skipped because a file could not be read (``skipped.csv``).

    Returns:
        ``{label: value}`` in display order.
    """
    header: dict[str, object] = {
        "dataset": config.get("dataset"),
        "model": config.get("model"),
    }
    if config.get("model_reason"):
        header["model chosen because"] = config["model_reason"]
    header["layer"] = config.get("layer")
    header["device"] = config.get("device")
    backend = _backend(config.get("environment"))
    if backend is not None:
        header["backend"] = backend
    header["dtype"] = config.get("dtype")
    if config.get("precision"):
        header["precision"] = config["precision"]
    header["target"] = config.get("target")
    header["items"] = n_items
    header["skipped by localisation (empty region)"] = skipped_by_localisation
    header["skipped (unreadable or corrupt file)"] = (
        f"{skipped_unreadable} (listed in {SKIPPED_FILE})"
        if skipped_unreadable
        else skipped_unreadable
    )
    step = config.get("step")
    header["insertion/deletion"] = (
        f"{config.get('steps')} steps" if step is None else f"{step} px per step"
    )
    header["pointing-game tolerance (px)"] = config.get("tolerance")
    header["seed"] = config.get("seed")
    header["reference explainer"] = reference_explainer(list(config.get("explainers") or []))
    return header


def summarise_run(run_dir: Path, *, localisation_skipped: int | None = None) -> pd.DataFrame:
    """Rewrite ``summary.csv`` and ``summary.md`` (and figures, where ``items/`` exists).

    The explainers (in table order) and the seed come from ``config.json``; the reference of
    the paired comparisons is :func:`reference_explainer` of them. Files are written atomically.

    Args:
        run_dir: a finished run folder (``config.json`` and ``records.csv``).
        localisation_skipped: the header's count of items with an empty region; by
            default derived from the records (:func:`count_skipped_by_localisation`).

    Returns:
        The ``summary.csv`` table.

    Raises:
        FileNotFoundError: ``config.json`` or ``records.csv`` is missing.
        ValueError: one of the files is corrupt, or ``config.json`` names no explainers or seed.
    """
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    if config is None:
        raise FileNotFoundError(f"{run_dir} is not a run folder: it has no config.json")
    explainers = [str(label) for label in config.get("explainers") or []]
    if not explainers or not isinstance(config.get("seed"), int):
        raise ValueError(f"corrupt {run_dir / 'config.json'}: it needs 'explainers' and 'seed'")
    seed = int(config["seed"])
    metrics = [str(name) for name in config.get("metrics") or []]
    records = read_records(run_dir, metrics)
    records = records[records["explainer"].isin(explainers)]
    summary = summarise(records, explainers, seed=seed)
    reference = reference_explainer(explainers)
    comparisons = (
        paired_comparisons(records, reference, explainers, seed=seed)
        if reference is not None
        else None
    )
    table = with_comparison_columns(summary, comparisons, reference)
    if localisation_skipped is None:
        localisation_skipped = count_skipped_by_localisation(records, metrics)
    header = summary_header(
        config,
        int(records["id"].nunique()),
        localisation_skipped,
        count_skipped_files(run_dir),
    )
    markdown = summary_markdown(
        summary, comparisons, header, singletons=per_class_singletons(records)
    )
    atomic_write_text(run_dir / "summary.csv", table.to_csv(index=False))
    atomic_write_text(run_dir / "summary.md", markdown)
    figure_data = read_figure_data(run_dir)
    if (run_dir / ITEMS_FOLDER).is_dir() or figure_data:
        _redraw_figures(run_dir, config, records, explainers, figure_data)
    return table


def _redraw_figures(
    run_dir: Path,
    config: dict[str, object],
    records: pd.DataFrame,
    explainers: list[str],
    figure_data: dict[str, dict[str, np.ndarray]],
) -> None:
    """Draw the figures from ``items/``, or from the compact figure data where an item has none."""
    store = ItemStore(run_dir)
    ids = list(dict.fromkeys(records["id"]))
    results = [_figure_item(store, figure_data, item_id) for item_id in ids]
    missing = sum(result is None for result in results)
    if missing:
        log.warning("%d of %d items have no file in %s", missing, len(ids), store.folder)
    mean, std = RunConfig.from_json(config).normalisation
    write_figures(
        run_dir,
        [result for result in results if result is not None],
        explainers,
        mean=mean,
        std=std,
        title=f"{config.get('dataset')} × {config.get('model')}",
    )


def _figure_item(
    store: ItemStore, figure_data: dict[str, dict[str, np.ndarray]], item_id: str
) -> ItemResult | None:
    """An item's stored arrays: its ``items/`` file, else its compact figure data."""
    result = store.load(item_id)
    if result is None and item_id in figure_data:
        result = ItemResult(item_id)
    if result is not None:
        for key, value in figure_data.get(item_id, {}).items():
            result.arrays.setdefault(key, value)
    return result
