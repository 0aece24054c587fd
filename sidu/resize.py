"""Bilinear resizing of maps under four border and alignment rules, each as the code it copies.

:func:`resize` takes the rule by name (:data:`RESIZE_RULES`); every rule samples ``[..., h, w]``
bilinearly, without anti-aliasing, and differs in where the samples sit and what lies beyond
the border:

* ``"reflect"``: pixel centres (``src = (dst + 0.5) * h / H - 0.5``), mirrored border
  (``x[-1] = x[1]``, numpy's ``"reflect"`` pad): ``skimage.transform.resize(m, size, order=1,
  mode="reflect", anti_aliasing=False)``, as the SIDU authors resize their masks (SIDU, RISE).
  Written ``R_h @ X @ R_w^T`` with two interpolation matrices (:func:`interpolation_matrix`), in
  the maps' dtype; a weighted sum of masks can be resized once instead of every mask.
* ``"interpolate"``: pixel centres, clamped border: ``torch.nn.functional.interpolate(...,
  mode="bilinear", align_corners=False)``, which is also ``cv2.resize``'s ``INTER_LINEAR``
  (pytorch-grad-cam's CAM resize), in the maps' dtype.
* ``"align_corners"``: the corners of input and output coincide (``src = dst * (h - 1) /
  (H - 1)``): ``interpolate(..., align_corners=True)``, i.e. ``nn.UpsamplingBilinear2d``
  (pytorch-grad-cam's Score-CAM masks), in the maps' dtype.
* ``"clamp"``: the positions of ``"interpolate"``, in float64, each interpolation written
  ``v0 + t * (v1 - v0)`` (rows, then columns) so that equal neighbours give exactly their value:
  plateaus and ties of a map survive the resize and ranking can break them by pixel index (the
  metrics' rule). Maps already at ``size`` come back unchanged (as float64).

The two torch rules pass ``[B, C, h, w]`` maps to ``interpolate`` as they are and maps of other
ranks as the channels of one image, ``[1, N, h, w]``: the layout matters to the last bit (torch's
CPU kernel vectorises across channels), so a caller keeps the layout of the code it matches.
"""

from __future__ import annotations

import functools
from typing import Literal, get_args

import torch
import torch.nn.functional as F  # noqa: N812

__all__ = ["RESIZE_RULES", "ResizeRule", "interpolation_matrix", "resize", "resize_reflect"]

ResizeRule = Literal["reflect", "interpolate", "align_corners", "clamp"]
RESIZE_RULES: tuple[str, ...] = get_args(ResizeRule)
"""The rules of :func:`resize` (see the module docstring)."""


def resize(maps: torch.Tensor, size: tuple[int, int], *, rule: ResizeRule) -> torch.Tensor:
    """Resize the last two axes of ``maps`` to ``size`` bilinearly under ``rule``.

    Args:
        maps: tensor ``[..., h, w]``: floating, or any real dtype for ``"clamp"``.
        size: the output ``(H, W)``.
        rule: one of :data:`RESIZE_RULES` (module docstring).

    Returns:
        ``[..., H, W]`` on the maps' device; float64 for ``"clamp"``, else in the maps' dtype.

    Raises:
        TypeError: ``maps`` is not floating (for a rule other than ``"clamp"``).
        ValueError: ``rule`` is unknown, ``maps`` is not a tensor of 2 axes or more, or a size
            is < 1.

    Example:
        >>> edge = torch.tensor([[0.0, 1.0]])
        >>> [resize(edge, (1, 4), rule=r)[0].tolist() for r in ("reflect", "align_corners")]
        [[0.25, 0.25, 0.75, 0.75], [0.0, 0.3333333432674408, 0.6666666865348816, 1.0]]
        >>> resize(edge, (1, 4), rule="clamp")[0].tolist()
        [0.0, 0.25, 0.75, 1.0]

    """
    if rule not in RESIZE_RULES:
        raise ValueError(f"rule must be one of {', '.join(RESIZE_RULES)}, got {rule!r}")
    if not isinstance(maps, torch.Tensor) or maps.dim() < 2:
        shape = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
        raise ValueError(f"maps must be a tensor [..., h, w], got {shape}")
    height, width = (int(extent) for extent in size)
    if height < 1 or width < 1:
        raise ValueError(f"size must be >= 1 on both axes, got {tuple(size)}")
    if rule == "clamp":
        return _resize_clamp(maps, (height, width))
    if not maps.is_floating_point():
        raise TypeError(f"maps must be a floating tensor, got dtype {maps.dtype}")
    if rule == "reflect":
        return resize_reflect(maps, (height, width))
    batch = maps if maps.dim() == 4 else maps.reshape(1, -1, *maps.shape[-2:])
    corners = rule == "align_corners"
    out = F.interpolate(batch, size=(height, width), mode="bilinear", align_corners=corners)
    return out.reshape(*maps.shape[:-2], height, width)


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
    anti_aliasing=False)`` applied to every ``[h, w]`` slice; computed in ``maps.dtype``. The
    same as ``resize(maps, size, rule="reflect")``.

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


def _resize_clamp(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The ``"clamp"`` rule: pixel centres, clamped border, ``v0 + t * (v1 - v0)``, float64."""
    maps = maps.to(torch.float64)
    height, width = size
    if tuple(maps.shape[-2:]) == (height, width):
        return maps
    top, bottom, row_weight = _clamped_positions(maps.shape[-2], height, maps.device)
    rows = maps[..., top, :] + row_weight[:, None] * (maps[..., bottom, :] - maps[..., top, :])
    left, right, col_weight = _clamped_positions(maps.shape[-1], width, maps.device)
    return rows[..., left] + col_weight * (rows[..., right] - rows[..., left])


def _clamped_positions(
    n_in: int, n_out: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Neighbour indices and weights of each output position along one axis (pixel centres)."""
    source = (torch.arange(n_out, dtype=torch.float64, device=device) + 0.5) * (n_in / n_out)
    source = (source - 0.5).clamp(min=0)
    low = source.floor().to(torch.int64).clamp(max=n_in - 1)
    high = (low + 1).clamp(max=n_in - 1)
    return low, high, source - low
