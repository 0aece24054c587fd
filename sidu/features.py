"""SIDU for a backbone without a classifier head (the seed package's ``sidu(backbone, images)``).

With no class probabilities to compare, this form works in the backbone's feature space:

* masks ``B_k = A_k > threshold`` come from the backbone's output maps ``A`` (``K x h x w``);
* an image's vector ``f`` is the global-average-pooled backbone output, L2-normalised;
* ``SD_k = exp(-||f_0 - f_k||^2 / (2 sigma^2))`` (the whole vector instead of one class);
* ``U_k`` and the map are computed from the ``f`` vectors exactly as the paper does from the
  probability vectors.

It answers "which regions keep the backbone's representation of this image", not "why this
class"; prefer :class:`sidu.SIDU` on the full classifier when one exists.
"""

from __future__ import annotations

import torch
from torch import nn

from sidu.core import SIDUOptions, SIDUResult, run_sidu
from sidu.engine import forward_context
from sidu.modes import eval_mode
from sidu.validation import check_model_inputs

__all__ = ["sidu_features"]


def _pooled_unit_features(output: torch.Tensor) -> torch.Tensor:
    """Global-average-pool ``[n, K, h, w]`` maps and L2-normalise, in float64."""
    if output.dim() != 4:
        raise ValueError(
            f"backbone must output feature maps [B, K, h, w], got shape {tuple(output.shape)}"
        )
    pooled = output.to(torch.float64).mean(dim=(2, 3))
    return torch.nn.functional.normalize(pooled, dim=1)


def sidu_features(
    backbone: nn.Module,
    images: torch.Tensor,
    *,
    threshold: float = 0.1,
    kernel_width: float = 0.25,
    batch_size: int | None = None,
    dtype: torch.dtype | None = None,
    deduplicate: bool = True,
) -> SIDUResult:
    """Explain ``images`` with SIDU in the feature space of a headless ``backbone``.

    Args:
        backbone: a network returning feature maps ``[B, K, h, w]`` (e.g. a ResNet without its
            pooling and fully connected layers, as ``sidu.load_torch_backbone`` returns).
        images: ``[B, C, H, W]`` inputs.
        threshold: activation binarisation threshold.
        kernel_width: ``sigma`` of the similarity kernel on the feature distance.
        batch_size: masked images per forward pass (``None``: from a memory budget).
        dtype: ``None``, or ``torch.bfloat16``/``torch.float16`` for autocast forward passes.
        deduplicate: forward each distinct binary mask once.

    Returns:
        A :class:`~sidu.SIDUResult` whose ``outputs`` are the clean feature vectors and whose
        ``predicted``/``target`` are ``-1``.

    """
    if not isinstance(backbone, nn.Module):
        raise TypeError(f"backbone must be a torch.nn.Module, got {type(backbone).__name__}")
    options = SIDUOptions(threshold, kernel_width, batch_size, dtype, deduplicate)
    check_model_inputs(backbone, images, dtype=dtype)

    def clean_forward() -> tuple[torch.Tensor, torch.Tensor]:
        with forward_context(images.device, dtype):
            maps = backbone(images)
        return maps, _pooled_unit_features(maps)

    with eval_mode(backbone):
        return run_sidu(
            backbone,
            images,
            clean_forward=clean_forward,
            output_vectors=_pooled_unit_features,
            targets=None,
            options=options,
        )
