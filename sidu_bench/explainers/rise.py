"""RISE with TorchRay's defaults (8000 masks, 7 x 7 cells, p = 0.5).

Petsiuk et al., "RISE: Randomized Input Sampling for Explanation of Black-box Models", BMVC 2018.

``S = sum_i P_target(x * M_i) M_i / (N p)`` with ``P`` the softmax probability. The masks of one
item come from a generator seeded by ``(seed, item id)`` (:func:`.seeding.item_generator` with
stream ``"rise"``), drawn in this order (the RISE authors' ``generate_masks``):

1. ``grid = torch.rand((N, s, s), dtype=float64, generator=g) < p`` (1 keeps a cell);
2. ``dy = torch.randint(0, ch, (N,), generator=g)``, then ``dx = torch.randint(0, cw, (N,),
   generator=g)``, with cell size ``ch = ceil(H / s)``, ``cw = ceil(W / s)``;
3. ``up_i = skimage.transform.resize(grid_i, ((s + 1) ch, (s + 1) cw), order=1,
   mode="reflect", anti_aliasing=False)``: bilinear at pixel centres with a mirrored border
   (:func:`sidu.resize.interpolation_matrix`);
4. ``M_i = up_i[dy_i : dy_i + H, dx_i : dx_i + W]``.

TorchRay differs in three ways that we do not follow: it scores with ``sigmoid`` of the logits
(not the softmax probability), divides by ``N`` only, and upsamples with one mirrored cell of
padding and scale exactly ``1 / ch`` (a cell spans ``ch`` pixels; here ``(s + 1) ch / s``).
The masked forwards run on :func:`sidu.masked_forward`; masks are built chunk by chunk from the
``N x s x s`` grids, and built again chunk by chunk for the weighted sum, so no ``N x H x W``
stack ever exists. The grids and shifts are drawn on the CPU (the seeded stream) and copied to
the device once per call (non-blocking, from pinned memory, on CUDA); building a chunk and the
weighted sum then run on the device without waiting for the host.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from sidu.resize import interpolation_matrix
from sidu.scores import target_probability
from sidu_bench.explainers.base import ModelExplainer
from sidu_bench.explainers.registry import register_explainer
from sidu_bench.explainers.seeding import item_generator

__all__ = ["RISE", "RISEMasks", "RISEOptions", "draw_grids"]

logger = logging.getLogger(__name__)

SUM_CHUNK = 64
"""Masks per step of the weighted sum (bounds its memory to ``64 x H x W`` float64)."""


@dataclass(frozen=True)
class RISEOptions:
    """RISE options: ``masks`` (N), ``cells`` (s, grid is s x s) and ``p`` (keep probability)."""

    masks: int = 8000
    cells: int = 7
    p: float = 0.5

    def __post_init__(self) -> None:
        """Validate the options."""
        if self.masks < 1:
            raise ValueError(f"masks must be >= 1, got {self.masks}")
        if self.cells < 1:
            raise ValueError(f"cells must be >= 1, got {self.cells}")
        if not 0.0 < self.p <= 1.0:
            raise ValueError(f"p must be in (0, 1], got {self.p}")


def draw_grids(
    generator: torch.Generator, options: RISEOptions, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one item's random grids ``[N, s, s]`` (bool) and shifts ``[N, 2]`` (``dy, dx``)."""
    count, cells = options.masks, options.cells
    grids = torch.rand((count, cells, cells), dtype=torch.float64, generator=generator) < options.p
    dy = torch.randint(0, math.ceil(size[0] / cells), (count,), generator=generator)
    dx = torch.randint(0, math.ceil(size[1] / cells), (count,), generator=generator)
    return grids, torch.stack([dy, dx], dim=1)


