"""Layers that do not output a ``[B, C, h, w]`` map: token sequences and channels-last grids.

A Vision Transformer's block outputs a token sequence ``[B, N, C]``: ``prefix`` leading tokens
(the class token, a distillation token, register tokens) and then the ``h * w`` patch tokens in
row-major order. Some timm models (and torchvision's Swin stages) output a channels-last grid
``[B, h, w, C]``. Every explainer of this package reads a layer through one *reshape*: a callable
that turns the layer's output into ``[B, C, h, w]`` by selecting and rearranging its elements
(:class:`TokenGrid`, :class:`ChannelsLast`, or any such callable, e.g. a pytorch-grad-cam
``reshape_transform``).

:func:`grid_view` applies it inside the forward pass (see :class:`sidu.capture.ActivationCapture`):
it gathers the grid from the output by an index computed once per output shape, and writes the
grid back into the output that the rest of the model consumes. The forward's values are
unchanged, and the logits depend on the grid itself, so gradients with respect to the grid
(Grad-CAM) are exact for any reshape. Elements the reshape leaves out (the class and register
tokens) never enter the grid, so they never enter a mask or a CAM.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["ChannelsLast", "Reshape", "TokenGrid", "check_reshape", "grid_view"]

Reshape = Callable[[torch.Tensor], torch.Tensor]
"""A callable turning a layer's output into ``[B, C, h, w]`` by selecting and moving elements."""


@dataclass(frozen=True)
class TokenGrid:
    """Read tokens ``[B, N, C]`` as a grid ``[B, C, h, w]``: drop ``prefix`` tokens, fold the rest.

    Args:
        prefix: leading tokens that are not patches (ViT: 1 class token; DeiT distilled: 2;
            a ViT with 4 register tokens and a class token: 5).
        size: the patch grid ``(h, w)``; ``None``: square, ``h = w = sqrt(N - prefix)``.

    Example:
        >>> tokens = torch.arange(2 * 5 * 3.0).reshape(2, 5, 3)  # 1 class token + 2 x 2 patches
        >>> grid = TokenGrid(prefix=1)(tokens)
        >>> tuple(grid.shape), grid[0, :, 0, 1].tolist()  # channels of patch (0, 1): token 2
        ((2, 3, 2, 2), [6.0, 7.0, 8.0])

    """

    prefix: int = 1
    size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        """Validate the fields."""
        if not isinstance(self.prefix, int) or isinstance(self.prefix, bool) or self.prefix < 0:
            raise ValueError(f"TokenGrid prefix must be an int >= 0, got {self.prefix!r}")
        if self.size is not None and (
            len(self.size) != 2 or any(not isinstance(s, int) or s < 1 for s in self.size)
        ):
            raise ValueError(f"TokenGrid size must be (h, w) with ints >= 1, got {self.size!r}")

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        """``[B, N, C]`` -> ``[B, C, h, w]`` (a view where possible)."""
        if output.dim() != 3:
            raise ValueError(
                f"{self} needs a token sequence [B, N, C], got shape {tuple(output.shape)}"
            )
        patches = output.shape[1] - self.prefix
        if self.size is not None:
            height, width = self.size
        else:
            height = width = math.isqrt(max(patches, 0))
        if patches < 1 or height * width != patches:
            wanted = (
                "a square number of" if self.size is None else f"{self.size[0]} x {self.size[1]}"
            )
            raise ValueError(
                f"{self} needs {wanted} patch tokens after the {self.prefix} prefix token(s), "
                f"got shape {tuple(output.shape)} ({patches} patch tokens)"
            )
        batch, channels = output.shape[0], output.shape[2]
        grid = output[:, self.prefix :].reshape(batch, height, width, channels)
        return grid.permute(0, 3, 1, 2)


@dataclass(frozen=True)
class ChannelsLast:
    """Read a channels-last grid ``[B, h, w, C]`` as ``[B, C, h, w]``.

    Example:
        >>> tuple(ChannelsLast()(torch.zeros(2, 7, 7, 96)).shape)
        (2, 96, 7, 7)

    """

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        """``[B, h, w, C]`` -> ``[B, C, h, w]`` (a view)."""
        if output.dim() != 4:
            raise ValueError(
                f"{self} needs a channels-last grid [B, h, w, C], got shape {tuple(output.shape)}"
            )
        return output.permute(0, 3, 1, 2)


