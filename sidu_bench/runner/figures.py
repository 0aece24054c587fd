"""Figures of a run folder, drawn only from what the run stored (nothing is recomputed).

- ``figures/curves.png``: mean insertion and deletion curves per explainer;
- ``figures/overlays.png``: image, ground-truth region and each explainer's map for the sample
  items whose images the run kept.

matplotlib comes with the ``plot`` extra; without it, figures are skipped with a warning.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np

from sidu_bench.io import atomic_write_bytes
from sidu_bench.runner.storage import ItemResult

log = logging.getLogger(__name__)
FIGURES_FOLDER = "figures"


def pyplot_or_none() -> ModuleType | None:
    """Return ``matplotlib.pyplot`` on the Agg backend, or ``None`` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_png(figure: object, path: Path) -> None:
    """Save a matplotlib figure as PNG atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())


def write_figures(
    run_dir: Path,
    results: Sequence[ItemResult],
    explainers: Sequence[str],
    *,
    mean: Sequence[float],
    std: Sequence[float],
    title: str,
) -> list[Path]:
    """Draw the run's figures into ``<run_dir>/figures``; return the files written.

    Args:
        run_dir: the run folder.
        results: the stored items, in evaluation order.
        explainers: explainer labels, in table order.
        mean: the model's normalisation mean (to show images in RGB).
        std: the model's normalisation standard deviation.
        title: a title naming the data set and model.
    """
    plt = pyplot_or_none()
    if plt is None:
        log.warning("matplotlib is not installed (pip install 'sidu-bench[plot]'): no figures")
        return []
    folder = Path(run_dir) / FIGURES_FOLDER
    written = []
    curves = _curves_figure(plt, results, explainers, title)
    if curves is not None:
        written.append(folder / "curves.png")
        save_png(curves, written[-1])
        plt.close(curves)
    overlays = _overlays_figure(plt, results, explainers, mean, std, title)
    if overlays is not None:
        written.append(folder / "overlays.png")
        save_png(overlays, written[-1])
        plt.close(overlays)
    return written


def _curves_figure(plt, results, explainers, title):
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    drawn = False
    for name, axis in zip(("insertion", "deletion"), axes, strict=True):
        for label in explainers:
            stack = [r.arrays[f"{name}@{label}"] for r in results if f"{name}@{label}" in r.arrays]
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


def _overlays_figure(plt, results, explainers, mean, std, title):
    sample = [r for r in results if "image" in r.arrays or "rgb" in r.arrays]
    if not sample:
        return None
    columns = 1 + len(explainers)
    figure, axes = plt.subplots(
        len(sample), columns, figsize=(1.9 * columns, 1.9 * len(sample)), squeeze=False
    )
    for row, result in enumerate(sample):
        if "rgb" in result.arrays:
            rgb = result.arrays["rgb"]
        else:
            image = result.arrays["image"].astype(np.float32)
            rgb = np.clip(
                image * np.asarray(std)[:, None, None] + np.asarray(mean)[:, None, None], 0, 1
            )
            rgb = rgb.transpose(1, 2, 0)
        axes[row, 0].imshow(rgb)
        if "region" in result.arrays:
            region = result.arrays["region"].astype(float)
            axes[row, 0].contour(
                np.linspace(0, rgb.shape[1] - 1, region.shape[1]),
                np.linspace(0, rgb.shape[0] - 1, region.shape[0]),
                region,
                levels=[0.5],
                colors="lime",
                linewidths=1,
            )
        axes[row, 0].set_title(result.item_id, fontsize=6)
        for column, label in enumerate(explainers, start=1):
            axis = axes[row, column]
            axis.imshow(rgb)
            key = f"map@{label}"
            if key in result.arrays:
                extent = (-0.5, rgb.shape[1] - 0.5, rgb.shape[0] - 0.5, -0.5)
                saliency = result.arrays[key].astype(np.float32)
                axis.imshow(saliency, cmap="jet", alpha=0.5, extent=extent)
            if row == 0:
                axis.set_title(label, fontsize=7)
    for axis in axes.ravel():
        axis.axis("off")
    figure.suptitle(title)
    return figure
