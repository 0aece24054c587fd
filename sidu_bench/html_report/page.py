"""Write ``report.html``: one self-contained page, and its item pictures in ``report_files/``.

The page opens from disk with no network: its CSS, JavaScript (``assets/``) and data (one JSON
block, :mod:`sidu_bench.html_report.payload`) are inline, the faithfulness-vs-cost figure is an
inline PNG, and each item's picture strip (:mod:`sidu_bench.html_report.strips`) is a JPEG in
the sibling folder ``report_files/``, named relatively and loaded lazily. Both are replaced
whole: the folder is built beside the old one and swapped in, the page written atomically.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from sidu_bench.html_report.payload import (
    CURVE_KINDS,
    item_payload,
    metric_descriptions,
    pair_rows,
    run_payload,
    table_rows,
    trust_rows,
)
from sidu_bench.html_report.strips import jpeg_bytes, strip_image, strip_tiles
from sidu_bench.io import atomic_write_bytes, atomic_write_text
from sidu_bench.runner.figures import stored_arrays

PAGE_FILE = "report.html"
FILES_FOLDER = "report_files"
_DATA_MARK = "/*DATA*/"


def _asset(name: str) -> str:
    return resources.files("sidu_bench.html_report").joinpath("assets", name).read_text("utf-8")


def _write_strips(
    folder: Path,
    run_index: int,
    arrays: Mapping[str, Mapping[str, np.ndarray]],
    explainers: Sequence[str],
) -> dict[str, str]:
    """Write the strip of every item that has pictures; return their page-relative paths."""
    paths = {}
    for position, (item_id, stored) in enumerate(arrays.items()):
        tiles = strip_tiles(stored, explainers)
        if tiles is None:
            continue
        name = f"{run_index}/{position}.jpg"
        atomic_write_bytes(folder / name, jpeg_bytes(strip_image(*tiles, explainers)))
        paths[item_id] = f"{FILES_FOLDER}/{name}"
    return paths


def _swap_in(built: Path, target: Path) -> None:
    """Replace folder ``target`` with ``built`` (the old one is removed after the rename)."""
    old = target.with_name(f"{target.name}.old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    built.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def write_html_report(
    runs: Sequence[object],
    table: pd.DataFrame,
    pairs: pd.DataFrame,
    *,
    out: Path,
    mismatches: Sequence[str] = (),
    figure: bytes | None = None,
    trust: Mapping[tuple[str, str], pd.DataFrame] | None = None,
) -> Path:
    """Write ``report.html`` (and ``report_files/``) for ``runs`` into ``out``.

    Args:
        runs: the report's runs (:class:`sidu_bench.report.ReportRun`), in table order.
        table: the report table (:func:`sidu_bench.report.report_table`).
        pairs: its paired comparisons.
        out: the folder (it exists).
        mismatches: protocol differences the report was built despite (shown in a warning).
        figure: the faithfulness-vs-cost PNG, or None (the page says it is missing).
        trust: the trust section's table per (data set, model)
            (:func:`sidu_bench.tables.trust.trust_table`), or None (no such section).

    Returns:
        The page's path.
    """
    out = Path(out)
    building = out / f"{FILES_FOLDER}.new-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir()
    run_entries, items = [], []
    for index, run in enumerate(runs):
        explainers = [str(label) for label in run.summary.index]
        metrics = run.config.metrics
        arrays = stored_arrays(run.folder, run.config, list(run.records["id"]))
        strips = _write_strips(building, index, arrays, explainers)
        run_entries.append(run_payload(run.description(), run.content, explainers, metrics))
        items += item_payload(index, run.records, explainers, metrics, arrays, strips)
    protocol_ids = list(dict.fromkeys(str(value) for value in table["protocol_id"]))
    data = {
        "protocol_ids": protocol_ids,
        "mismatches": [str(line) for line in mismatches],
        "metrics": metric_descriptions(table, pairs),
        "cells": table_rows(table),
        "pairs": pair_rows(pairs),
        "runs": run_entries,
        "items": items,
        "curve_titles": CURVE_KINDS,
        "figure": None if figure is None else base64.b64encode(figure).decode("ascii"),
        "trust": trust_rows(trust or {}),
    }
    text = json.dumps(data, allow_nan=False, separators=(",", ":"), default=str)
    text = text.replace("</", "<\\/")
    page = (
        _asset("template.html")
        .replace("/*CSS*/", _asset("report.css"))
        .replace("/*JS*/", _asset("report.js"))
        .replace(_DATA_MARK, text)
    )
    _swap_in(building, out / FILES_FOLDER)
    atomic_write_text(out / PAGE_FILE, page)
    return out / PAGE_FILE
