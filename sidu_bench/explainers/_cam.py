"""pytorch-grad-cam's post-processing of a class activation map, in torch.

pytorch-grad-cam (``BaseCAM.compute_cam_per_layer`` then ``aggregate_multi_layers``) takes the
layer-resolution map through ReLU, ``scale_cam_image`` with a target size (min-max
``(x - min) / (max - min + 1e-7)``, then ``cv2.resize`` with its default ``INTER_LINEAR``:
bilinear at pixel centres, clamped at the border, no anti-aliasing, i.e. torch's
``interpolate(mode="bilinear", align_corners=False)``) and ``scale_cam_image`` once more at full
size (the second min-max). This module does the same in float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812

MINMAX_GUARD = 1e-7
"""The ``1e-7`` of pytorch-grad-cam's ``scale_cam_image``."""


def _minmax(maps: torch.Tensor) -> torch.Tensor:
    """Per map: ``(x - min) / (max - min + 1e-7)`` over the last two axes."""
    flat = maps.flatten(-2)
    low = flat.min(dim=-1).values[..., None, None]
    shifted = maps - low
    return shifted / (shifted.flatten(-2).max(dim=-1).values[..., None, None] + MINMAX_GUARD)


def cam_to_map(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Return ``minmax(resize(minmax(relu(cam))))`` as pytorch-grad-cam computes its maps.

    Args:
        cam: ``[B, h, w]`` weighted activation sums ``sum_k w_k A_k``.
        size: the input's ``(H, W)``.

    Returns:
        ``[B, H, W]`` float64 maps in ``[0, 1)``.
    """
    small = _minmax(cam.to(torch.float64).clamp_min(0.0))
    resized = F.interpolate(small[:, None], size=size, mode="bilinear", align_corners=False)
    return _minmax(resized[:, 0])
