"""Baselines that use no model (docs/protocol.md, item 11): ``center`` and ``random``.

They give the score of a method with no information: ``center`` is strong on object-centred
data (Caltech-101), ``random`` is chance.
"""

from __future__ import annotations

import torch

from sidu_bench.explainers.base import Explainer
from sidu_bench.explainers.registry import register_explainer
from sidu_bench.explainers.seeding import item_generator

__all__ = ["CenterBaseline", "RandomBaseline", "center_map"]

SIGMA_FRACTION = 0.25
"""The Gaussian's standard deviation as a fraction of the shorter image side."""


def center_map(size: tuple[int, int]) -> torch.Tensor:
    """Return ``exp(-((i - (H-1)/2)^2 + (j - (W-1)/2)^2) / (2 sigma^2))``, ``sigma = min(H, W)/4``.

    An isotropic Gaussian centred on the image (pixel ``(i, j)`` at its centre), peak 1 at the
    image centre; float64 ``[H, W]``.

    Example:
        >>> center_map((3, 3))[1, 1].item()
        1.0
    """
    height, width = size
    sigma = SIGMA_FRACTION * min(height, width)
    rows = torch.arange(height, dtype=torch.float64) - (height - 1) / 2
    cols = torch.arange(width, dtype=torch.float64) - (width - 1) / 2
    squared = rows[:, None].square() + cols[None, :].square()
    return torch.exp(-squared / (2.0 * sigma**2))


@register_explainer("center")
class CenterBaseline(Explainer):
    """Centred isotropic Gaussian, sigma = 0.25 x the shorter side (docs/protocol.md, item 11).

    Example:
        >>> from sidu_bench.explainers import get_explainer
        >>> maps = get_explainer("center")(torch.zeros(1, 3, 4, 6), torch.tensor([0]), ["a"])
        >>> tuple(maps.shape)
        (1, 4, 6)
    """

    def explain(
        self, images: torch.Tensor, targets: torch.Tensor, item_ids: tuple[str, ...]
    ) -> torch.Tensor:
        """Return the same Gaussian for every image."""
        single = center_map(tuple(images.shape[-2:])).to(images.device)
        return single.expand(images.shape[0], -1, -1)


@register_explainer("random")
class RandomBaseline(Explainer):
    """Uniform noise in [0, 1), seeded per item from (seed, item id) (docs/protocol.md, item 11).

    The noise is ``torch.rand((H, W), generator=g)`` with ``g`` from
    :func:`.seeding.item_generator` (stream ``"random"``), drawn on the CPU.

    Example:
        >>> from sidu_bench.explainers import get_explainer
        >>> random = get_explainer("random", seed=3)
        >>> a = random(torch.zeros(1, 3, 4, 4), torch.tensor([0]), ["x"])
        >>> b = random(torch.zeros(2, 3, 4, 4), torch.tensor([0, 0]), ["y", "x"])
        >>> torch.equal(a[0], b[1])
        True
    """

    def explain(
        self, images: torch.Tensor, targets: torch.Tensor, item_ids: tuple[str, ...]
    ) -> torch.Tensor:
        """Return one seeded noise map per item."""
        size = tuple(images.shape[-2:])
        maps = [
            torch.rand(size, generator=item_generator(self.settings.seed, item_id, "random"))
            for item_id in item_ids
        ]
        return torch.stack(maps).to(images.device)
