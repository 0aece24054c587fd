"""Ground-truth regions as boolean masks, by the rules of docs/protocol.md, item 13.

Coordinates are 0-based pixel coordinates: pixel ``(row, col)`` has its centre at
``(x=col, y=row)``.

- A polygon covers the pixels whose centre lies inside it (non-zero winding rule) or on its
  boundary. Pixel centres outside the image do not exist, so this is the polygon clipped to the
  image.
- A box ``(x_min, y_min, x_max, y_max)`` is an inclusive pixel range: it covers the pixels whose
  centre lies in the closed box, clipped to the image.

A region may be empty (a degenerate or fully clipped annotation); callers skip and count those.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

BOUNDARY_EPS = 1e-9
"""Distance (in pixels) under which a pixel centre counts as lying on a polygon edge."""


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    if len(size) != 2 or min(size) < 0:
        raise ValueError(f"size must be (height, width) with non-negative entries, got {size!r}")
    return int(size[0]), int(size[1])


def polygon_mask(
    vertices: torch.Tensor | Sequence[Sequence[float]], size: Sequence[int]
) -> torch.Tensor:
    """Rasterise a closed polygon: pixels whose centre is inside (non-zero winding) or on an edge.

    Args:
        vertices: ``[N, 2]`` vertex coordinates ``(x, y)`` in 0-based pixel units; the last vertex
            connects back to the first. Vertices may lie outside the image.
        size: ``(height, width)`` of the image.

    Returns:
        Boolean mask of shape ``[height, width]``.

    Example:
        >>> polygon_mask([[0.5, 0.5], [2.0, 0.5], [2.0, 2.0], [0.5, 2.0]], (3, 3)).int()
        tensor([[0, 0, 0],
                [0, 1, 1],
                [0, 1, 1]], dtype=torch.int32)
    """
    height, width = _check_size(size)
    v = torch.as_tensor(vertices, dtype=torch.float64)
    if v.ndim != 2 or v.shape[1] != 2:
        raise ValueError(f"vertices must have shape [N, 2], got {tuple(v.shape)}")
    if not torch.isfinite(v).all():
        raise ValueError("vertices must be finite")
    mask = torch.zeros(height, width, dtype=torch.bool)
    if v.shape[0] == 0 or height == 0 or width == 0:
        return mask
    x0, y0 = v[:, 0], v[:, 1]
    x1, y1 = v.roll(-1, dims=0).unbind(dim=1)
    mask |= _interior(x0, y0, x1, y1, height, width)
    mask |= _boundary(x0, y0, x1, y1, height, width)
    return mask


def _interior(
    x0: torch.Tensor, y0: torch.Tensor, x1: torch.Tensor, y1: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Pixel centres with a non-zero winding number (a ray to the right, half-open edge rule)."""
    rows = torch.arange(height, dtype=torch.float64)[:, None]
    crosses = (rows >= torch.minimum(y0, y1)) & (rows < torch.maximum(y0, y1))
    dy = torch.where(y1 == y0, torch.ones_like(y0), y1 - y0)
    x_cross = x0 + (rows - y0) * (x1 - x0) / dy
    direction = torch.sign(y1 - y0).to(torch.int64).expand_as(x_cross)
    # A crossing at x_c adds its direction to the winding number of every column c < x_c.
    row_idx, edge_idx = crosses.nonzero(as_tuple=True)
    stop = x_cross[row_idx, edge_idx].ceil().clamp(0, width).to(torch.int64)
    signs = direction[row_idx, edge_idx]
    diff = torch.zeros(height, width + 1, dtype=torch.int64)
    diff.index_put_((row_idx, torch.zeros_like(stop)), signs, accumulate=True)
    diff.index_put_((row_idx, stop), -signs, accumulate=True)
    return diff.cumsum(dim=1)[:, :width] != 0


def _boundary(
    x0: torch.Tensor, y0: torch.Tensor, x1: torch.Tensor, y1: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Pixel centres that lie on an edge (within BOUNDARY_EPS)."""
    mask = torch.zeros(height, width, dtype=torch.bool)
    eps = BOUNDARY_EPS
    sloped = y1 != y0
    rows = torch.arange(height, dtype=torch.float64)[:, None]
    within = (rows >= torch.minimum(y0, y1) - eps) & (rows <= torch.maximum(y0, y1) + eps)
    dy = torch.where(sloped, y1 - y0, torch.ones_like(y0))
    x_at = x0 + (rows - y0) * (x1 - x0) / dy
    col = x_at.round()
    on_edge = within & sloped & ((x_at - col).abs() <= eps) & (col >= 0) & (col < width)
    row_idx, edge_idx = on_edge.nonzero(as_tuple=True)
    mask[row_idx, col[row_idx, edge_idx].to(torch.int64)] = True

    cols = torch.arange(width, dtype=torch.float64)[:, None]
    row = y0.round()
    flat = ~sloped & ((y0 - row).abs() <= eps) & (row >= 0) & (row < height)
    spans = flat & (cols >= torch.minimum(x0, x1) - eps) & (cols <= torch.maximum(x0, x1) + eps)
    col_idx, edge_idx = spans.nonzero(as_tuple=True)
    mask[row[edge_idx].to(torch.int64), col_idx] = True
    return mask


def box_mask(
    box: torch.Tensor | Sequence[float], size: Sequence[int], *, one_based: bool = False
) -> torch.Tensor:
    """Rasterise one inclusive box ``(x_min, y_min, x_max, y_max)``, clipped to the image.

    Args:
        box: inclusive pixel coordinates; fractional values cover the pixel centres inside.
        size: ``(height, width)`` of the image.
        one_based: the coordinates are 1-based (Pascal VOC) rather than 0-based (ILSVRC).

    Returns:
        Boolean mask of shape ``[height, width]``; empty when the box misses the image.

    Example:
        >>> box_mask([1, 0, 2, 5], (3, 4)).int()
        tensor([[0, 1, 1, 0],
                [0, 1, 1, 0],
                [0, 1, 1, 0]], dtype=torch.int32)
    """
    return boxes_mask(torch.as_tensor(box, dtype=torch.float64)[None], size, one_based=one_based)


def boxes_mask(
    boxes: torch.Tensor | Sequence[Sequence[float]], size: Sequence[int], *, one_based: bool = False
) -> torch.Tensor:
    """Union of inclusive boxes ``[M, 4]`` as ``(x_min, y_min, x_max, y_max)``, clipped.

    Raises:
        ValueError: a coordinate is not finite (``inf`` would cover the whole image, ``nan``
            nothing).
    """
    height, width = _check_size(size)
    b = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4)
    if not torch.isfinite(b).all():
        raise ValueError("box coordinates must be finite")
    if one_based:
        b = b - 1
    mask = torch.zeros(height, width, dtype=torch.bool)
    cols = torch.arange(width, dtype=torch.float64)
    rows = torch.arange(height, dtype=torch.float64)
    for x_min, y_min, x_max, y_max in b.tolist():
        in_cols = (cols >= x_min) & (cols <= x_max)
        in_rows = (rows >= y_min) & (rows <= y_max)
        mask |= in_rows[:, None] & in_cols[None, :]
    return mask