def check_reshape(reshape: object) -> Reshape | None:
    """Return ``reshape`` if it is ``None`` or callable, else raise a ``TypeError`` naming it."""
    if reshape is not None and not callable(reshape):
        raise TypeError(
            "reshape must be None, sidu.TokenGrid(...), sidu.ChannelsLast() or a callable "
            f"[B, ...] -> [B, C, h, w], got {type(reshape).__name__}"
        )
    return reshape


_INDEX_CACHE: OrderedDict[tuple[object, ...], torch.Tensor] = OrderedDict()
_INDEX_CACHE_SIZE = 32
"""Grid indices kept, most recently used first out last (one per reshape, shape and device)."""


def _grid_index(reshape: Reshape, shape: torch.Size, device: torch.device) -> torch.Tensor:
    """Flat indices ``[B, C, h, w]`` into an output of ``shape``: each grid element's source.

    Found by applying ``reshape`` to the float64 tensor of flat positions (exact below 2**53)
    and checked: 4-D, the same batch, integral positions of that batch row, none taken twice.
    """
    key: tuple[object, ...] | None = (reshape, tuple(shape), str(device))
    try:
        cached = _INDEX_CACHE.get(key)
    except TypeError:  # an unhashable callable: computed every time
        cached, key = None, None
    if cached is not None:
        _INDEX_CACHE.move_to_end(key)
        return cached
    with torch.inference_mode(False):  # the index is saved for backward by gradient calls
        index = _checked_index(reshape, shape).to(device)
    if key is not None:
        _INDEX_CACHE[key] = index
        while len(_INDEX_CACHE) > _INDEX_CACHE_SIZE:
            _INDEX_CACHE.popitem(last=False)
    return index


def _checked_index(reshape: Reshape, shape: torch.Size) -> torch.Tensor:
    """``reshape`` applied to the flat positions of ``shape``, checked to be a rearrangement."""
    positions = torch.arange(math.prod(shape), dtype=torch.float64).reshape(shape)
    grid = reshape(positions)
    if not isinstance(grid, torch.Tensor) or grid.dim() != 4 or grid.shape[0] != shape[0]:
        got = tuple(grid.shape) if isinstance(grid, torch.Tensor) else type(grid).__name__
        raise ValueError(
            f"reshape must turn the output {tuple(shape)} into [B, C, h, w] with the same B, "
            f"got {got}"
        )
    index = grid.round().long()
    per_item = math.prod(shape[1:])
    rows = torch.arange(shape[0])[:, None, None, None]
    if (
        not torch.equal(index.double(), grid)
        or bool(((index // per_item) != rows).any())
        or index.unique().numel() != index.numel()
    ):
        raise ValueError(
            "reshape must only select and rearrange the output's elements within each batch "
            "item, each at most once (no arithmetic, no mixing of items)"
        )
    return index.contiguous()


def grid_view(
    reshape: Reshape, output: torch.Tensor, layer: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(grid [B, C, h, w], the output rebuilt from the grid)`` for one forward pass.

    The rebuilt output equals ``output`` element for element; the model's forward continues
    from it, so everything downstream (the logits) depends on ``grid``.

    Args:
        reshape: the layer's reshape.
        output: the layer's output in this forward pass.
        layer: the layer's name, for errors.

    Raises:
        ValueError: the output cannot be read as a grid by ``reshape`` (message names the layer
            and the shape).
    """
    if not isinstance(output, torch.Tensor):
        raise ValueError(
            f"layer {layer!r} must output a tensor to be read as a grid, got "
            f"{type(output).__name__}"
        )
    try:
        index = _grid_index(reshape, output.shape, output.device)
    except ValueError as error:
        raise ValueError(f"layer {layer!r}: {error}") from None
    flat = output.reshape(-1)
    grid = flat[index]
    rebuilt = flat.index_put((index.reshape(-1),), grid.reshape(-1)).view_as(output)
    return grid, rebuilt