class RISEMasks:
    """Mask source: RISE masks built from each image's grids and shifts, a slice at a time.

    Args:
        draws: per image, ``(grids [N, s, s] bool, shifts [N, 2] long)`` from :func:`draw_grids`.
        size: the input's ``(H, W)``.
        dtype: dtype of the masks returned by :meth:`masks`.
        device: device of the masks.
    """

    def __init__(
        self,
        draws: list[tuple[torch.Tensor, torch.Tensor]],
        size: tuple[int, int],
        *,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        cells = draws[0][0].shape[-1]
        self._draws = [(_to_device(g, device), _to_device(s, device)) for g, s in draws]
        self._size = size
        self._dtype = dtype
        self._device = device
        self._rows_index = torch.arange(size[0], device=device)
        self._cols_index = torch.arange(size[1], device=device)
        height, width = ((cells + 1) * math.ceil(extent / cells) for extent in size)
        rows = _to_device(interpolation_matrix(cells, height), device)
        cols = _to_device(interpolation_matrix(cells, width), device)
        self._matrices = {torch.float64: (rows, cols)}
        self._matrices[dtype] = (rows.to(dtype), cols.to(dtype))

    def num_masks(self, image_index: int) -> int:
        """Return ``N``."""
        return self._draws[image_index][0].shape[0]

    def masks(self, image_index: int, start: int, stop: int) -> torch.Tensor:
        """Return masks ``start:stop`` of one image, ``[n, H, W]``."""
        return self._build(image_index, start, stop, self._dtype)

    def _build(self, image_index: int, start: int, stop: int, dtype: torch.dtype) -> torch.Tensor:
        """``M_i = R[dy_i : dy_i + H] @ grid_i @ C[dx_i : dx_i + W]^T``, outside autocast."""
        grids, shifts = self._draws[image_index]
        shifts = shifts[start:stop]
        all_rows, all_cols = self._matrices[dtype]
        with torch.autocast(device_type=self._device.type, enabled=False):
            rows = all_rows[shifts[:, :1] + self._rows_index]
            cols = all_cols[shifts[:, 1:] + self._cols_index]
            grid = grids[start:stop].to(dtype)
            return rows @ grid @ cols.transpose(1, 2)

    def weighted_sum(self, image_index: int, weights: torch.Tensor) -> torch.Tensor:
        """Return ``sum_i weights_i M_i`` (float64 ``[H, W]``), building masks chunk by chunk."""
        total = torch.zeros(self._size, dtype=torch.float64, device=self._device)
        for start in range(0, self.num_masks(image_index), SUM_CHUNK):
            stop = min(start + SUM_CHUNK, self.num_masks(image_index))
            masks = self._build(image_index, start, stop, torch.float64)
            total += torch.einsum("n,nhw->hw", weights[start:stop].to(torch.float64), masks)
        return total


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a tensor to ``device`` once; from the CPU to CUDA without blocking (pinned memory)."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


@register_explainer("rise")
class RISE(ModelExplainer):
    """RISE (Petsiuk et al., BMVC 2018) with TorchRay's defaults; masks seeded per item.

    Example:
        >>> from sidu_bench.explainers import get_explainer
        >>> net = torch.nn.Sequential(
        ...     torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
        ...     torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> rise = get_explainer("rise:masks=50", net)
        >>> tuple(rise(torch.rand(2, 3, 8, 8), torch.tensor([0, 1]), ["a", "b"]).shape)
        (2, 8, 8)
    """

    options_type = RISEOptions

    def explain(
        self, images: torch.Tensor, targets: torch.Tensor, item_ids: tuple[str, ...]
    ) -> torch.Tensor:
        """Return RISE maps ``[B, S, S]`` (float64) for ``targets``."""
        options: RISEOptions = self.options
        self._check_targets(targets, self._logits(images))
        size = tuple(images.shape[-2:])
        draws = [
            draw_grids(item_generator(self.settings.seed, item_id, "rise"), options, size)
            for item_id in item_ids
        ]
        source = RISEMasks(draws, size, dtype=images.dtype, device=images.device)
        logger.debug("rise: %d images x %d masks", len(item_ids), options.masks)
        probabilities = self._masked_forward(
            images,
            source,
            lambda outputs, owner: target_probability(outputs, targets[owner]),
        )
        maps = [source.weighted_sum(b, probabilities[b]) for b in range(len(item_ids))]
        return torch.stack(maps) / (options.masks * options.p)
