"""SIDU (Muddamsetty et al., Pattern Recognition 127 (2022) 108604) in the registry.

A thin wrapper of :class:`sidu.SIDU` (see it for the method): options ``threshold`` and
``kernel_width``; the layer is the caller's (the model's default layer in a run).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sidu import SIDU
from sidu._core import SIDUOptions
from sidu_bench.explainers.base import ExplainerSettings, LayerExplainer
from sidu_bench.explainers.registry import register_explainer

__all__ = ["SIDUExplainer", "SIDUExplainerOptions"]


@dataclass(frozen=True)
class SIDUExplainerOptions:
    """SIDU options: activation ``threshold`` and ``kernel_width`` (sigma of SD)."""

    threshold: float = 0.1
    kernel_width: float = 0.25

    def __post_init__(self) -> None:
        """Validate with SIDU's own checks."""
        SIDUOptions(threshold=self.threshold, kernel_width=self.kernel_width)


@register_explainer("sidu")
class SIDUExplainer(LayerExplainer):
    """SIDU (Muddamsetty et al., Pattern Recognition 2022), the method of :class:`sidu.SIDU`.

    ``S_c = sum_k SD_k,c U_k M_k / K / 0.5`` over the binarised feature maps ``M_k`` of the layer.

    Example:
        >>> from sidu_bench.explainers import get_explainer
        >>> net = torch.nn.Sequential(
        ...     torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
        ...     torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> maps = get_explainer("sidu:threshold=0.5", net, "1")(
        ...     torch.rand(2, 3, 8, 8), torch.tensor([0, 1]), ["a", "b"])
        >>> tuple(maps.shape)
        (2, 8, 8)
    """

    options_type = SIDUExplainerOptions

    def __init__(
        self,
        model: nn.Module,
        layer: str | nn.Module,
        *,
        options: SIDUExplainerOptions,
        settings: ExplainerSettings,
    ) -> None:
        super().__init__(model, layer, options=options, settings=settings)
        self._sidu = SIDU(
            model,
            self.layer,
            threshold=options.threshold,
            kernel_width=options.kernel_width,
            batch_size=settings.batch_size,
            dtype=settings.dtype,
            channels_last=settings.channels_last,
            memory_budget=settings.memory_budget,
            backend=settings.backend,
            precision=settings.precision,
        )

    def explain(
        self, images: torch.Tensor, targets: torch.Tensor, item_ids: tuple[str, ...]
    ) -> torch.Tensor:
        """Return SIDU maps ``[B, S, S]`` for ``targets``."""
        maps = self._sidu(images, targets)
        self._backend_used = self._sidu.backend_used
        return maps
