"""Input checks shared by the metrics: each error names the argument and what was expected.

Images are checked by :func:`sidu.validation.check_images`.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real

import torch
from torch import Tensor


def check_saliency(saliency: object, *, batch: int | None = None) -> Tensor:
    """Return ``saliency`` if it is a finite real tensor ``[B, h, w]`` (B = ``batch`` if given)."""
    if not isinstance(saliency, Tensor):
        raise TypeError(f"saliency must be a torch.Tensor [B, h, w], got {type(saliency).__name__}")
    if saliency.ndim != 3:
        raise ValueError(f"saliency must be 3-D [B, h, w], got shape {tuple(saliency.shape)}")
    if saliency.is_complex() or saliency.dtype == torch.bool:
        raise TypeError(f"saliency must hold real numbers, got {saliency.dtype}")
    if batch is not None and saliency.shape[0] != batch:
        raise ValueError(
            f"saliency must hold one map per image: expected batch size {batch}, "
            f"got shape {tuple(saliency.shape)}"
        )
    if saliency.shape[0] == 0 or saliency.shape[1] == 0 or saliency.shape[2] == 0:
        raise ValueError(f"saliency must be non-empty, got shape {tuple(saliency.shape)}")
    if saliency.is_floating_point() and not bool(torch.isfinite(saliency).all()):
        raise ValueError("saliency must be finite: it contains NaN or inf")
    return saliency


def check_regions(regions: object, *, batch: int) -> list[Tensor | None]:
    """Return ``regions`` as a list of 2-D boolean masks (or None), one per image, else raise.

    ``regions`` is a boolean tensor ``[B, H, W]`` or a sequence of ``B`` entries, each a boolean
    tensor ``[H_i, W_i]`` or None.
    """
    if isinstance(regions, Tensor):
        if regions.dtype != torch.bool:
            raise TypeError(f"regions must be boolean masks, got dtype {regions.dtype}")
        if regions.ndim != 3 or regions.shape[0] != batch:
            raise ValueError(
                f"regions must be a boolean tensor [B, H, W] with B = {batch} (the number of "
                f"saliency maps), got shape {tuple(regions.shape)}"
            )
        return list(regions.unbind(0))
    if not isinstance(regions, Sequence) or isinstance(regions, str | bytes):
        raise TypeError(
            "regions must be a boolean tensor [B, H, W] or a sequence of boolean tensors [H, W] "
            f"(or None), got {type(regions).__name__}"
        )
    if len(regions) != batch:
        raise ValueError(
            f"regions must hold one entry per saliency map: expected {batch}, got {len(regions)}"
        )
    for i, region in enumerate(regions):
        if region is None:
            continue
        if not isinstance(region, Tensor):
            raise TypeError(f"regions[{i}] must be a boolean tensor or None, got {type(region)}")
        if region.dtype != torch.bool:
            raise TypeError(f"regions[{i}] must be a boolean mask, got dtype {region.dtype}")
        if region.ndim != 2 or region.shape[0] == 0 or region.shape[1] == 0:
            raise ValueError(
                f"regions[{i}] must be a non-empty 2-D mask [H, W], got shape {tuple(region.shape)}"
            )
    return list(regions)


def check_positive_int(value: object, *, name: str) -> int:
    """Return ``value`` as an int if it is an integer >= 1, else raise."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value}")
    return int(value)


def check_tolerance(tolerance: object) -> float:
    """Return ``tolerance`` as a float if it is a finite real number > 0, else raise."""
    if isinstance(tolerance, bool) or not isinstance(tolerance, Real):
        raise TypeError(f"tolerance must be a real number > 0 (pixels), got {tolerance!r}")
    if not 0 < float(tolerance) < float("inf"):
        raise ValueError(f"tolerance must be a finite number > 0 (pixels), got {tolerance}")
    return float(tolerance)


def check_substrate(substrate: object, *, images: Tensor, name: str) -> Tensor:
    """Return ``substrate`` expanded to the shape of ``images`` (no copy), else raise."""
    if not isinstance(substrate, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(substrate).__name__}")
    if not substrate.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got {substrate.dtype}")
    try:
        broadcasts = torch.broadcast_shapes(substrate.shape, images.shape) == images.shape
    except RuntimeError:
        broadcasts = False
    if not broadcasts:
        raise ValueError(
            f"{name} must broadcast to the images' shape {tuple(images.shape)}, "
            f"got shape {tuple(substrate.shape)}"
        )
    return substrate.to(device=images.device, dtype=images.dtype).expand(images.shape)
