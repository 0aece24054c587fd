"""Bilinear resizing with a mirrored border, as the SIDU authors' code resizes its masks.

The authors call ``skimage.transform.resize(mask, (H, W), order=1, mode="reflect",
anti_aliasing=False)``: bilinear interpolation sampled at pixel centres
(``src = (dst + 0.5) * h / H - 0.5``) with the border extended by mirror reflection
(``x[-1] = x[1]``, numpy's ``"reflect"`` pad). torch's ``interpolate(..., align_corners=False)``
clamps to the edge instead, which differs within half a feature cell of the border.

The resize is separable and linear, so it is written as ``R_h @ X @ R_w^T`` with two small
interpolation matrices; that is exact, cheap to batch, and lets callers resize a weighted sum of
masks once instead of every mask.
"""

from __future__ import annotations

import functools

import torch

__all__ = ["interpolation_matrix", "resize_reflect"]


@functools.lru_cache(maxsize=64)
def _interpolation_matrix_cpu(size_in: int, size_out: int) -> torch.Tensor:
    """Float64 CPU matrix of shape ``[size_out, size_in]``; see :func:`interpolation_matrix`."""
    matrix = torch.zeros(size_out, size_in, dtype=torch.float64)
    if size_in == 1:
        matrix[:, 0] = 1.0
        return matrix
    out = torch.arange(size_out, dtype=torch.float64)
    src = (out + 0.5) * (size_in / size_out) - 0.5
    left = torch.floor(src)
    frac = src - left
    left = left.long()
    rows = torch.arange(size_out)
    for index, weight in ((left, 1.0 - frac), (left + 1, frac)):
        mirrored = _mirror(index, size_in)
        matrix.index_put_((rows, mirrored), weight, accumulate=True)
    return matrix


def _mirror(index: torch.Tensor, size: int) -> torch.Tensor:
    """Mirror indices into ``[0, size)``, edge not repeated: ``-1 -> 1``, ``size -> size-2``."""
    period = 2 * (size - 1)
    index = torch.remainder(index, period)
    return torch.where(index >= size, period - index, index)


def interpolation_matrix(
    size_in: int,
    size_out: int,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Return the ``[size_out, size_in]`` matrix of 1-D bilinear resizing with a mirrored border.

    Row ``i`` holds the weights of output sample ``i`` at source position
    ``(i + 0.5) * size_in / size_out - 0.5``; positions outside ``[0, size_in - 1]`` read the
    mirrored sample (``x[-1] = x[1]``). Each row sums to 1.

    Args:
        size_in: length of the input axis (>= 1).
        size_out: length of the output axis (>= 1).
        dtype: floating dtype of the result.
        device: device of the result.

    Returns:
        The interpolation matrix.

    Example:
        >>> interpolation_matrix(2, 4)
        tensor([[0.7500, 0.2500],
                [0.7500, 0.2500],
                [0.2500, 0.7500],
                [0.2500, 0.7500]], dtype=torch.float64)

    """
    if size_in < 1 or size_out < 1:
        raise ValueError(f"sizes must be >= 1, got size_in={size_in}, size_out={size_out}")
    return _interpolation_matrix_cpu(int(size_in), int(size_out)).to(dtype=dtype, device=device)


def resize_reflect(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize the last two axes of ``maps`` bilinearly with a mirrored border (skimage's rule).

    Equivalent to ``skimage.transform.resize(m, size, order=1, mode="reflect",
    anti_aliasing=False)`` applied to every ``[h, w]`` slice; computed in ``maps.dtype``.

    Args:
        maps: tensor ``[..., h, w]`` of a floating dtype.
        size: the output ``(H, W)``.

    Returns:
        Tensor ``[..., H, W]`` on the device and in the dtype of ``maps``.

    """
    if not maps.is_floating_point():
        raise TypeError(f"maps must be a floating tensor, got dtype {maps.dtype}")
    height, width = maps.shape[-2:]
    rows = interpolation_matrix(height, size[0], dtype=maps.dtype, device=maps.device)
    cols = interpolation_matrix(width, size[1], dtype=maps.dtype, device=maps.device)
    return rows @ maps @ cols.T
