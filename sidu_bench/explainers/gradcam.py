"""Grad-CAM as pytorch-grad-cam computes it.

Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017.

``w_k = mean_ij d y_c / d A_k,ij`` (the spatial mean of the gradient of the target logit with
respect to the layer's activations), ``cam = ReLU(sum_k w_k A_k)``, then min-max, bilinear resize
to the input and min-max again (:func:`._cam.cam_to_map`).
"""

from __future__ import annotations

import contextlib

import torch

from sidu_bench.explainers._cam import cam_to_map
from sidu_bench.explainers.base import LayerExplainer
from sidu_bench.explainers.registry import register_explainer

__all__ = ["GradCAM"]


@register_explainer("gradcam")
class GradCAM(LayerExplainer):
    """Grad-CAM (Selvaraju et al., ICCV 2017) as pytorch-grad-cam computes it.

    The gradient is taken with :func:`torch.autograd.grad` with respect to the layer's output
    only, so no parameter's ``.grad`` is touched; the input is given ``requires_grad`` so that the
    layer's output is differentiable even when the parameters are frozen. The whole batch runs in
    one forward and one backward pass (``batch_size`` does not apply).

    Example:
        >>> from sidu_bench.explainers import get_explainer
        >>> net = torch.nn.Sequential(
        ...     torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
        ...     torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> maps = get_explainer("gradcam", net, "1")(
        ...     torch.rand(2, 3, 8, 8), torch.tensor([0, 1]), ["a", "b"])
        >>> tuple(maps.shape)
        (2, 8, 8)
    """

    def explain(
        self, images: torch.Tensor, targets: torch.Tensor, item_ids: tuple[str, ...]
    ) -> torch.Tensor:
        """Return Grad-CAM maps ``[B, S, S]`` (float64) for ``targets``."""
        dtype = self.settings.dtype
        autocast = (
            torch.autocast(device_type=images.device.type, dtype=dtype)
            if dtype in (torch.bfloat16, torch.float16)
            else contextlib.nullcontext()
        )
        with torch.inference_mode(False), torch.enable_grad(), self._capture() as capture:
            inputs = images.detach().clone().requires_grad_(True)
            capture.arm()
            with autocast:
                logits = self.model(inputs)
            activations = capture.take()
            self._check_targets(targets, logits)
            # a clone outside inference mode: targets may be inference tensors
            score = logits.float().gather(1, targets[:, None].clone()).sum()
            (gradients,) = torch.autograd.grad(score, activations, allow_unused=True)
        if gradients is None:
            raise ValueError(
                f"the logits do not depend on layer {self.layer_name!r}; choose a layer on the "
                "path from the input to the logits"
            )
        weights = gradients.detach().to(torch.float64).mean(dim=(2, 3))
        cam = torch.einsum("bk,bkhw->bhw", weights, activations.detach().to(torch.float64))
        return cam_to_map(cam, tuple(images.shape[-2:]))
