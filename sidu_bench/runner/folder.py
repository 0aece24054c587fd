"""The run folder: its layout, and every read and write of its files.

A run folder ``<out>/<dataset>-<model>/`` holds::

    config.json                  the configuration, protocol and environment (written first)
    items/<id>.npz               one finished item: its record rows and arrays (not committed)
    items/<id>.skipped.json      an item whose image or annotation could not be read
    records.partial[.rankR].csv  the record rows of the finished items, rewritten after each
    figure_data[.rankR].npz      what the figures and the report need of the finished items
    records.csv                  one row per (item, explainer) once every item is done
    skipped.csv                  the unreadable items: id, file, reason
    summary.csv, summary.md      the statistics, rebuilt from records.csv
    figures/*.png                the figures
    report/                      ``evaluate --html``: the run's own report, with report.html
    .ranks/rank-R.done           under torchrun: which ranks finished (removed by rank 0)
    .lock, .running              who is running in the folder, and with what configuration

:class:`RunFolder` is the only code that knows these names or opens these files. Every file is
written atomically (:mod:`sidu_bench.io`), so a killed run never leaves a half-written one; the
partial record and figure-data files are small enough to commit, so a run resumes from a fresh
clone. Reading checks what was written: a CSV row is complete or the file is corrupt (named, with
what to do); ids, categories and labels come back as text exactly as written (an id ``NA`` stays
``NA``; a text that a spreadsheet would run as a formula is stored with a leading ``'``, see
:func:`sidu_bench.io.escape_cell`). An item's file is named after its id, percent-encoded, or,
when that would be longer than :data:`MAX_ENCODED_ID` bytes, after its start and a hash. A
process running in the folder holds it (:meth:`RunFolder.claim`): another with a different
configuration is refused, one with the same configuration shares the work.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import os
import shutil
import urllib.parse
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sidu_bench.data import Unreadable
from sidu_bench.errors import ParameterError
from sidu_bench.io import (
    atomic_write_bytes,
    atomic_write_text,
    escape_cell,
    read_json,
    unescape_cell,
    write_json,
)
from sidu_bench.metrics import get_metric, metric_columns
from sidu_bench.runner.config import PROTOCOL_VERSION, READABLE_PROTOCOL_VERSIONS, RunConfig

CONFIG_FILE = "config.json"
RECORDS_FILE = "records.csv"
PARTIAL_RECORDS = "records.partial"
SKIPPED_FILE = "skipped.csv"
SUMMARY_FILE = "summary.csv"
SUMMARY_MARKDOWN = "summary.md"
FIGURE_DATA = "figure_data"
ITEMS_FOLDER = "items"
FIGURES_FOLDER = "figures"
REPORT_FOLDER = "report"
RANKS_FOLDER = ".ranks"
LOCK_FILE = ".lock"
RUNNING_FILE = ".running"
FILE_NAMES = (
    CONFIG_FILE,
    RECORDS_FILE,
    PARTIAL_RECORDS,
    SKIPPED_FILE,
    SUMMARY_FILE,
    SUMMARY_MARKDOWN,
    FIGURE_DATA,
    ITEMS_FOLDER,
    FIGURES_FOLDER,
    REPORT_FOLDER,
    RANKS_FOLDER,
    LOCK_FILE,
    RUNNING_FILE,
)
"""Every name of the layout: no other module spells one (tests/test_run_folder_owner.py)."""

ITEM_COLUMNS = (
    "id",
    "category",
    "label",
    "target",
    "predicted",
    "predicted_prob",
    "target_prob",
    "explainer",
    "center_miss",
)
"""The first columns of ``records.csv``: the item, its prediction and the explainer."""
TIMING_COLUMNS = ("seconds", "metric_seconds", "backend", "device")
"""The last columns of ``records.csv``: the costs and where they were measured."""
TEXT_COLUMNS = ("id", "category", "explainer", "backend", "device")
"""Record columns read as text, exactly as written."""
SKIPPED_COLUMNS = ("id", "file", "reason")
"""Columns of ``skipped.csv``: one row per item skipped because a file could not be read."""
SUMMARY_INPUT_COLUMNS = ("id", "category", "explainer", "center_miss", "seconds", "metric_seconds")
"""The item and cost columns of ``records.csv`` the summary reads."""
MAX_ENCODED_ID = 150
"""Longest percent-encoded id used as an item's file name (file names stop at 255 bytes)."""
CORRUPT_NPZ = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)
"""What numpy raises on a truncated, empty or otherwise damaged ``.npz`` file."""
_ROWS_KEY = "__rows__"
_SEPARATOR = "|"
_IDS_KEY = "__ids__"
_KEYS_KEY = "__keys__"
_DELTA_KEY = "__delta__"


