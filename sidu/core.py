"""The SIDU computation shared by the classifier form, the feature-space form and the benchmark.

For one image with feature map ``A`` (``K x h x w``) at the explained layer:

* ``B_k = A_k > threshold``; ``M_k`` = ``B_k`` resized to ``H x W`` bilinearly with a mirrored
  border (the authors' skimage call, :func:`sidu.resize.resize_reflect`);
* ``p_0`` = the output vector of the clean image, ``p_k`` = that of ``x * M_k``;
* similarity difference ``SD_k = exp(-d_k^2 / (2 sigma^2))`` with ``d_k`` the target-class
  probability difference (or the feature distance in the backbone form);
* uniqueness ``U_k = minmax(sum_j ||p_k - p_j||_2)`` with the authors' ``1e-13`` guard, so equal
  uniqueness everywhere gives all-zero weights and a zero map;
* ``S = sum_k SD_k U_k M_k / K / 0.5``.

Identical binary masks give identical masked images, so each distinct mask is forwarded once and
the per-mask quantities are gathered back; the map is the resize of ``sum_k w_k B_k`` (resizing
is linear), so no full-size mask is kept. All arithmetic after the forward passes is float64.

:func:`run_sidu` is the core without input checks or model handling: :class:`sidu.SIDU`,
:func:`sidu.sidu_features` and the benchmark's SIDU explainer check the images once, put the
model in eval mode and capture the layer, then call it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from sidu.backends import ForwardBackend, check_backend, resolve_backend
from sidu.engine import masked_forward
from sidu.precision import check_dtype, check_precision
from sidu.resize import interpolation_matrix, resize_reflect
from sidu.validation import check_batch_size

__all__ = [
    "MASK_PROBABILITY",
    "MINMAX_GUARD",
    "SIDUOptions",
    "SIDUResult",
    "mask_weights",
    "run_sidu",
]

MASK_PROBABILITY = 0.5
"""The authors' ``p1``: the saliency is divided by ``K`` and by this constant."""

MINMAX_GUARD = 1e-13
"""The authors' guard in the min-max normalisation of the uniqueness."""


@dataclass(frozen=True)
class SIDUResult:
    """Everything one SIDU explanation computes.

    Attributes:
        saliency: ``[B, H, W]`` maps; float32, or float64 for float64 images.
        masks: ``[B, K, h, w]`` boolean masks ``A_k > threshold`` at feature-map resolution.
        outputs: ``[B, C]`` float64 output vector of each clean image that the similarity and
            uniqueness are measured on: class probabilities (classifier form) or L2-normalised
            pooled features (backbone form).
        predicted: ``[B]`` arg-max class of the clean image (``-1`` in the backbone form).
        target: ``[B]`` explained class (``-1`` in the backbone form).
        similarity_difference: ``[B, K]`` float64 ``SD_k``.
        uniqueness: ``[B, K]`` float64 min-max-normalised ``U_k``.
        weights: ``[B, K]`` float64 ``SD_k * U_k``.
        num_distinct_masks: ``[B]`` number of distinct binary masks (masked forward passes).
        forwarded_images: forward-passed images in all: the clean batch plus the distinct masks.
        backend: the engine that ran the masked forwards (and why ``"auto"`` chose it).

    """

    saliency: torch.Tensor
    masks: torch.Tensor
    outputs: torch.Tensor
    predicted: torch.Tensor
    target: torch.Tensor
    similarity_difference: torch.Tensor
    uniqueness: torch.Tensor
    weights: torch.Tensor
    num_distinct_masks: torch.Tensor
    forwarded_images: int
    backend: ForwardBackend


@dataclass(frozen=True)
class SIDUOptions:
    """Settings of one SIDU computation (see :class:`sidu.SIDU` for their meaning)."""

    threshold: float = 0.1
    kernel_width: float = 0.25
    batch_size: int | None = None
    dtype: torch.dtype | None = None
    deduplicate: bool = True
    channels_last: bool = False
    memory_budget: int | None = None
    backend: str = "torch"
    precision: str = "ieee"

    def __post_init__(self) -> None:
        """Validate the settings."""
        if not isinstance(self.threshold, int | float) or self.threshold != self.threshold:
            raise ValueError(f"threshold must be a real number, got {self.threshold!r}")
        if not isinstance(self.kernel_width, int | float) or not self.kernel_width > 0:
            raise ValueError(f"kernel_width must be a number > 0, got {self.kernel_width!r}")
        check_batch_size(self.batch_size)
        check_dtype(self.dtype)
        check_backend(self.backend)
        check_precision(self.precision)


class _ResizedBinaryMasks:
    """Mask source: each image's distinct binary masks, resized chunk by chunk."""

    def __init__(self, distinct: list[torch.Tensor], size: tuple[int, int]) -> None:
        height, width = distinct[0].shape[-2:]
        dtype, device = distinct[0].dtype, distinct[0].device
        self._distinct = distinct
        self._rows = interpolation_matrix(height, size[0], dtype=dtype, device=device)
        self._cols = interpolation_matrix(width, size[1], dtype=dtype, device=device).T

    def num_masks(self, image_index: int) -> int:
        return self._distinct[image_index].shape[0]

    def masks(self, image_index: int, start: int, stop: int) -> torch.Tensor:
        return self._rows @ self._distinct[image_index][start:stop] @ self._cols


