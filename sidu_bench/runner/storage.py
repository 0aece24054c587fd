"""Atomic files and the per-item store of a run folder.

Every file a run writes goes to a temporary name in the same folder and is renamed into place,
so a killed run never leaves a half-written file. Each finished item is one compressed ``.npz``
under ``items/`` holding its record rows (JSON) and arrays (curves, float16 maps); resuming reads
them back and computes only what is missing, so an interrupted run loses no finished item.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ITEMS_FOLDER = "items"
ROWS_KEY = "__rows__"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def read_json(path: Path, kind: str) -> object:
    """Parse the JSON file ``path``; errors say which ``kind`` of file is missing or invalid."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{kind} {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{kind} {path} is not valid JSON: {error}") from error


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

    def stored_ids(self) -> Iterator[str]:
        """Ids of all items with a stored result."""
        if not self.folder.exists():
            return
        for path in sorted(self.folder.glob("*.npz")):
            yield urllib.parse.unquote(path.stem)
