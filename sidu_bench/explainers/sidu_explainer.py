"""SIDU (Muddamsetty et al., Pattern Recognition 127 (2022) 108604) in the registry.

The method of :class:`sidu.SIDU` (see it for the formulas), run on the public core
:func:`sidu.core.run_sidu`: the explainer base checks the images once, puts the model in eval
mode and captures the layer in the clean forward. Options ``threshold`` and ``kernel_width``; the
layer is the caller's (the model's default layer in a run).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn

from sidu.core import SIDUOptions, run_sidu
from sidu.scores import class_probabilities
from sidu.tokens import Reshape
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
        >>> net = torch.nn.Sequential(  # two classes: the pooled channels of a convolution
        ...     torch.nn.Conv2d(3, 2, 3, padding=1), torch.nn.AdaptiveMaxPool2d(1),
        ...     torch.nn.Flatten())
        >>> maps = get_explainer("sidu:threshold=0.5", net, "0")(
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
        reshape: Reshape | None = None,
    ) -> None:
        super().__init__(model, layer, options=options, settings=settings, reshape=reshape)
        # every setting but the seed (SIDU draws nothing) is a SIDU option of the same name
        run = {f.name: getattr(settings, f.name) for f in fields(settings) if f.name != "seed"}
        self._sidu_options = SIDUOptions(
            threshold=options.threshold, kernel_width=options.kernel_width, **run
        )

    def explain(
        self, images: torch.Tensor, targets: torch.Tensor, item_ids: tuple[str, ...]
    ) -> torch.Tensor:
        """Return SIDU maps ``[B, S, S]`` for ``targets``."""

        def clean_forward() -> tuple[torch.Tensor, torch.Tensor]:
            logits, features = self._forward_layer(images)
            self._check_targets(targets, logits)
            return features, class_probabilities(logits)

        result = run_sidu(
            self.model,
            images,
            clean_forward=clean_forward,
            output_vectors=class_probabilities,
            targets=lambda _probabilities: targets,
            options=self._sidu_options,
        )
        self.backend_used = result.backend
        return result.saliency
