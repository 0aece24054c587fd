"""Grad-CAM as pytorch-grad-cam computes it.

Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017.

``w_k = mean_ij d y_c / d A_k,ij`` (the spatial mean of the gradient of the target logit with
respect to the layer's activations), ``cam = ReLU(sum_k w_k A_k)``, then min-max, bilinear resize
to the input and min-max again (:class:`.cam.CAMExplainer`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from sidu_bench.explainers.cam import CAMExplainer
from sidu_bench.explainers.registry import register_explainer

__all__ = ["GradCAM"]


@register_explainer("gradcam")
class GradCAM(CAMExplainer):
    """Grad-CAM (Selvaraju et al., ICCV 2017) as pytorch-grad-cam computes it.

    The gradient is taken with :func:`torch.autograd.grad` with respect to the layer's output
    only, so no parameter's ``.grad`` is touched; the input requires grad so that the layer's
    output is differentiable even when the parameters are frozen. The whole batch runs in one
    forward and one backward pass (``batch_size`` does not apply).
    """

    needs_gradient = True

    def weights(
        self, images: Tensor, targets: Tensor, logits: Tensor, activations: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Return ``w_k = mean_ij d y_c / d A_k,ij`` (float64) and the activations."""
        # a clone outside inference mode: targets may be inference tensors
        score = logits.float().gather(1, targets[:, None].clone()).sum()
        (gradients,) = torch.autograd.grad(score, activations, allow_unused=True)
        if gradients is None:
            raise ValueError(
                f"the logits do not depend on layer {self.layer_name!r}; choose a layer on the "
                "path from the input to the logits"
            )
        return gradients.detach().to(torch.float64).mean(dim=(2, 3)), activations
