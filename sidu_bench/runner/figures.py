"""Figures of a run folder, drawn only from what the run stored (nothing is recomputed).

- ``figures/curves.png``: mean insertion and deletion curves per explainer;
- ``figures/overlays.png``: image, ground-truth region and each explainer's map for the sample
  items whose images the run kept.

Each finished item's full arrays live in ``items/``, which is not committed; what the figures
and the HTML report need is kept compact (:func:`compact_arrays`: float16 curves, every item's
thumbnails (:mod:`sidu_bench.runner.thumbnails`), and for the sample items an 8-bit image,
region and maps at most :data:`SAMPLE_SIZE` pixels on a side) in the run folder's figure data,
so a fresh clone redraws the figures and browses the items.
matplotlib comes with the ``plot`` extra; without it, figures are skipped with a warning.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from sidu_bench.runner.config import RunConfig
from sidu_bench.runner.folder import ItemResult, RunFolder
from sidu_bench.runner.thumbnails import is_thumbnail, map_thumbnails, pixel_image, scaled_map

log = logging.getLogger(__name__)

CURVE_KEYS = ("insertion@", "deletion@", "road_morf@", "road_lerf@", "mprt@")
"""The curves every item keeps in the figure data (float16): insertion/deletion, ROAD, MPRT."""
SAMPLE_SIZE = 112
"""Largest side of the sample images and maps kept for the overlay figure."""


def pyplot_or_none(what: str) -> ModuleType | None:
    """``matplotlib.pyplot`` on the Agg backend; without matplotlib, a warning and ``None``.

    Args:
        what: what is not drawn without matplotlib, for the warning (``"figures"``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed (pip install 'sidu-bench[plot]'): no %s", what)
        return None
    return plt


def png_bytes(figure: object) -> bytes:
    """A matplotlib figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def compact_arrays(
    result: ItemResult, mean: Sequence[float], std: Sequence[float]
) -> dict[str, np.ndarray]:
    """The arrays of one item that the figures and the report need, in their compact form.

    Curves become float16; every item keeps its thumbnails (:mod:`sidu_bench.runner.thumbnails`;
    the map thumbnails are made here from the full-size maps); the sample image (``image``,
    normalised ``[3, S, S]``) becomes ``rgb`` (uint8 ``[s, s, 3]``, s <= :data:`SAMPLE_SIZE`), and
    each map of a sample item uint8 at the same size. Arrays already compact pass unchanged.
    """
    arrays: dict[str, np.ndarray] = {}
    for key, value in result.arrays.items():
        if key.startswith(CURVE_KEYS):
            arrays[key] = value.astype(np.float16)
        elif (
            key in ("rgb", "region")
            or is_thumbnail(key)
            or (key.startswith("map@") and value.dtype == np.uint8)
        ):
            arrays[key] = value
    arrays.update(map_thumbnails(result.arrays))
    if "image" in result.arrays:
        arrays["rgb"] = pixel_image(
            torch.from_numpy(result.arrays["image"]), mean, std, SAMPLE_SIZE
        )
        for key, value in result.arrays.items():
            if key.startswith("map@"):
                arrays[key] = scaled_map(torch.from_numpy(value), SAMPLE_SIZE)
    return arrays


def stored_arrays(
    folder: RunFolder, config: RunConfig, item_ids: Sequence[str]
) -> dict[str, dict[str, np.ndarray]]:
    """The compact arrays (:func:`compact_arrays`) of ``item_ids``, in that order.

    Each item's come from the figure data, else from its ``items/`` file compacted, so a fresh
    clone sees what the run saw; items with neither are left out with a warning.
    """
    figure_data = folder.figure_data()
    mean, std = config.normalisation
    items: dict[str, dict[str, np.ndarray]] = {}
    for item_id in dict.fromkeys(item_ids):
        stored = figure_data.get(item_id) or folder.load_item(item_id)
        if isinstance(stored, ItemResult):
            stored = compact_arrays(stored, mean, std)
        if stored is not None:
            items[item_id] = stored
    missing = len(dict.fromkeys(item_ids)) - len(items)
    if missing:
        log.warning("%d items of %s have no stored arrays", missing, folder)
    return items


def redraw_figures(folder: RunFolder, config: RunConfig, item_ids: Sequence[str]) -> list[Path]:
    """Draw a run's figures from its stored items, in the order of ``item_ids``.

    Figures are drawn from each item's compact arrays (:func:`compact_arrays`): its figure data,
    else its ``items/`` file compacted, so a fresh clone draws the same figures as the run did.
    Items with neither are left out with a warning.

    Returns:
        The files written (none without matplotlib).
    """
    items = stored_arrays(folder, config, item_ids)
    plt = pyplot_or_none("figures")
    if plt is None:
        return []
    title = f"{config.dataset} × {config.model}"
    figures = {
        "curves": _curves_figure(plt, items, config.explainers, title),
        "overlays": _overlays_figure(plt, items, config.explainers, title),
    }
    written = []
    for name, figure in figures.items():
        if figure is not None:
            written.append(folder.write_figure(name, png_bytes(figure)))
            plt.close(figure)
    return written


def _curves_figure(plt, items, explainers, title):
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    drawn = False
    for name, axis in zip(("insertion", "deletion"), axes, strict=True):
        for label in explainers:
            key = f"{name}@{label}"
            stack = [arrays[key] for arrays in items.values() if key in arrays]
            if not stack:
                continue
            curve = np.mean(np.stack(stack), axis=0)
            axis.plot(np.linspace(0, 1, curve.size), curve, label=f"{label} (n={len(stack)})")
            drawn = True
        axis.set_title(f"mean {name} curve")
        axis.set_xlabel("fraction of pixels " + ("inserted" if name == "insertion" else "deleted"))
        axis.grid(alpha=0.3)
    if not drawn:
        plt.close(figure)
        return None
    axes[0].set_ylabel("probability of the explained class")
    axes[1].legend(fontsize=7)
    figure.suptitle(title)
    return figure


def _overlays_figure(plt, items, explainers, title):
    sample = {item_id: arrays for item_id, arrays in items.items() if "rgb" in arrays}
    if not sample:
        return None
    columns = 1 + len(explainers)
    figure, axes = plt.subplots(
        len(sample), columns, figsize=(1.9 * columns, 1.9 * len(sample)), squeeze=False
    )
    for row, (item_id, arrays) in enumerate(sample.items()):
        rgb = arrays["rgb"]
        axes[row, 0].imshow(rgb)
        if "region" in arrays:
            region = arrays["region"].astype(float)
            axes[row, 0].contour(
                np.linspace(0, rgb.shape[1] - 1, region.shape[1]),
                np.linspace(0, rgb.shape[0] - 1, region.shape[0]),
                region,
                levels=[0.5],
                colors="lime",
                linewidths=1,
            )
        axes[row, 0].set_title(item_id, fontsize=6)
        for column, label in enumerate(explainers, start=1):
            axis = axes[row, column]
            axis.imshow(rgb)
            key = f"map@{label}"
            if key in arrays:
                extent = (-0.5, rgb.shape[1] - 0.5, rgb.shape[0] - 0.5, -0.5)
                axis.imshow(arrays[key].astype(np.float32), cmap="jet", alpha=0.5, extent=extent)
            if row == 0:
                axis.set_title(label, fontsize=7)
    for axis in axes.ravel():
        axis.axis("off")
    figure.suptitle(title)
    return figure


def plot_run(run_dir: Path) -> list[Path]:
    """Draw the figures of a finished run folder (``python -m sidu_bench plot``).

    Items are taken in the order of the records (the evaluation order), from ``items/`` or the
    compact figure data.

    Returns:
        The files written.

    Raises:
        FileNotFoundError: the folder is not a finished run.
    """
    folder = RunFolder(run_dir)
    return redraw_figures(folder, folder.run_config(), list(folder.records()["id"]))
