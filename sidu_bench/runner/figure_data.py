"""What a run's figures need, kept small enough to commit beside ``records.csv``.

``items/`` holds full-resolution maps and curves but is not committed, so a run folder resumed on
a fresh clone would lose its figures. ``figure_data.npz`` (``figure_data.rank<R>.npz`` per rank
under torchrun) keeps, for every finished item, its insertion/deletion curves (float16) and, for
the sample items of the overlay figure, the image as 8-bit RGB, the region and every explainer's
map (8-bit, min-max scaled), both at most :data:`SAMPLE_SIZE` pixels on a side. A run of 120
items and six explainers needs about 1 MB. Files are rewritten atomically after every item.
"""

from __future__ import annotations

import io
import urllib.parse
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from sidu_bench.io import atomic_write_bytes
from sidu_bench.runner.storage import ItemResult

FIGURE_DATA_PATTERN = "figure_data*.npz"
SAMPLE_SIZE = 112
"""Largest side of the sample images and maps kept for the overlay figure."""
_SEPARATOR = "|"


def figure_data_path(run_dir: Path, rank: int, world: int) -> Path:
    """The file where ``rank`` keeps the figure data of its finished items."""
    name = "figure_data.npz" if world == 1 else f"figure_data.rank{rank}.npz"
    return Path(run_dir) / name


def compact_arrays(
    result: ItemResult, mean: Sequence[float], std: Sequence[float]
) -> dict[str, np.ndarray]:
    """The arrays of one item that the figures need, in their compact form.

    Curves become float16; the sample image (``image``, normalised ``[3, S, S]``) becomes
    ``rgb`` (uint8 ``[s, s, 3]``, s <= :data:`SAMPLE_SIZE`), and each map of a sample item
    uint8 at the same size; other items keep no map. Arrays already compact pass unchanged.
    """
    arrays: dict[str, np.ndarray] = {}
    for key, value in result.arrays.items():
        if key.startswith(("insertion@", "deletion@")):
            arrays[key] = value.astype(np.float16)
        elif key in ("rgb", "region") or (key.startswith("map@") and value.dtype == np.uint8):
            arrays[key] = value
    if "image" in result.arrays:
        image = torch.from_numpy(result.arrays["image"].astype(np.float32))
        image = image * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
        arrays["rgb"] = _to_uint8(_shrink(image).clamp(0, 1)).permute(1, 2, 0).numpy()
        for key, value in result.arrays.items():
            if key.startswith("map@"):
                shrunk = _shrink(torch.from_numpy(value.astype(np.float32))[None])[0]
                low, high = shrunk.min(), shrunk.max()
                scaled = (shrunk - low) / (high - low) if high > low else torch.zeros_like(shrunk)
                arrays[key] = _to_uint8(scaled).numpy()
    return arrays


def _shrink(array: torch.Tensor) -> torch.Tensor:
    """Area-downsample ``[C, H, W]`` so that its longer side is at most SAMPLE_SIZE."""
    height, width = array.shape[-2:]
    factor = max(height, width) / SAMPLE_SIZE
    if factor <= 1:
        return array
    size = (max(1, round(height / factor)), max(1, round(width / factor)))
    return F.interpolate(array[None], size=size, mode="area")[0]


def _to_uint8(array: torch.Tensor) -> torch.Tensor:
    return (array * 255).round().to(torch.uint8)


def write_figure_data(
    path: Path, results: Iterable[ItemResult], mean: Sequence[float], std: Sequence[float]
) -> None:
    """Write the compact figure arrays of ``results`` to ``path`` atomically."""
    content = {}
    for result in results:
        item = urllib.parse.quote(result.item_id, safe="")
        for key, value in compact_arrays(result, mean, std).items():
            content[f"{item}{_SEPARATOR}{key}"] = value
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **content)
    atomic_write_bytes(path, buffer.getvalue())


def read_figure_data(run_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    """The compact figure arrays of a run folder: ``{item id: {key: array}}``.

    Raises:
        ValueError: a figure-data file is corrupt (named).
    """
    data: dict[str, dict[str, np.ndarray]] = {}
    for path in sorted(Path(run_dir).glob(FIGURE_DATA_PATTERN)):
        try:
            with np.load(path, allow_pickle=False) as archive:
                for name in archive.files:
                    item, _, key = name.partition(_SEPARATOR)
                    data.setdefault(urllib.parse.unquote(item), {})[key] = archive[name]
        except (OSError, ValueError) as error:
            raise ValueError(f"corrupt figure data {path}: {error}; delete it") from error
    return data
