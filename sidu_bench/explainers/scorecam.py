"""Score-CAM as pytorch-grad-cam computes it.

Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks",
CVPR Workshops 2020.

For the layer's activations ``A`` (``K x h x w``): ``U_k`` = ``A_k`` upsampled to the input
bilinearly with ``align_corners=True`` (pytorch-grad-cam's ``UpsamplingBilinear2d``), mask
``M_k = (U_k - min U_k) / (max U_k - min U_k + 1e-8)``, score ``s_k`` = the target logit of
``model(x * M_k)``, ``w = softmax_k(s)``, ``cam = ReLU(sum_k w_k A_k)``, then min-max, bilinear
resize and min-max as Grad-CAM (:func:`._cam.cam_to_map`). The ``K`` masked forwards run on
:func:`sidu.masked_forward`; masks are made chunk by chunk, never all ``K`` at full size.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F  # noqa: N812

from sidu_bench.explainers._cam import cam_to_map
from sidu_bench.explainers.base import LayerExplainer
from sidu_bench.explainers.registry import register_explainer

__all__ = ["ScoreCAM", "ScoreCAMMasks"]

logger = logging.getLogger(__name__)

MASK_GUARD = 1e-8
"""The ``1e-8`` of pytorch-grad-cam's per-channel min-max of the upsampled activations."""


class ScoreCAMMasks:
    """Mask source: per-channel min-max-normalised activations upsampled to the input.

    Args:
        activations: ``[B, K, h, w]`` layer outputs (the masks take their dtype and device).
        size: the input's ``(H, W)``.
    """

    def __init__(self, activations: torch.Tensor, size: tuple[int, int]) -> None:
        self._activations = activations
        self._size = size

    def num_masks(self, image_index: int) -> int:
        """Return ``K``, the layer's channel count."""
        return self._activations.shape[1]

    def masks(self, image_index: int, start: int, stop: int) -> torch.Tensor:
        """Return masks ``start:stop`` of one image, ``[n, H, W]``, outside autocast."""
        device = self._activations.device
        with torch.autocast(device_type=device.type, enabled=False):
            small = self._activations[image_index, start:stop][None]
            up = F.interpolate(small, size=self._size, mode="bilinear", align_corners=True)[0]
            flat = up.flatten(1)
            low = flat.min(dim=1).values[:, None, None]
            high = flat.max(dim=1).values[:, None, None]
            return (up - low) / (high - low + MASK_GUARD)


@register_explainer("scorecam")
class ScoreCAM(LayerExplainer):
    """Score-CAM (Wang et al., CVPRW 2020) as pytorch-grad-cam computes it.

    Example:
        >>> from sidu_bench.explainers import get_explainer
        >>> net = torch.nn.Sequential(
        ...     torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
        ...     torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> maps = get_explainer("scorecam", net, "1")(
        ...     torch.rand(2, 3, 8, 8), torch.tensor([0, 1]), ["a", "b"])
        >>> tuple(maps.shape)
        (2, 8, 8)
    """

    def explain(
        self, images: torch.Tensor, targets: torch.Tensor, item_ids: tuple[str, ...]
    ) -> torch.Tensor:
        """Return Score-CAM maps ``[B, S, S]`` (float64) for ``targets``."""
        with self._capture() as capture:
            capture.arm()
            logits = self._logits(images)
            activations = capture.take().to(images.dtype)
        self._check_targets(targets, logits)
        size = tuple(images.shape[-2:])
        logger.debug("scorecam: %d images x %d masks", *activations.shape[:2])
        scores = self._masked_forward(
            images,
            ScoreCAMMasks(activations, size),
            lambda outputs, owner: outputs.to(torch.float64).gather(1, targets[owner, None])[:, 0],
        )
        weights = torch.softmax(torch.stack(scores), dim=1)
        cam = torch.einsum("bk,bkhw->bhw", weights, activations.to(torch.float64))
        return cam_to_map(cam, size)
