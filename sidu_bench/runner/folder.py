"""A run folder: the configuration check of a resumed run, what it holds of each item, its files.

``config.json`` is written first (rank 0) after checking that a resumed folder's stored
configuration agrees with the requested one; finished items are read back from ``items/`` or,
on a fresh clone, from the committed record CSV files and compact figure data; once every item
is done the records, the unreadable-item listing, the summary and the figures are written.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sidu_bench.data import Unreadable
from sidu_bench.errors import ParameterError
from sidu_bench.io import atomic_write_text
from sidu_bench.runner import distributed
from sidu_bench.runner.config import (
    PROTOCOL_VERSION,
    RunConfig,
    differing_fields,
    read_config,
    with_earlier_environments,
    write_config,
)
from sidu_bench.runner.storage import ItemResult, ItemStore
from sidu_bench.runner.summarise_run import SKIPPED_COLUMNS, SKIPPED_FILE, summarise_run
from sidu_bench.runner.summary import RECORD_COLUMNS

__all__ = ["missing_labels", "prepare_folder", "stored_result", "write_outputs"]


def stored_result(
    store: ItemStore,
    csv_rows: dict[str, dict[str, dict[str, object]]],
    item_id: str,
    figure_data: dict[str, dict[str, np.ndarray]],
) -> ItemResult | None:
    """What the folder holds of an item: its ``items/`` file, else its rows in the CSV files.

    An item known only from the committed files (a folder resumed on a fresh clone) has its
    record rows and its compact figure arrays (:mod:`.figure_data`), which is what the records,
    the summary and the figures need.
    """
    result = store.load(item_id)
    rows = csv_rows.get(item_id, {})
    if result is None:
        if not rows:
            return None
        result = ItemResult(item_id, dict(rows))
    for label, row in rows.items():
        result.rows.setdefault(label, row)
    for key, value in figure_data.get(item_id, {}).items():
        result.arrays.setdefault(key, value)
    return result


def missing_labels(stored: ItemResult | None, config: RunConfig) -> list[str]:
    """Explainer labels an item still lacks (all of them when nothing of it is stored)."""
    return [label for label in config.explainers if stored is None or label not in stored.rows]


def prepare_folder(
    run_dir: Path,
    config: RunConfig,
    setup: dict[str, object],
    provenance: dict[str, object],
    *,
    fresh: bool,
) -> None:
    """Check a resumed folder's configuration; write ``config.json`` (rank 0).

    ``setup`` (the resolved forward backend and the warm-up cost) joins the environment record;
    ``provenance`` (where each explainer comes from, the plug-ins loaded) is descriptive.
    """
    rank, _ = distributed.rank_and_world()
    requested = {**config.to_json(), **provenance}
    requested["environment"] = {**requested["environment"], **setup}
    if fresh and rank == 0 and run_dir.exists():
        shutil.rmtree(run_dir)
    distributed.barrier()
    stored = None if fresh else read_config(run_dir)
    if stored is not None:
        fields = differing_fields(stored, requested)
        if fields:
            old_version = (stored.get("protocol") or {}).get("protocol_version")
            version = (
                f" (it was written under protocol_version {old_version}; this version writes "
                f"{PROTOCOL_VERSION})"
                if old_version != PROTOCOL_VERSION
                else ""
            )
            raise ParameterError(
                f"{run_dir} holds a run with a different configuration ({', '.join(fields)})"
                f"{version}; use another `out`, the same options, or `fresh` to start over"
            )
        requested = with_earlier_environments(stored, requested)
    distributed.barrier()
    if rank == 0:
        write_config(run_dir, requested)
    distributed.barrier()


def write_outputs(
    run_dir: Path,
    config: RunConfig,
    results: Sequence[ItemResult | None],
    *,
    skipped: int,
    unreadable: Sequence[Unreadable] = (),
) -> pd.DataFrame:
    """Write ``records.csv`` and ``skipped.csv``, then the summary and figures from them.

    Args:
        run_dir: the run folder.
        config: the run's configuration.
        results: the stored result of every readable item, in evaluation order.
        skipped: items the localisation metrics skip (empty region after clipping).
        unreadable: items left out because their image or annotation could not be read.

    Returns:
        The summary table.
    """
    missing = [i for i, result in enumerate(results) if result is None]
    if missing:
        raise RuntimeError(f"{len(missing)} items have no stored result in {run_dir}/items")
    rows = [result.rows[label] for result in results for label in config.explainers]
    records = pd.DataFrame(rows, columns=list(RECORD_COLUMNS))
    atomic_write_text(run_dir / "records.csv", records.to_csv(index=False))
    listing = pd.DataFrame(
        [(u.item_id, u.file, u.reason) for u in unreadable], columns=list(SKIPPED_COLUMNS)
    )
    atomic_write_text(run_dir / SKIPPED_FILE, listing.to_csv(index=False))
    return summarise_run(run_dir, localisation_skipped=skipped)
