"""The per-item store of a run folder and its record CSV files.

Every file a run writes is written atomically (:mod:`sidu_bench.io`), so a killed run never
leaves a half-written file. Each finished item is one compressed ``.npz``
under ``items/`` holding its record rows (JSON) and arrays (curves, float16 maps); resuming reads
them back and computes only what is missing, so an interrupted run loses no finished item.

``items/`` is large and not committed, so the record rows of finished items are also kept in
CSV files small enough to commit: ``records.partial.csv`` (one per rank under torchrun:
``records.partial.rank<R>.csv``), rewritten atomically after every finished item, and
``records.csv`` once the run is merged. A run resumes from those alone (see
:func:`read_record_rows`).
"""

from __future__ import annotations

import io
import json
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sidu_bench.data import Unreadable
from sidu_bench.io import atomic_write_bytes, atomic_write_text, read_json

ITEMS_FOLDER = "items"
ROWS_KEY = "__rows__"
RECORDS_FILE = "records.csv"
PARTIAL_PATTERN = "records.partial*.csv"
TEXT_COLUMNS = ("id", "category", "explainer", "backend", "device")
"""Record columns read as text, exactly as written (a category called ``NA`` stays ``NA``)."""


@dataclass
class ItemResult:
    """What a run keeps of one item: one record row per explainer and named arrays."""

    item_id: str
    rows: dict[str, dict[str, object]] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


class ItemStore:
    """The ``items/`` folder of a run: one atomic ``.npz`` per item."""

    def __init__(self, run_dir: Path) -> None:
        self.folder = Path(run_dir) / ITEMS_FOLDER

    def path(self, item_id: str) -> Path:
        """The file of one item (its id, percent-encoded, as the file name)."""
        return self.folder / f"{urllib.parse.quote(item_id, safe='')}.npz"

    def load(self, item_id: str) -> ItemResult | None:
        """Read one item's stored result, or ``None`` if it has none yet."""
        path = self.path(item_id)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files if key != ROWS_KEY}
                rows = json.loads(str(archive[ROWS_KEY]))
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(
                f"corrupt item file {path}: {error}; delete it to recompute"
            ) from error
        return ItemResult(item_id, rows, arrays)

    def save(self, result: ItemResult) -> None:
        """Write one item's result atomically (replacing an earlier, smaller one)."""
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer, **{ROWS_KEY: np.array(json.dumps(result.rows))}, **result.arrays
        )
        atomic_write_bytes(self.path(result.item_id), buffer.getvalue())

    def skipped_path(self, item_id: str) -> Path:
        """The marker file of an item that could not be read."""
        return self.folder / f"{urllib.parse.quote(item_id, safe='')}.skipped.json"

    def save_skipped(self, unreadable: Unreadable) -> None:
        """Record that an item could not be read (file and reason); it is retried on resume."""
        content = {"id": unreadable.item_id, "file": unreadable.file, "reason": unreadable.reason}
        atomic_write_text(self.skipped_path(unreadable.item_id), json.dumps(content) + "\n")

    def load_skipped(self, item_id: str) -> Unreadable | None:
        """The unreadable-item record of ``item_id``, or ``None`` when it was read."""
        path = self.skipped_path(item_id)
        if not path.exists():
            return None
        content = read_json(path, "skipped-item record")
        return Unreadable(str(content["id"]), str(content["file"]), str(content["reason"]))

    def clear_skipped(self, item_id: str) -> None:
        """Forget an earlier failure to read ``item_id`` (it was read this time)."""
        self.skipped_path(item_id).unlink(missing_ok=True)

    def stored_ids(self) -> Iterator[str]:
        """Ids of all items with a stored result."""
        if not self.folder.exists():
            return
        for path in sorted(self.folder.glob("*.npz")):
            yield urllib.parse.unquote(path.stem)


def partial_records_path(run_dir: Path, rank: int, world: int) -> Path:
    """The file where ``rank`` keeps the record rows of its finished items."""
    name = "records.partial.csv" if world == 1 else f"records.partial.rank{rank}.csv"
    return Path(run_dir) / name


def read_record_file(path: Path) -> pd.DataFrame:
    """Read a records CSV: text columns as written, only numeric columns' empty fields missing.

    Raises:
        ValueError: the file is corrupt or has no ``id``/``explainer`` column.
    """
    try:
        header = pd.read_csv(path, nrows=0).columns
        records = pd.read_csv(
            path,
            dtype={name: str for name in TEXT_COLUMNS if name in header},
            keep_default_na=False,
            na_values={name: [""] for name in header if name not in TEXT_COLUMNS},
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ValueError(f"corrupt {path}: {error}") from error
    missing = [name for name in ("id", "explainer") if name not in records.columns]
    if missing:
        raise ValueError(f"corrupt {path}: no {', '.join(missing)} column(s)")
    return records


def read_record_rows(run_dir: Path) -> dict[str, dict[str, dict[str, object]]]:
    """The record rows a run folder's CSV files hold: ``{item id: {explainer label: row}}``.

    Reads ``records.csv`` and every ``records.partial*.csv``; a later file's row for the same
    (item, explainer) replaces an earlier one (the partial files are newer than records.csv).
    """
    run_dir = Path(run_dir)
    paths = [run_dir / RECORDS_FILE, *sorted(run_dir.glob(PARTIAL_PATTERN))]
    rows: dict[str, dict[str, dict[str, object]]] = {}
    for path in paths:
        if not path.is_file():
            continue
        for row in read_record_file(path).to_dict(orient="records"):
            clean = {key: _native(value) for key, value in row.items()}
            rows.setdefault(str(clean["id"]), {})[str(clean["explainer"])] = clean
    return rows


def _native(value: object) -> object:
    """A JSON-friendly Python scalar (numpy scalars unboxed)."""
    return value.item() if isinstance(value, np.generic) else value


def write_record_rows(
    path: Path, results: Iterable[ItemResult], labels: Sequence[str], columns: Sequence[str]
) -> None:
    """Write the rows of ``labels`` of each result (those it has) to ``path`` atomically."""
    rows = [result.rows[label] for result in results for label in labels if label in result.rows]
    atomic_write_text(path, pd.DataFrame(rows, columns=list(columns)).to_csv(index=False))