def record_columns(metrics: Sequence[str] | None = None) -> tuple[str, ...]:
    """Columns of ``records.csv``, one row per (item, explainer).

    The item's, then those of ``metrics`` (the metrics the run computes; default: every
    registered one; :func:`sidu_bench.metrics.metric_columns`), then the costs.
    """
    return (*ITEM_COLUMNS, *metric_columns(metrics), *TIMING_COLUMNS)


@dataclass
class ItemResult:
    """What a run keeps of one item: one record row per explainer and named arrays."""

    item_id: str
    rows: dict[str, dict[str, object]] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


class RunFolder:
    """One run folder (see the module docstring for its layout).

    Args:
        path: the folder (it need not exist yet).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._items = self.path / ITEMS_FOLDER
        self._ranks = self.path / RANKS_FOLDER

    def __str__(self) -> str:
        return str(self.path)

    def _file(self, stem: str, suffix: str, rank: int = 0, world: int = 1) -> Path:
        """``<stem><suffix>``, or ``<stem>.rank<R><suffix>`` for one of several ranks."""
        return self.path / (f"{stem}{suffix}" if world == 1 else f"{stem}.rank{rank}{suffix}")

    def remove(self) -> None:
        """Delete everything in the folder but the claim on it (``--fresh``)."""
        for path in self.path.iterdir() if self.path.is_dir() else ():
            if path.name in (LOCK_FILE, RUNNING_FILE):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()

    # -- config.json -----------------------------------------------------------------------

    def read_config(self) -> dict[str, object] | None:
        """``config.json``'s content, or ``None`` when the folder has none.

        Raises:
            ValueError: the file is not a JSON object, or was written under a protocol version
                this one cannot read (named).
        """
        path = self.path / CONFIG_FILE
        if not path.exists():
            return None
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"corrupt {path}: not valid UTF-8 JSON: {error}") from error
        if not isinstance(content, dict):
            raise ValueError(f"corrupt {path}: expected a JSON object")
        protocol = content.get("protocol")
        version = protocol.get("protocol_version") if isinstance(protocol, dict) else None
        if version not in READABLE_PROTOCOL_VERSIONS:
            raise ValueError(
                f"{path} was written under protocol_version {version}; this sidu-bench reads "
                f"version {', '.join(map(str, READABLE_PROTOCOL_VERSIONS))} (it writes "
                f"{PROTOCOL_VERSION}): re-run the evaluation, or read the folder with the "
                "sidu-bench release that wrote it"
            )
        return content

    def config(self) -> dict[str, object]:
        """``config.json``'s content; the folder must be a run folder.

        Raises:
            FileNotFoundError: the folder or its ``config.json`` does not exist.
        """
        if not self.path.is_dir():
            raise FileNotFoundError(f"run folder {self.path} does not exist")
        content = self.read_config()
        if content is None:
            raise FileNotFoundError(f"{self.path} is not a run folder: it has no {CONFIG_FILE}")
        return content

    def run_config(self) -> RunConfig:
        """The run's configuration, rebuilt from ``config.json``.

        Raises:
            FileNotFoundError: the folder has no ``config.json``.
            ValueError: a field is missing or its value is not accepted (named with the file).
        """
        content = self.config()
        try:
            return RunConfig.from_json(content)
        except (ValueError, TypeError) as error:
            raise ValueError(f"corrupt {self.path / CONFIG_FILE}: {error}") from error

    def write_config(self, content: Mapping[str, object]) -> None:
        """Write ``config.json``."""
        write_json(self.path / CONFIG_FILE, content)

    # -- records ---------------------------------------------------------------------------

    def records(self, metrics: Sequence[str] = ()) -> pd.DataFrame:
        """``records.csv``, with the columns a run that computed ``metrics`` must have.

        Raises:
            FileNotFoundError: the folder has no ``records.csv`` (it is not finished).
            ValueError: the file is corrupt or lacks a required column (named).
        """
        path = self.path / RECORDS_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{self.path} is not a finished run folder: it has no {path.name}"
            )
        records = _read_records(path, "restore it (git) or re-run the evaluation")
        required = [
            *SUMMARY_INPUT_COLUMNS,
            *(c for name in metrics for c in get_metric(name).columns),
        ]
        missing = [name for name in required if name not in records.columns]
        if missing:
            raise ValueError(f"corrupt {path}: no {', '.join(missing)} column(s)")
        return records

    def write_records(
        self, rows: Sequence[Mapping[str, object]], metrics: Sequence[str] | None = None
    ) -> None:
        """Write ``records.csv``: one row per item and explainer, the columns of ``metrics``."""
        self._write_rows(self.path / RECORDS_FILE, rows, metrics)

    def write_partial_records(
        self,
        rank: int,
        world: int,
        results: Iterable[ItemResult],
        labels: Sequence[str],
        metrics: Sequence[str] | None = None,
    ) -> None:
        """Write the record rows of ``labels`` of this rank's finished items."""
        rows = [r.rows[label] for r in results for label in labels if label in r.rows]
        self._write_rows(self._file(PARTIAL_RECORDS, ".csv", rank, world), rows, metrics)

    def remove_partial_records(self) -> None:
        """Delete the partial record files (the run is merged)."""
        for path in self.path.glob(f"{PARTIAL_RECORDS}*.csv"):
            path.unlink()

    def record_rows(self) -> dict[str, dict[str, dict[str, object]]]:
        """The rows the record files hold: ``{item id: {explainer label: row}}``.

        Reads ``records.csv``, then every partial file; a later file's row for the same
        (item, explainer) replaces an earlier one (the partial files are the newer).
        """
        paths = [self.path / RECORDS_FILE, *sorted(self.path.glob(f"{PARTIAL_RECORDS}*.csv"))]
        rows: dict[str, dict[str, dict[str, object]]] = {}
        for path in paths:
            if not path.is_file():
                continue
            remedy = (
                "delete it and run the same command again: its items are read back from items/ "
                "or recomputed"
                if path.name.startswith(PARTIAL_RECORDS)
                else "restore it (git) or run the same command again to rebuild it from items/"
            )
            for row in _read_records(path, remedy).to_dict(orient="records"):
                clean = {k: v.item() if isinstance(v, np.generic) else v for k, v in row.items()}
                rows.setdefault(str(clean["id"]), {})[str(clean["explainer"])] = clean
        return rows

    @staticmethod
    def _write_rows(
        path: Path, rows: Sequence[Mapping[str, object]], metrics: Sequence[str] | None
    ) -> None:
        table = pd.DataFrame(rows, columns=list(record_columns(metrics)))
        atomic_write_text(path, _escaped(table, TEXT_COLUMNS).to_csv(index=False))

    # -- skipped.csv -----------------------------------------------------------------------

    def write_skipped(self, unreadable: Sequence[Unreadable]) -> None:
        """Write ``skipped.csv``: the items left out because a file could not be read."""
        listing = pd.DataFrame(
            [(u.item_id, u.file, u.reason) for u in unreadable], columns=list(SKIPPED_COLUMNS)
        )
        listing = _escaped(listing, SKIPPED_COLUMNS)
        atomic_write_text(self.path / SKIPPED_FILE, listing.to_csv(index=False))

    def count_skipped(self) -> int:
        """Rows of ``skipped.csv`` (0 without it).

        Raises:
            ValueError: the file exists but is not a CSV with the columns ``id,file,reason``.
        """
        path = self.path / SKIPPED_FILE
        if not path.is_file():
            return 0
        skipped = _read_text_safe(path, SKIPPED_COLUMNS)
        if list(skipped.columns) != list(SKIPPED_COLUMNS):
            raise ValueError(
                f"corrupt {path}: columns must be {','.join(SKIPPED_COLUMNS)}, "
                f"got {','.join(map(str, skipped.columns))}"
            )
        return len(skipped)

    # -- summary.csv / summary.md ----------------------------------------------------------

    def write_summary(self, table: pd.DataFrame, markdown: str) -> None:
        """Write ``summary.csv`` and ``summary.md``."""
        summary = _escaped(table, ("explainer",))
        atomic_write_text(self.path / SUMMARY_FILE, summary.to_csv(index=False))
        atomic_write_text(self.path / SUMMARY_MARKDOWN, markdown)

    def summary(self) -> pd.DataFrame:
        """``summary.csv`` indexed by explainer (labels as text).

        Raises:
            FileNotFoundError: the folder has no ``summary.csv`` (it is not finished).
            ValueError: the file is corrupt.
        """
        path = self.path / SUMMARY_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{self.path} is not a finished run folder: it has no {path.name}"
            )
        table = _read_text_safe(path, ("explainer",))
        if "explainer" not in table.columns:
            raise ValueError(f"corrupt {path}: no 'explainer' column")
        return table.set_index("explainer")

    def summary_markdown(self) -> str:
        """``summary.md``'s text."""
        return (self.path / SUMMARY_MARKDOWN).read_text(encoding="utf-8")

    # -- figures ---------------------------------------------------------------------------

    def write_figure(self, name: str, png: bytes) -> Path:
        """Write ``figures/<name>.png``; return its path."""
        path = self.path / FIGURES_FOLDER / f"{name}.png"
        atomic_write_bytes(path, png)
        return path

    def write_figure_data(
        self, rank: int, world: int, arrays: Mapping[str, Mapping[str, np.ndarray]]
    ) -> None:
        """Write the compact figure arrays ``{item id: {key: array}}`` of this rank's items.

        Each key's arrays are stacked over the items into one run-wide array (an ``.npz``
        entry costs about 150 bytes, a few per item would add up); see :func:`_stacked`.
        """
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **_stacked(arrays))
        atomic_write_bytes(self._file(FIGURE_DATA, ".npz", rank, world), buffer.getvalue())

    def figure_data(self) -> dict[str, dict[str, np.ndarray]]:
        """The compact figure arrays of every rank's file: ``{item id: {key: array}}``.

        Raises:
            ValueError: a figure-data file is corrupt (named).
        """
        data: dict[str, dict[str, np.ndarray]] = {}
        for path in sorted(self.path.glob(f"{FIGURE_DATA}*.npz")):
            try:
                with np.load(path, allow_pickle=False) as archive:
                    _unstack(archive, data)
            except (*CORRUPT_NPZ, IndexError) as error:
                raise ValueError(
                    f"corrupt figure data {path} ({type(error).__name__}: {error}); delete it "
                    "and run the same command again: the items are read back from items/ or "
                    "recomputed"
                ) from error
        return data

    def report_folder(self) -> Path:
        """``report/``: where ``evaluate --html`` writes the run's own report."""
        return self.path / REPORT_FOLDER

    # -- items/ ----------------------------------------------------------------------------

    def has_items(self) -> bool:
        """Whether the folder holds per-item files (a clone of a committed run has none)."""
        return self._items.is_dir()

    def _item_file(self, item_id: str, suffix: str) -> Path:
        """``items/<id percent-encoded><suffix>``; a long id keeps its start and a hash."""
        name = urllib.parse.quote(item_id, safe="")
        if len(name) > MAX_ENCODED_ID:
            digest = hashlib.sha256(item_id.encode("utf-8")).hexdigest()[:16]
            name = f"{name[: MAX_ENCODED_ID - 17]}~{digest}"
        return self._items / f"{name}{suffix}"

    def load_item(self, item_id: str) -> ItemResult | None:
        """One item's stored result, or ``None`` if it has none yet.

        Raises:
            ValueError: the item's file is corrupt (named, with what to do).
        """
        path = self._item_file(item_id, ".npz")
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files if key != _ROWS_KEY}
                rows = json.loads(str(archive[_ROWS_KEY]))
        except (*CORRUPT_NPZ, json.JSONDecodeError) as error:
            raise ValueError(
                f"corrupt item file {path} ({type(error).__name__}: {error}); delete it and run "
                "the same command again: the item is recomputed"
            ) from error
        return ItemResult(item_id, rows, arrays)

    def save_item(self, result: ItemResult) -> None:
        """Write one item's result (replacing an earlier, smaller one)."""
        buffer = io.BytesIO()
        rows = np.array(json.dumps(result.rows))
        np.savez_compressed(buffer, **{_ROWS_KEY: rows}, **result.arrays)
        atomic_write_bytes(self._item_file(result.item_id, ".npz"), buffer.getvalue())

    def save_unreadable(self, unreadable: Unreadable) -> None:
        """Record that an item could not be read (file and reason); it is retried on resume."""
        content = {"id": unreadable.item_id, "file": unreadable.file, "reason": unreadable.reason}
        write_json(self._item_file(unreadable.item_id, ".skipped.json"), content)

    def load_unreadable(self, item_id: str) -> Unreadable | None:
        """The unreadable-item record of ``item_id``, or ``None`` when it was read."""
        path = self._item_file(item_id, ".skipped.json")
        if not path.exists():
            return None
        content = read_json(path, "skipped-item record")
        return Unreadable(str(content["id"]), str(content["file"]), str(content["reason"]))

    def clear_unreadable(self, item_id: str) -> None:
        """Forget an earlier failure to read ``item_id`` (it was read this time)."""
        self._item_file(item_id, ".skipped.json").unlink(missing_ok=True)

    # -- .lock, .running ------------------------------------------------------------------

    @contextlib.contextmanager
    def claim(self, work: Mapping[str, object], *, alone: bool = False) -> Iterator[None]:
        """Hold the folder for a run doing ``work`` (its configuration) while the block runs.

        Processes doing the same work share the folder (the ranks of one ``torchrun``, or a
        second process helping with the same items); one with other work is refused while any
        holder runs. The claim is an ``fcntl.flock`` on a file in the folder, so the kernel
        releases it when a holder ends, however it ends: a killed run leaves no stale claim.

        Args:
            work: what defines the run's work (configuration fields; JSON-serialisable).
            alone: refuse unless no other process holds the folder (``--fresh`` deletes its
                contents, which would pull the ground from under another holder).

        Raises:
            FolderInUseError: another process holds the folder for other work (or ``alone``).
        """
        self.path.mkdir(parents=True, exist_ok=True)
        described = json.dumps({"pid": os.getpid(), "work": work}, sort_keys=True, default=str)
        running = (self.path / RUNNING_FILE).open("a+", encoding="utf-8")
        try:
            with (self.path / LOCK_FILE).open("a", encoding="utf-8") as guard:
                fcntl.flock(guard, fcntl.LOCK_EX)  # one claim is decided at a time
                try:
                    fcntl.flock(running, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    running.seek(0)
                    holder = json.loads(running.read() or "{}")
                    mine = json.loads(described)["work"]
                    if alone or holder.get("work") != mine:
                        raise _in_use(self, holder, mine, alone=alone) from None
                else:
                    running.seek(0)
                    running.truncate()
                    running.write(described)
                    running.flush()
                fcntl.flock(running, fcntl.LOCK_SH)  # while the guard keeps others waiting
            yield
        finally:
            running.close()

    # -- .ranks/ ---------------------------------------------------------------------------

    def write_rank_marker(self, rank: int, stamp: str) -> None:
        """Mark that ``rank`` finished its items, with the session's ``stamp``."""
        atomic_write_text(self._ranks / f"rank-{rank}.done", stamp)

    def rank_marker(self, rank: int) -> str | None:
        """The stamp of ``rank``'s marker, or ``None`` when it has none."""
        try:
            return (self._ranks / f"rank-{rank}.done").read_text(encoding="utf-8")
        except OSError:
            return None

    def clear_rank_markers(self) -> None:
        """Delete the rank markers (every rank has finished)."""
        shutil.rmtree(self._ranks, ignore_errors=True)


class FolderInUseError(ParameterError):
    """Another process runs in a run folder with other work (or ``fresh`` found one)."""


def _in_use(
    folder: RunFolder, holder: Mapping[str, object], work: Mapping[str, object], *, alone: bool
) -> FolderInUseError:
    """The refusal of a claim: who holds the folder and how its work differs from this one's."""
    pid = holder.get("pid", "?")
    if alone:
        return FolderInUseError(
            f"{folder} is in use by another process (pid {pid}): `fresh` would delete its work; "
            "wait for it to finish, or use another `out`"
        )
    theirs = holder.get("work") or {}
    fields = [key for key in sorted({*theirs, *work}) if theirs.get(key) != work.get(key)]
    return FolderInUseError(
        f"{folder} is in use by another process (pid {pid}) with another configuration: "
        + "; ".join(f"{key}={theirs.get(key)!r} (this run: {work.get(key)!r})" for key in fields)
        + "; wait for it to finish, or use another `out`"
    )


def _read_text_safe(
    path: Path, text_columns: Sequence[str], *, numbers: bool = False
) -> pd.DataFrame:
    """Read a CSV this module wrote, checking that every row is whole.

    ``text_columns`` stay text as written (pandas would read ``NA``, ``None``, ``nan`` or
    ``null`` as missing even with ``dtype=str``) and lose the ``'`` of :func:`escape_cell`;
    elsewhere only ``""`` is missing. A file cut short (a last line without its newline, a row
    with fewer fields than the header) is corrupt: pandas would fill the missing fields with
    NaN and the row would count as finished. With ``numbers`` every other column must hold
    numbers or booleans.

    Raises:
        ValueError: the file is corrupt (named, with the line).
    """
    try:
        text = path.read_text(encoding="utf-8")
        rows = list(csv.reader(io.StringIO(text)))
    except (UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"corrupt {path}: {error}") from error
    if not rows:
        raise ValueError(f"corrupt {path}: the file is empty (it has no header)")
    header = rows[0]
    short = next((n for n, row in enumerate(rows[1:], start=2) if len(row) != len(header)), None)
    if short is not None or not text.endswith("\n"):
        line = short or len(rows)
        raise ValueError(
            f"corrupt {path}: line {line} is not a whole row of {len(header)} fields (the file "
            "was cut short?)"
        )
    if numbers:
        for line, row in enumerate(rows[1:], start=2):
            for name, value in zip(header, row, strict=True):
                if name not in text_columns and not _is_number(value):
                    raise ValueError(
                        f"corrupt {path}: column {name} holds {value!r} on line {line}, "
                        "not a number"
                    )
    table = pd.read_csv(
        io.StringIO(text),
        dtype={name: str for name in text_columns if name in header},
        keep_default_na=False,
        na_values={name: [""] for name in header if name not in text_columns},
    )
    for name in text_columns:
        if name in table.columns:
            table[name] = table[name].map(unescape_cell)
    return table


def _escaped(table: pd.DataFrame, text_columns: Sequence[str]) -> pd.DataFrame:
    """``table`` with the text cells of ``text_columns`` escaped (:func:`escape_cell`)."""
    columns = [name for name in text_columns if name in table.columns]
    return table.assign(**{name: table[name].map(escape_cell) for name in columns})


def _read_records(path: Path, remedy: str) -> pd.DataFrame:
    """A records CSV: text columns as written, only numeric columns' empty fields missing.

    Raises:
        ValueError: the file is corrupt or has no ``id``/``explainer`` column (the message
            ends with ``remedy``, what to do).
    """
    try:
        records = _read_text_safe(path, TEXT_COLUMNS, numbers=True)
    except ValueError as error:
        raise ValueError(f"{error}; {remedy}") from error
    missing = [name for name in ("id", "explainer") if name not in records.columns]
    if missing:
        raise ValueError(f"corrupt {path}: no {', '.join(missing)} column(s); {remedy}")
    return records


def _is_number(text: str) -> bool:
    """Whether a CSV cell holds a number, a boolean or nothing (a missing number)."""
    if text in ("", "True", "False"):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def _stacked(arrays: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The ``.npz`` entries of figure arrays ``{item id: {key: array}}``, stacked per key.

    ``__ids__`` lists the items and ``__keys__`` the keys; entry ``k<j>`` stacks key j's arrays
    over the items that have it and ``k<j>.items`` gives their positions in ``__ids__`` (absent
    when every item has it). A key whose arrays differ in shape or dtype keeps one entry per item,
    ``<id percent-encoded>|<key>`` (the only form of files written before stacking). Stacks of
    8-bit pictures (uint8, ``[n, h, w, ...]``) are stored as their differences along ``h`` and
    ``w`` modulo 256 (:func:`delta_encode`; ``__delta__`` lists them), which deflate packs about
    30 % tighter than the pixels themselves; reading undoes it exactly.
    """
    ids = list(arrays)
    keys = list(dict.fromkeys(key for item in arrays.values() for key in item))
    content: dict[str, np.ndarray] = {
        _IDS_KEY: np.array(ids, dtype=str),
        _KEYS_KEY: np.array(keys, dtype=str),
    }
    delta: list[int] = []
    for index, key in enumerate(keys):
        positions = [p for p, item in enumerate(ids) if key in arrays[item]]
        values = [arrays[ids[p]][key] for p in positions]
        if len({(value.shape, value.dtype) for value in values}) > 1:
            for p, value in zip(positions, values, strict=True):
                content[f"{urllib.parse.quote(ids[p], safe='')}{_SEPARATOR}{key}"] = value
            continue
        stack = np.stack(values)
        if stack.dtype == np.uint8 and stack.ndim >= 3:
            stack = delta_encode(stack)
            delta.append(index)
        content[f"k{index}"] = stack
        if len(positions) < len(ids):
            content[f"k{index}.items"] = np.array(positions, dtype=np.int32)
    content[_DELTA_KEY] = np.array(delta, dtype=np.int32)
    return content


def _unstack(archive: Mapping[str, np.ndarray], data: dict[str, dict[str, np.ndarray]]) -> None:
    """Add the arrays of one figure-data archive (:func:`_stacked`) to ``data``."""
    names = set(archive.keys())
    if _IDS_KEY in names:
        ids = [str(item) for item in archive[_IDS_KEY]]
        delta = set(archive[_DELTA_KEY].tolist()) if _DELTA_KEY in names else set()
        for index, key in enumerate(str(key) for key in archive[_KEYS_KEY]):
            if f"k{index}" not in names:
                continue
            stack = archive[f"k{index}"]
            if index in delta:
                stack = delta_decode(stack)
            positions = (
                archive[f"k{index}.items"] if f"k{index}.items" in names else range(len(ids))
            )
            if len(positions) != len(stack):
                raise ValueError(f"entry k{index} holds {len(stack)} arrays for {len(positions)}")
            for position, value in zip(positions, stack, strict=True):
                data.setdefault(ids[position], {})[key] = value
    for name in names:
        item, separator, key = name.partition(_SEPARATOR)
        if separator:
            data.setdefault(urllib.parse.unquote(item), {})[key] = archive[name]


def delta_encode(stack: np.ndarray) -> np.ndarray:
    """uint8 ``[n, h, w, ...]`` as its differences along ``h`` then ``w``, modulo 256.

    Example:
        >>> delta_encode(np.array([[[1, 3], [4, 2]]], dtype=np.uint8)).tolist()
        [[[1, 2], [3, 252]]]
    """
    differences = np.diff(stack.astype(np.int16), axis=1, prepend=0)
    return (np.diff(differences, axis=2, prepend=0) % 256).astype(np.uint8)


def delta_decode(stack: np.ndarray) -> np.ndarray:
    """The inverse of :func:`delta_encode` (running sums modulo 256)."""
    return np.cumsum(np.cumsum(stack, axis=2, dtype=np.uint8), axis=1, dtype=np.uint8)
