"""What the HTML report page shows, as one JSON-able object (nothing is recomputed here).

The tables' numbers are the report's own (``report.csv`` and ``report_pairs.csv`` rows, as
:func:`sidu_bench.report.report_table` made them, full precision); the items' values are their
``records.csv`` rows; their curves come from the run folders' figure data, shortened for the
page (:func:`shortened_curve`: the plotted curve keeps :data:`CURVE_POINTS` of its points, the
area under it is not re-derived from them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from sidu_bench.metrics import get_statistic, metric_columns
from sidu_bench.tables.statistics import (
    SECONDS,
    compared_statistics,
    reference_explainer,
)
from sidu_bench.tables.trust import sanity_outcome

CURVE_POINTS = 33
"""Points kept of a longer curve for the page's plots (its first and last included)."""
CURVE_KINDS = {
    "insertion": "insertion (fraction of pixels inserted)",
    "deletion": "deletion (fraction of pixels deleted)",
    "road_morf": "ROAD, most relevant first (fraction removed, 0.1-0.9)",
    "road_lerf": "ROAD, least relevant first (fraction removed, 0.1-0.9)",
    "mprt": "MPRT (similarity to the original map, per randomisation step)",
}
"""Curve keys of the figure data (``<kind>@<label>``) and their plot titles."""
ITEM_COLUMNS = ("id", "category", "label", "target", "predicted", "target_prob", "center_miss")
"""The per-item columns of ``records.csv`` shown for each item."""


def number(value: object) -> float | int | bool | None:
    """A table value as JSON: floats as they are (NaN -> null), bools and ints kept."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    value = float(value)
    return None if math.isnan(value) else value


def shortened_curve(curve: np.ndarray, points: int = CURVE_POINTS) -> list[float]:
    """``curve`` at ``points`` evenly spread indices (all of it when shorter), 4 decimals.

    Example:
        >>> shortened_curve(np.linspace(0, 1, 9), points=3)
        [0.0, 0.5, 1.0]
    """
    values = np.asarray(curve, dtype=np.float64)
    if values.size > points:
        values = values[np.unique(np.round(np.linspace(0, values.size - 1, points)).astype(int))]
    return [None if math.isnan(v) else round(float(v), 4) for v in values]


def metric_descriptions(table: pd.DataFrame, pairs: pd.DataFrame) -> list[dict[str, object]]:
    """The report's metric columns: name, direction, and whether pairs compare it."""
    compared = set(pairs["metric"]) if len(pairs) else set()
    return [
        {
            "name": name,
            "higher_is_better": None if name == SECONDS else get_statistic(name).higher_is_better,
            "compared": name in compared,
        }
        for name in dict.fromkeys(table["metric"])
    ]


def table_rows(table: pd.DataFrame) -> list[dict[str, object]]:
    """The report's cells (one per data set, model, explainer and metric)."""
    columns = ("dataset", "model", "explainer", "metric", "value", "ci_low", "ci_high", "n", "rank")
    return [
        {
            column: (number(row[column]) if column not in columns[:4] else str(row[column]))
            for column in columns
        }
        for _, row in table.iterrows()
    ]


def pair_rows(pairs: pd.DataFrame) -> list[dict[str, object]]:
    """The report's paired comparisons (all pairs of a data set x model, Holm over the row)."""
    text = ("dataset", "model", "explainer", "reference", "metric", "verdict")
    return [
        {column: (str(row[column]) if column in text else number(row[column])) for column in pairs}
        for _, row in pairs.iterrows()
    ]


def item_payload(
    run_index: int,
    records: pd.DataFrame,
    explainers: Sequence[str],
    metrics: Sequence[str],
    arrays: Mapping[str, Mapping[str, np.ndarray]],
    strips: Mapping[str, str],
) -> list[dict[str, object]]:
    """One run's items: their record values per explainer, curves, and strip file.

    Args:
        run_index: the run's position in the page's list of runs.
        records: the run's records.
        explainers: the run's explainer labels, in order.
        metrics: the run's metrics (their record columns are shown).
        arrays: the compact arrays by item id (:func:`sidu_bench.runner.figures.stored_arrays`).
        strips: the strip file (relative to the page) by item id; items without none.
    """
    columns = [*metric_columns(metrics), "seconds"]
    items = []
    for item_id, rows in records.groupby("id", sort=False):
        first = rows.iloc[0]
        by_label = {str(row["explainer"]): row for _, row in rows.iterrows()}
        stored = arrays.get(str(item_id), {})
        curves = {}
        for kind in CURVE_KINDS:
            series = {
                label: shortened_curve(stored[f"{kind}@{label}"])
                for label in explainers
                if f"{kind}@{label}" in stored
            }
            if series:
                curves[kind] = series
        items.append(
            {
                "run": run_index,
                **{
                    column: (
                        str(first[column])
                        if column in ("id", "category")
                        else number(first[column])
                    )
                    for column in ITEM_COLUMNS
                },
                "values": {
                    label: [
                        number(by_label[label][c]) if label in by_label else None for c in columns
                    ]
                    for label in explainers
                },
                "curves": curves,
                "strip": strips.get(str(item_id)),
            }
        )
    return items


def run_payload(
    description: Mapping[str, object],
    content: Mapping[str, object],
    explainers: Sequence[str],
    metrics: Sequence[str],
) -> dict[str, object]:
    """One run folder's header: where it is, its explainers, protocol and environment."""
    return {
        **{key: str(value) for key, value in description.items()},
        "explainers": list(explainers),
        "reference": reference_explainer(list(explainers)),
        "value_columns": [*metric_columns(metrics), "seconds"],
        "compared": [s.column for s in compared_statistics(metrics)],
        "protocol": content.get("protocol"),
        "environment": content.get("environment"),
    }


def trust_rows(trust: Mapping[tuple[str, str], pd.DataFrame]) -> list[dict[str, object]]:
    """The trust section's rows of every (data set, model) (``report_agreement.csv``'s).

    A sanity row also carries its ``outcome`` (:func:`~sidu_bench.tables.trust.sanity_outcome`).
    """
    rows = []
    for (dataset, model), frame in trust.items():
        for _, row in frame.iterrows():
            entry = {"dataset": dataset, "model": model}
            for column in frame.columns:
                text = column in ("statistic", "metric", "other", "verdict")
                entry[column] = str(row[column]) if text else number(row[column])
            if row["statistic"] == "sanity":
                entry["outcome"] = sanity_outcome(str(row["verdict"]))
            rows.append(entry)
    return rows
