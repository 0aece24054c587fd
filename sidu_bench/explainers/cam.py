"""Class activation maps: the base class of Grad-CAM and Score-CAM, and their post-processing.

A CAM weighs the channels of the explained layer's activations ``A`` (``K x h x w``):
``cam = ReLU(sum_k w_k A_k)``. :class:`CAMExplainer` owns everything but the weights: the clean
forward with the layer captured (hook removed afterwards), the target checks, the weighted sum
in float64 and :func:`cam_to_map`; a method implements :meth:`CAMExplainer.weights` only.

:func:`cam_to_map` is pytorch-grad-cam's post-processing (``BaseCAM.compute_cam_per_layer`` then
``aggregate_multi_layers``): ReLU, ``scale_cam_image`` with a target size (min-max
``(x - min) / (max - min + 1e-7)``, then ``cv2.resize`` with its default ``INTER_LINEAR``:
bilinear at pixel centres, clamped at the border, no anti-aliasing, i.e.
:func:`sidu.resize.resize` with ``rule="interpolate"``) and ``scale_cam_image`` once more at full
size (the second min-max), in float64.
"""

from __future__ import annotations

import abc
import contextlib
from typing import ClassVar

import torch
from torch import Tensor

from sidu.resize import resize
from sidu_bench.explainers.base import LayerExplainer, recording_gradients

__all__ = ["MINMAX_GUARD", "CAMExplainer", "cam_to_map"]

MINMAX_GUARD = 1e-7
"""The ``1e-7`` of pytorch-grad-cam's ``scale_cam_image``."""


def _minmax(maps: torch.Tensor) -> torch.Tensor:
    """Per map: ``(x - min) / (max - min + 1e-7)`` over the last two axes."""
    flat = maps.flatten(-2)
    low = flat.min(dim=-1).values[..., None, None]
    shifted = maps - low
    return shifted / (shifted.flatten(-2).max(dim=-1).values[..., None, None] + MINMAX_GUARD)


def cam_to_map(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Return ``minmax(resize(minmax(relu(cam))))`` as pytorch-grad-cam computes its maps.

    Args:
        cam: ``[B, h, w]`` weighted activation sums ``sum_k w_k A_k``.
        size: the input's ``(H, W)``.

    Returns:
        ``[B, H, W]`` float64 maps in ``[0, 1)``.

    Example:
        >>> cam_to_map(torch.tensor([[[-1.0, 1.0]]]), (1, 4)).round(decimals=4).tolist()
        [[[0.0, 0.25, 0.75, 1.0]]]

    """
    small = _minmax(cam.to(torch.float64).clamp_min(0.0))
    return _minmax(resize(small[:, None], size, rule="interpolate")[:, 0])


class CAMExplainer(LayerExplainer):
    """A class activation map ``ReLU(sum_k w_k A_k)`` of the layer, resized by :func:`cam_to_map`.

    A subclass implements :meth:`weights`; with ``needs_gradient = True`` the activations it
    gets are part of an autograd graph from the images (see
    :meth:`~sidu_bench.explainers.base.LayerExplainer._forward_layer`), and the weights are
    computed within :func:`~sidu_bench.explainers.base.recording_gradients`.

    Example:
        >>> from sidu_bench.explainers import get_explainer
        >>> net = torch.nn.Sequential(
        ...     torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
        ...     torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> images, targets = torch.rand(2, 3, 8, 8), torch.tensor([0, 1])
        >>> [tuple(get_explainer(name, net, "1")(images, targets, ["a", "b"]).shape)
        ...  for name in ("gradcam", "scorecam", "scorecam:max_channels=2")]
        [(2, 8, 8), (2, 8, 8), (2, 8, 8)]

    """

    needs_gradient: ClassVar[bool] = False

    def explain(
        self, images: torch.Tensor, targets: torch.Tensor, item_ids: tuple[str, ...]
    ) -> torch.Tensor:
        """Return the CAMs ``[B, S, S]`` (float64) of ``targets``."""
        gradients = recording_gradients() if self.needs_gradient else contextlib.nullcontext()
        with gradients:
            logits, activations = self._forward_layer(images, gradient=self.needs_gradient)
            self._check_targets(targets, logits)
            weights, activations = self.weights(images, targets, logits, activations)
        cam = torch.einsum("bk,bkhw->bhw", weights, activations.detach().to(torch.float64))
        return cam_to_map(cam, tuple(images.shape[-2:]))

    @abc.abstractmethod
    def weights(
        self, images: Tensor, targets: Tensor, logits: Tensor, activations: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Return the channel weights ``[B, N]`` (float64) and the activations they weigh.

        Args:
            images: the checked inputs ``[B, C, H, W]``.
            targets: ``[B]`` long classes, checked against ``logits``.
            logits: ``[B, num_classes]`` of the clean forward.
            activations: the layer's output ``[B, K, h, w]`` in that forward.

        Returns:
            ``(w, A)``: ``A`` is ``activations`` or ``N`` of its channels per image (``[B, N,
            h, w]``, any dtype), and ``w`` weighs them.
        """
