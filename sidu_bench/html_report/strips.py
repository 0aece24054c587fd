"""One image per item for the HTML report: the image with its region, then each map over it.

A *strip* is a row of tiles at most :data:`~sidu_bench.runner.thumbnails.THUMBNAIL_SIZE` pixels
on a side: the item's image with the ground-truth region's outline (green), then, in the order
of the explainers, each explainer's map in the jet colour map blended half-and-half over the
image (an explainer without a stored map leaves its tile grey). The page shows it scaled up, so
one lazily loaded file per item carries all of its pictures. Written as JPEG (quality 90): a
strip of seven tiles is a few kilobytes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from sidu_bench.runner.thumbnails import (
    IMAGE_KEY,
    MAP_PREFIX,
    REGION_KEY,
    THUMBNAIL_SIZE,
    shrink,
    to_uint8,
)

JPEG_QUALITY = 90
OUTLINE = np.array([0, 255, 0], dtype=np.uint8)
MISSING = np.array([128, 128, 128], dtype=np.uint8)
MAP_WEIGHT = 0.5
"""Share of the colour-mapped saliency in a map tile (the image has the rest)."""
_JET = np.array(
    [
        [0.0, 0.0, 0.0, 0.5],
        [0.125, 0.0, 0.0, 1.0],
        [0.375, 0.0, 1.0, 1.0],
        [0.625, 1.0, 1.0, 0.0],
        [0.875, 1.0, 0.0, 0.0],
        [1.0, 0.5, 0.0, 0.0],
    ]
)
"""The jet colour map's anchors: position, red, green, blue (linear in between)."""


def jet(values: np.ndarray) -> np.ndarray:
    """uint8 values ``[h, w]`` in the jet colour map, as float RGB ``[h, w, 3]`` on ``[0, 1]``.

    Example:
        >>> jet(np.array([[0, 255]], dtype=np.uint8)).round(2).tolist()
        [[[0.0, 0.0, 0.5], [0.5, 0.0, 0.0]]]
    """
    position = values.astype(np.float64) / 255
    channels = [np.interp(position, _JET[:, 0], _JET[:, c]) for c in (1, 2, 3)]
    return np.stack(channels, axis=-1)


def outline(region: np.ndarray) -> np.ndarray:
    """The boundary pixels of a region given as coverage (uint8, inside >= 128), as bool.

    A pixel is on the boundary when it is inside and a 4-neighbour (or the border) is not.

    Example:
        >>> outline(np.full((3, 3), 255, dtype=np.uint8)).astype(int).tolist()
        [[1, 1, 1], [1, 0, 1], [1, 1, 1]]
    """
    inside = region >= 128
    padded = np.pad(inside, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return inside & ~interior


def _small(array: np.ndarray) -> np.ndarray:
    """A uint8 ``[h, w]`` or ``[h, w, 3]`` array shrunk to the thumbnail size (area)."""
    tensor = torch.from_numpy(array.astype(np.float32) / 255)
    tensor = tensor.permute(2, 0, 1) if tensor.ndim == 3 else tensor[None]
    small = to_uint8(shrink(tensor, THUMBNAIL_SIZE).clamp(0, 1))
    return (small.permute(1, 2, 0) if array.ndim == 3 else small[0]).numpy()


def strip_tiles(
    arrays: Mapping[str, np.ndarray], explainers: Sequence[str]
) -> tuple[np.ndarray, np.ndarray | None, dict[str, np.ndarray]] | None:
    """The image, region and maps of one item's stored arrays, at thumbnail size.

    The thumbnails of every item (``thumbnail``...) are preferred; a run made before they were
    stored has, for its sample items only, the larger overlay arrays (``rgb``, ``region``,
    ``map@<label>`` in uint8), which are shrunk. ``None`` when the item has neither.
    """
    if IMAGE_KEY in arrays:
        maps = {
            label: arrays[MAP_PREFIX + label]
            for label in explainers
            if MAP_PREFIX + label in arrays
        }
        return arrays[IMAGE_KEY], arrays.get(REGION_KEY), maps
    if "rgb" not in arrays:
        return None
    region = arrays.get("region")
    if region is not None:
        region = _small(region.astype(np.uint8) * 255)
    maps = {
        label: _small(arrays[f"map@{label}"])
        for label in explainers
        if f"map@{label}" in arrays and arrays[f"map@{label}"].dtype == np.uint8
    }
    return _small(arrays["rgb"]), region, maps


def strip_image(
    image: np.ndarray,
    region: np.ndarray | None,
    maps: Mapping[str, np.ndarray],
    explainers: Sequence[str],
) -> np.ndarray:
    """The strip as uint8 ``[h, w x (1 + len(explainers)), 3]``.

    Args:
        image: uint8 ``[h, w, 3]``.
        region: region coverage uint8 ``[h, w]`` (or None: no outline).
        maps: uint8 ``[h', w']`` maps by explainer label (resized to ``[h, w]`` if they differ).
        explainers: the labels, in tile order.
    """
    first = image.copy()
    if region is not None and region.shape == image.shape[:2]:
        first[outline(region)] = OUTLINE
    tiles = [first]
    base = image.astype(np.float64) / 255
    for label in explainers:
        saliency = maps.get(label)
        if saliency is None:
            tiles.append(np.broadcast_to(MISSING, image.shape).copy())
            continue
        if saliency.shape != image.shape[:2]:
            resized = Image.fromarray(saliency).resize(image.shape[1::-1], Image.BILINEAR)
            saliency = np.asarray(resized)
        blended = (1 - MAP_WEIGHT) * base + MAP_WEIGHT * jet(saliency)
        tiles.append(np.round(blended * 255).astype(np.uint8))
    return np.concatenate(tiles, axis=1)


def jpeg_bytes(strip: np.ndarray) -> bytes:
    """A uint8 RGB array as JPEG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(strip).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()
