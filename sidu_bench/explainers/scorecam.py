"""Score-CAM as pytorch-grad-cam computes it, optionally on the top-variance channels only.

Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks",
CVPR Workshops 2020.

For the layer's activations ``A`` (``K x h x w``): ``U_k`` = ``A_k`` upsampled to the input
bilinearly with ``align_corners=True`` (pytorch-grad-cam's ``UpsamplingBilinear2d``), mask
``M_k = (U_k - min U_k) / (max U_k - min U_k + 1e-8)``, score ``s_k`` = the target logit of
``model(x * M_k)``, ``w = softmax_k(s)``, ``cam = ReLU(sum_k w_k A_k)``, then min-max, bilinear
resize and min-max as Grad-CAM (:class:`.cam.CAMExplainer`). The ``K`` masked forwards run on
:func:`sidu.masked_forward`; masks are made chunk by chunk, never all ``K`` at full size.

Option ``max_channels`` (``N``, default ``-1``: all channels, plain Score-CAM) is the channel
selection of Faster Score-CAM (tabayashi0117/Score-CAM, ``Faster-Score-CAM``): per image, only
the ``N`` channels with the largest population variance over the ``h x w`` positions
(:func:`top_variance_channels`; ties go to the lower channel index) make masks, so ``N`` masked
forwards replace ``K``, and the softmax and the weighted sum run over those ``N`` channels only:
``cam = ReLU(sum_{k in top N} softmax(s)_k A_k)``. ``N >= K`` is plain Score-CAM exactly.
pytorch-grad-cam's ``ScoreCAM`` does the same work when its ``reshape_transform`` gathers the
channels of :func:`top_variance_channels` computed on the same activations.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor

from sidu.resize import resize
from sidu_bench.explainers.cam import CAMExplainer
from sidu_bench.explainers.registry import register_explainer

__all__ = [
    "ALL_CHANNELS",
    "ScoreCAM",
    "ScoreCAMMasks",
    "ScoreCAMOptions",
    "top_variance_channels",
]

logger = logging.getLogger(__name__)

MASK_GUARD = 1e-8
"""The ``1e-8`` of pytorch-grad-cam's per-channel min-max of the upsampled activations."""

ALL_CHANNELS = -1
"""``max_channels`` value (the default) that keeps every channel: plain Score-CAM.

The option system types options as ``int``, ``float`` or ``bool`` only (no ``None``), so "no
limit" is this sentinel; it is dropped from the label like any default."""


@dataclass(frozen=True)
class ScoreCAMOptions:
    """Score-CAM options: ``max_channels`` (``N`` top-variance channels; ``-1``: all)."""

    max_channels: int = ALL_CHANNELS

    def __post_init__(self) -> None:
        """Validate the options."""
        value = self.max_channels
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or (value < 1 and value != ALL_CHANNELS)
        ):
            raise ValueError(
                f"max_channels must be an int >= 1, or {ALL_CHANNELS} for all channels, "
                f"got {value!r}"
            )


def top_variance_channels(activations: torch.Tensor, count: int) -> torch.Tensor:
    """Return, per image, the ``count`` channels of largest spatial variance.

    The variance is the population variance (divided by ``h * w``) of each channel over its
    spatial positions, computed in float64. Channels are ordered by descending variance; equal
    variances keep the lower channel index first (a stable sort), so the choice is deterministic.

    Args:
        activations: ``[B, K, h, w]`` layer outputs (any number of spatial axes after ``K``).
        count: ``N >= 1``, how many channels to keep; ``N > K`` keeps all ``K``.

    Returns:
        ``[B, min(N, K)]`` long channel indices on the activations' device.

    Raises:
        ValueError: ``activations`` has fewer than 3 axes or ``count`` is not an int >= 1.

    Example:
        >>> a = torch.zeros(1, 4, 2, 2)
        >>> a[0, 1] = torch.tensor([[0.0, 2.0], [0.0, 2.0]])
        >>> a[0, 2] = a[0, 3] = torch.tensor([[0.0, 4.0], [0.0, 4.0]])
        >>> top_variance_channels(a, 3).tolist()
        [[2, 3, 1]]
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be an int >= 1, got {count!r}")
    if activations.dim() < 3:
        raise ValueError(f"activations must be [B, K, h, w], got shape {tuple(activations.shape)}")
    variance = activations.detach().to(torch.float64).flatten(2).var(dim=2, correction=0)
    order = torch.sort(variance, dim=1, descending=True, stable=True).indices
    return order[:, :count]


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
            up = resize(small, self._size, rule="align_corners")[0]
            flat = up.flatten(1)
            low = flat.min(dim=1).values[:, None, None]
            high = flat.max(dim=1).values[:, None, None]
            return (up - low) / (high - low + MASK_GUARD)


@register_explainer("scorecam")
class ScoreCAM(CAMExplainer):
    """Score-CAM (Wang et al., CVPRW 2020) as pytorch-grad-cam computes it.

    With ``max_channels=N`` only each image's ``N`` top-variance channels are scored (Faster
    Score-CAM); see the module docstring. The masked forwards run in chunks of ``batch_size``.
    """

    options_type = ScoreCAMOptions

    def weights(
        self, images: Tensor, targets: Tensor, logits: Tensor, activations: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Return ``softmax_k(s)`` over the kept channels and those channels' activations."""
        options: ScoreCAMOptions = self.options
        activations = activations.to(images.dtype)
        channels = activations.shape[1]
        limit = options.max_channels
        kept = channels if limit == ALL_CHANNELS else min(limit, channels)
        if kept < channels:
            index = top_variance_channels(activations, kept)
            activations = activations.gather(
                1, index[:, :, None, None].expand(-1, -1, *activations.shape[2:])
            )
        logger.debug("scorecam: %d images x %d masks (of %d channels)", len(images), kept, channels)
        scores = self._masked_forward(
            images,
            ScoreCAMMasks(activations, tuple(images.shape[-2:])),
            lambda outputs, owner: outputs.to(torch.float64).gather(1, targets[owner, None])[:, 0],
        )
        return torch.softmax(torch.stack(scores), dim=1), activations
