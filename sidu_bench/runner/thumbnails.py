"""Per-item thumbnails: every item's image, region and maps at most 64 px on a side, in 8 bits.

They are what the HTML report's item browser shows (``report --html``), kept for every item in
the run folder's committed figure data, so a clone without ``items/`` can still be browsed:

- ``thumbnail``: the image in pixel space, uint8 ``[s, s', 3]`` (``s`` <= :data:`THUMBNAIL_SIZE`);
- ``thumbnail_region``: the ground-truth region's coverage of each thumbnail pixel, uint8
  (0 = outside, 255 = inside; absent when the item has no region);
- ``thumbnail@<label>``: each explainer's map, min-max scaled to 0-255 (a constant map is 0).

Downsampling is area averaging (``F.interpolate(mode="area")``), the aspect ratio is kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

THUMBNAIL_SIZE = 64
"""Largest side of a thumbnail."""
IMAGE_KEY = "thumbnail"
REGION_KEY = "thumbnail_region"
MAP_PREFIX = "thumbnail@"


def shrink(array: torch.Tensor, size: int) -> torch.Tensor:
    """Area-downsample ``[C, H, W]`` so that its longer side is at most ``size``.

    Example:
        >>> shrink(torch.ones(1, 224, 112), 64).shape
        torch.Size([1, 64, 32])
    """
    height, width = array.shape[-2:]
    factor = max(height, width) / size
    if factor <= 1:
        return array
    shape = (max(1, round(height / factor)), max(1, round(width / factor)))
    return F.interpolate(array[None], size=shape, mode="area")[0]


def to_uint8(array: torch.Tensor) -> torch.Tensor:
    """Values on ``[0, 1]`` as uint8 (``round(255 x)``)."""
    return (array * 255).round().to(torch.uint8)


def scaled_map(saliency: torch.Tensor, size: int) -> np.ndarray:
    """A ``[H, W]`` map shrunk to ``size``, min-max scaled to uint8 (a constant map is all 0)."""
    shrunk = shrink(saliency.to(torch.float32)[None], size)[0]
    low, high = shrunk.min(), shrunk.max()
    scaled = (shrunk - low) / (high - low) if high > low else torch.zeros_like(shrunk)
    return to_uint8(scaled).numpy()


def pixel_image(
    image: torch.Tensor, mean: Sequence[float], std: Sequence[float], size: int
) -> np.ndarray:
    """A normalised ``[3, H, W]`` image back in pixel space, shrunk, as uint8 ``[h, w, 3]``."""
    image = image.to(torch.float32)
    pixels = image * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
    return to_uint8(shrink(pixels, size).clamp(0, 1)).permute(1, 2, 0).numpy()


def image_thumbnails(
    image: torch.Tensor,
    region: torch.Tensor | None,
    mean: Sequence[float],
    std: Sequence[float],
) -> dict[str, np.ndarray]:
    """The item's ``thumbnail`` and, when it has a region, ``thumbnail_region``.

    Args:
        image: the model input ``[3, H, W]``, normalised with ``mean`` and ``std``.
        region: the ground-truth region ``[H, W]`` (bool), or None.
        mean: the normalisation mean per channel.
        std: the normalisation standard deviation per channel.
    """
    arrays = {IMAGE_KEY: pixel_image(image, mean, std, THUMBNAIL_SIZE)}
    if region is not None:
        coverage = shrink(region.to(torch.float32)[None], THUMBNAIL_SIZE)[0]
        arrays[REGION_KEY] = to_uint8(coverage).numpy()
    return arrays


def map_thumbnails(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``thumbnail@<label>`` for every full-size ``map@<label>`` (float) of ``arrays``."""
    return {
        MAP_PREFIX + key.removeprefix("map@"): scaled_map(torch.from_numpy(value), THUMBNAIL_SIZE)
        for key, value in arrays.items()
        if key.startswith("map@") and value.dtype != np.uint8
    }


def is_thumbnail(key: str) -> bool:
    """Whether an array key is one of the thumbnails."""
    return key in (IMAGE_KEY, REGION_KEY) or key.startswith(MAP_PREFIX)
