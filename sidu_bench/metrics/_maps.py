"""Resizing of saliency maps, shared by every metric."""

from __future__ import annotations

import torch
from torch import Tensor


def resize_maps(saliency: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize maps ``[B, h, w]`` to ``[B, H, W]`` bilinearly (align_corners=False), in float64.

    The sampling positions are torch's ``interpolate(mode="bilinear", align_corners=False)``
    ones (pixel centres, clamped at the border) and the values agree with it to ~1e-16; each
    interpolation is written ``v0 + t * (v1 - v0)`` (along rows, then columns), so that equal
    neighbours give exactly their value: ties and plateaus of a map survive the resize, and
    ranking and arg-max can break them by pixel index. Maps already at ``size`` are returned
    unchanged (as float64).
    """
    maps = saliency.to(torch.float64)
    height, width = size
    if tuple(maps.shape[-2:]) == (height, width):
        return maps
    top, bottom, row_weight = _sample_positions(maps.shape[-2], height, maps.device)
    rows = maps[:, top] + row_weight[:, None] * (maps[:, bottom] - maps[:, top])
    left, right, col_weight = _sample_positions(maps.shape[-1], width, maps.device)
    return rows[..., left] + col_weight * (rows[..., right] - rows[..., left])


def _sample_positions(n_in: int, n_out: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Neighbour indices and weights of each output position along one axis (half-pixel)."""
    source = (torch.arange(n_out, dtype=torch.float64, device=device) + 0.5) * (n_in / n_out)
    source = (source - 0.5).clamp(min=0)
    low = source.floor().to(torch.int64).clamp(max=n_in - 1)
    high = (low + 1).clamp(max=n_in - 1)
    return low, high, source - low