def _distinct_masks(
    binary: torch.Tensor, deduplicate: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return ``(distinct [D, h, w], inverse [K], counts [D])`` of one image's ``[K, h, w]``."""
    count = binary.shape[0]
    if not deduplicate:
        inverse = torch.arange(count, device=binary.device)
        return binary, inverse, torch.ones(count, dtype=torch.long, device=binary.device)
    flat = binary.reshape(count, -1).to(torch.uint8)
    distinct, inverse, counts = torch.unique(flat, dim=0, return_inverse=True, return_counts=True)
    return distinct.reshape(-1, *binary.shape[1:]).bool(), inverse, counts


def mask_weights(
    reference: torch.Tensor,
    outputs: torch.Tensor,
    counts: torch.Tensor,
    inverse: torch.Tensor,
    *,
    target: int | None,
    kernel_width: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return ``(SD [K], U [K], SD * U [K])`` for one image, all float64.

    Args:
        reference: ``[C]`` output vector of the clean image.
        outputs: ``[D, C]`` output vectors of the distinct masked images.
        counts: ``[D]`` how many of the ``K`` masks each distinct mask stands for.
        inverse: ``[K]`` index of each mask's distinct mask.
        target: the class whose probability difference defines ``SD``; ``None`` uses the full
            vector distance (backbone form).
        kernel_width: ``sigma`` of the similarity kernel.

    """
    if target is None:
        squared = (outputs - reference).square().sum(dim=1)
    else:
        squared = (outputs[:, target] - reference[target]).square()
    similarity = torch.exp(-squared / (2.0 * kernel_width**2))
    distances = torch.cdist(
        outputs.unsqueeze(0), outputs.unsqueeze(0), compute_mode="donot_use_mm_for_euclid_dist"
    )[0]
    raw = (distances @ counts.to(distances.dtype))[inverse]
    uniqueness = (raw - raw.min()) / (raw.max() - raw.min() + MINMAX_GUARD)
    similarity = similarity[inverse]
    return similarity, uniqueness, similarity * uniqueness


def run_sidu(
    model: nn.Module,
    images: torch.Tensor,
    *,
    clean_forward: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    output_vectors: Callable[[torch.Tensor], torch.Tensor],
    targets: Callable[[torch.Tensor], torch.Tensor] | None,
    options: SIDUOptions,
) -> SIDUResult:
    """Run SIDU on a checked batch; the caller has put the model in eval mode.

    Nothing is checked here: ``images`` must have passed :func:`sidu.validation.check_images`
    and be on the model's device, and ``targets`` must return valid classes.

    Args:
        model: the network forwarded on the masked images.
        images: ``[B, C, H, W]`` inputs.
        clean_forward: runs the clean batch and returns ``(feature maps [B, K, h, w],
            output vectors [B, C] float64)``.
        output_vectors: maps the model's outputs on masked images to float64 vectors ``[n, C]``.
        targets: maps the clean output vectors to the ``[B]`` explained classes; ``None`` for the
            backbone form (``SD`` on the full vector).
        options: the settings.

    """
    features, reference = clean_forward()
    batch, size = images.shape[0], tuple(images.shape[-2:])
    classes = targets(reference) if targets is not None else None
    binary = features > options.threshold
    mask_dtype = images.dtype
    prepared = [_distinct_masks(binary[b], options.deduplicate) for b in range(batch)]
    source = _ResizedBinaryMasks([d.to(mask_dtype) for d, _, _ in prepared], size)
    backend = resolve_backend(
        model, images, options.backend, dtype=options.dtype, channels_last=options.channels_last
    )
    masked = masked_forward(
        model,
        images,
        source,
        transform=lambda out, _owner: output_vectors(out),
        batch_size=options.batch_size,
        memory_budget=options.memory_budget,
        dtype=options.dtype,
        channels_last=options.channels_last,
        backend=backend,
        precision=options.precision,
        validate_args=False,
    )

    rows = [
        mask_weights(
            reference[b],
            masked[b],
            counts,
            inverse,
            target=None if classes is None else int(classes[b]),
            kernel_width=options.kernel_width,
        )
        for b, (_, inverse, counts) in enumerate(prepared)
    ]
    similarity, uniqueness, weights = (torch.stack(parts) for parts in zip(*rows, strict=True))
    small = torch.einsum("bk,bkhw->bhw", weights, binary.to(torch.float64))
    small = small / binary.shape[1] / MASK_PROBABILITY
    out_dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
    saliency = resize_reflect(small, size).to(out_dtype)

    none = torch.full((batch,), -1, dtype=torch.long, device=images.device)
    return SIDUResult(
        saliency=saliency,
        masks=binary,
        outputs=reference,
        predicted=reference.argmax(dim=1) if classes is not None else none,
        target=classes if classes is not None else none,
        similarity_difference=similarity,
        uniqueness=uniqueness,
        weights=weights,
        num_distinct_masks=torch.tensor([d.shape[0] for d, _, _ in prepared], device=images.device),
        forwarded_images=batch + sum(d.shape[0] for d, _, _ in prepared),
        backend=backend,
    )
