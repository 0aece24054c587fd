"""Insertion and deletion curves and AUCs (Petsiuk et al., "RISE", BMVC 2018), batched."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from sidu.backends import ForwardBackend, resolve_backend, torch_threads_for
from sidu.chunking import balanced_chunk_size
from sidu.engine import auto_batch_size, forward_context
from sidu.modes import eval_mode
from sidu.precision import fp32_precision
from sidu.resize import resize
from sidu.scores import target_probability
from sidu.validation import check_images, check_logits, check_model_device, resolve_target

from ._validation import check_positive_int, check_saliency, check_substrate
from .registry import Metric, MetricScore, ScoredItem, ScoringSettings, Statistic, register_metric
from .substrates import rise_blur, rise_blur_description

logger = logging.getLogger(__name__)

DEFAULT_STEPS = 224
#: Input-sized tensors a perturbed image of a chunk holds besides its forward pass (the two
#: sources it is gathered from).
SOURCES_PER_IMAGE = 2
#: The protocol object's words for what the code does (see :func:`insertion_deletion`).
DELETION_SUBSTRATE = "zeros (normalised space)"
CURVE_SCORE = "softmax probability of the target"
PIXEL_ORDER = "saliency descending, ties by row-major index"


@dataclass(frozen=True)
class InsertionDeletionResult:
    """Insertion and deletion curves of a batch of images, as :func:`insertion_deletion` returns.

    Attributes:
        insertion_auc: ``[B]`` float64, area under the insertion curve.
        deletion_auc: ``[B]`` float64, area under the deletion curve.
        insertion_curve: ``[B, n_steps + 1]`` float64, target probability after each step.
        deletion_curve: ``[B, n_steps + 1]`` float64, likewise for deletion.
        target: ``[B]`` int64, the explained class of each image.
        n_steps: number of steps.
        step_rule: ``"steps"`` (a fixed number of steps) or ``"step"`` (fixed pixels per step).
        step: pixels per step under the ``"step"`` rule, None under the ``"steps"`` rule.
        pixels_changed: ``[n_steps + 1]`` int64, pixels changed after each step (the x axis).

    """

    insertion_auc: Tensor
    deletion_auc: Tensor
    insertion_curve: Tensor
    deletion_curve: Tensor
    target: Tensor
    n_steps: int
    step_rule: Literal["steps", "step"]
    step: int | None
    pixels_changed: Tensor


def curve_auc(curve: Tensor) -> Tensor:
    """Return the trapezoid area under ``curve [..., n + 1]``, x in [0, 1].

    ``AUC = (sum - first / 2 - last / 2) / n`` (RISE, Petsiuk et al., BMVC 2018).
    """
    n_steps = curve.shape[-1] - 1
    return (curve.sum(-1) - curve[..., 0] / 2 - curve[..., -1] / 2) / n_steps


def insertion_deletion(
    model: nn.Module,
    images: Tensor,
    saliency: Tensor,
    *,
    target: int | Sequence[int] | Tensor | None = None,
    steps: int = DEFAULT_STEPS,
    step: int | None = None,
    batch_size: int | None = None,
    deletion_substrate: Tensor | None = None,
    insertion_substrate: Tensor | None = None,
    backend: str | ForwardBackend = "torch",
    precision: str = "ieee",
) -> InsertionDeletionResult:
    """Compute insertion/deletion curves and AUCs of saliency maps (Petsiuk et al., RISE, 2018).

    Pixels are ranked by descending saliency (ties: ascending row-major index). Step ``i``
    (0-based) changes the pixels of rank ``floor(i*HW/steps)`` to ``floor((i+1)*HW/steps) - 1``
    (exactly ``steps`` steps at any size; RISE's 224 pixels per step at 224 px); a given ``step``
    (pixels per step) overrides this with ``n_steps = ceil(HW/step)``. All channels of a pixel
    change together. Deletion starts from the image and replaces pixels with
    ``deletion_substrate`` (default zeros, in the model's normalised space); insertion starts
    from ``insertion_substrate`` (default :func:`rise_blur` of the image) and puts the original
    pixels back. The curve holds ``softmax(model(x))[target]`` (softmax in float64) after
    0..n_steps steps and ``AUC = (sum - first/2 - last/2) / n_steps``.

    All steps of all images go through the model in chunks (``batch_size`` images, default sized
    by a memory budget); each chunk is built on the images' device from the pixel ranks, without
    host synchronisation per step. The clean image is forwarded once and serves as the first
    deletion and the last insertion point: ``B * (2 * n_steps + 1)`` forwards in all. The model
    runs in eval mode under ``torch.inference_mode``; every module's training flag is restored.

    Args:
        model: classifier returning logits ``[N, num_classes]``, on the images' device.
        images: normalised model inputs ``[B, C, H, W]`` (float32 or float64).
        saliency: maps ``[B, H, W]``, or ``[B, h, w]`` resized bilinearly (align_corners=False).
        target: explained class per image (int, sequence or tensor ``[B]``); None = the class the
            model predicts on the clean image.
        steps: number of steps under the default rule.
        step: pixels per step; overrides ``steps``.
        batch_size: images per forward pass; overrides the memory budget.
        deletion_substrate: tensor broadcastable to ``images``; default zeros.
        insertion_substrate: tensor broadcastable to ``images``; default ``rise_blur(images)``.
        backend: engine of the model's forwards, ``"torch"`` (default), ``"onnxruntime"`` or
            ``"auto"`` (see :func:`sidu.backends.resolve_backend`; resolved on ``images`` with
            the model in eval mode), or a :class:`~sidu.backends.ForwardBackend` already
            resolved for ``model``.
        precision: float32 CUDA arithmetic during the call, ``"ieee"`` (default) or ``"tf32"``
            (:func:`sidu.precision.fp32_precision`); the caller's settings are restored after.

    Returns:
        An :class:`InsertionDeletionResult` (tensors on the images' device).

    Example:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
        >>> images, maps = torch.randn(2, 3, 4, 4), torch.rand(2, 4, 4)
        >>> result = insertion_deletion(model, images, maps, steps=8)
        >>> result.deletion_curve.shape, result.n_steps, result.pixels_changed.tolist()
        (torch.Size([2, 9]), 8, [0, 2, 4, 6, 8, 10, 12, 14, 16])

    """
    images = check_images(images)
    batch, _, height, width = images.shape
    saliency = check_saliency(saliency, batch=batch)
    n_pixels = height * width
    if step is None:
        n_steps = check_positive_int(steps, name="steps")
        pixels_changed = torch.arange(n_steps + 1, device=images.device) * n_pixels // n_steps
    else:
        step = check_positive_int(step, name="step")
        n_steps = math.ceil(n_pixels / step)
        pixels_changed = (torch.arange(n_steps + 1, device=images.device) * step).clamp(
            max=n_pixels
        )
    check_model_device(model, images)
    deletion_fill = (
        torch.zeros((), dtype=images.dtype, device=images.device).expand(images.shape)
        if deletion_substrate is None
        else check_substrate(deletion_substrate, images=images, name="deletion_substrate")
    )
    insertion_start = (
        None
        if insertion_substrate is None
        else check_substrate(insertion_substrate, images=images, name="insertion_substrate")
    )
    with fp32_precision(precision), eval_mode(model), torch.inference_mode():
        chunk = _chunk_size(images, batch_size, total=batch * n_steps, model=model)
        logger.debug(
            "insertion/deletion: %d images %dx%d, %d steps, chunks of %d",
            batch,
            height,
            width,
            n_steps,
            chunk,
        )
        forward = resolve_backend(model, images, backend)
        rank = _pixel_rank(resize(saliency.to(images.device), (height, width), rule="clamp"))
        thresholds = pixels_changed.to(rank.dtype)
        clean_logits = torch.cat([forward(part) for part in images.split(chunk)])
        check_logits(clean_logits, batch=batch)
        target_index = resolve_target(target, clean_logits)
        if insertion_start is None:
            insertion_start = torch.cat([rise_blur(part) for part in images.split(chunk)])
        curves = torch.empty(2, batch, n_steps + 1, dtype=torch.float64, device=images.device)
        clean = target_probability(clean_logits, target_index)
        curves[0, :, 0] = clean
        curves[1, :, n_steps] = clean
        # Deletion: steps 1..n from the image towards the substrate; insertion: steps 0..n-1
        # from the blurred image towards the original.
        passes = ((0, images, deletion_fill, 1), (1, insertion_start, images, 0))
        with torch_threads_for(forward):
            for kind, keep, fill, first_step in passes:
                for start in range(0, batch * n_steps, chunk):
                    stop = min(start + chunk, batch * n_steps)
                    job = torch.arange(start, stop, device=images.device)
                    item = job // n_steps
                    step_index = job % n_steps + first_step
                    changed = (rank[item] < thresholds[step_index, None]).view(-1, 1, height, width)
                    perturbed = torch.where(changed, fill[item], keep[item])
                    logits = forward(perturbed)
                    check_logits(logits, batch=len(job))
                    curves[kind, item, step_index] = target_probability(logits, target_index[item])
    deletion_curve, insertion_curve = (curve.clone() for curve in curves)
    return InsertionDeletionResult(
        insertion_auc=curve_auc(insertion_curve),
        deletion_auc=curve_auc(deletion_curve),
        insertion_curve=insertion_curve,
        deletion_curve=deletion_curve,
        target=target_index.clone(),
        n_steps=n_steps,
        step_rule="steps" if step is None else "step",
        step=step,
        pixels_changed=pixels_changed.clone(),
    )


def _pixel_rank(maps: Tensor) -> Tensor:
    """Rank ``[B, H*W]`` of each pixel: saliency descending, ties by row-major index.

    int32 (half the memory traffic of int64 when gathered per step) unless H*W needs int64.
    """
    flat = maps.flatten(1)
    # Adding +0.0 turns -0.0 into +0.0 so that a radix sort cannot order the two zeros.
    order = torch.sort(-flat + 0.0, dim=1, stable=True).indices
    dtype = torch.int32 if flat.shape[1] <= torch.iinfo(torch.int32).max else torch.int64
    positions = torch.arange(flat.shape[1], device=flat.device, dtype=dtype).expand_as(order)
    return torch.empty_like(order, dtype=dtype).scatter_(1, order, positions)


def _chunk_size(images: Tensor, batch_size: int | None, *, total: int, model: nn.Module) -> int:
    """Images per forward pass: ``batch_size`` if given, else what the memory budget allows.

    ``total`` is the number of forwards of one pass (deletion or insertion); chunks are balanced
    over it. The budget is the masked-forward engine's (:func:`sidu.engine.auto_batch_size`, with
    ``model`` in eval mode under the caller's autocast): each perturbed image costs its forward
    pass plus :data:`SOURCES_PER_IMAGE` input sizes.
    """
    if batch_size is not None:
        return check_positive_int(batch_size, name="batch_size")
    sources = SOURCES_PER_IMAGE * images[0].numel() * images.element_size()
    with eval_mode(model):
        limit = auto_batch_size(model, images, extra_bytes_per_image=sources)
    return balanced_chunk_size(total, limit)


_SETTINGS = ("steps", "step", "batch_size", "backend", "precision")
"""The :class:`ScoringSettings` fields that are :func:`insertion_deletion` options too."""


def _score_item(item: ScoredItem, settings: ScoringSettings) -> MetricScore:
    """Both AUCs of one explained item, and its curves (kept as ``insertion@``/``deletion@``)."""
    options = {name: getattr(settings, name) for name in _SETTINGS}
    with forward_context(item.image.device, settings.dtype):
        result = insertion_deletion(
            item.model, item.image, item.maps, target=item.target, **options
        )
    return MetricScore(
        {
            "insertion_auc": float(result.insertion_auc[0]),
            "deletion_auc": float(result.deletion_auc[0]),
        },
        curves={"insertion": result.insertion_curve[0], "deletion": result.deletion_curve[0]},
    )


def _protocol(settings: ScoringSettings) -> dict[str, object]:
    return {
        "steps": None if settings.step is not None else settings.steps,
        "step": settings.step,
        "deletion_substrate": DELETION_SUBSTRATE,
        "insertion_substrate": rise_blur_description(),
        "score": CURVE_SCORE,
        "order": PIXEL_ORDER,
    }


INSERTION_DELETION = register_metric(
    Metric(
        name="insertion_deletion",
        columns={"insertion_auc": math.nan, "deletion_auc": math.nan},
        statistics=(
            Statistic("insertion_auc", column="insertion_auc"),
            Statistic(
                "deletion_auc", column="deletion_auc", higher_is_better=False, title="deletion AUC"
            ),
        ),
        score=_score_item,
        protocol=_protocol,
        position=40,
        monotone_invariant=True,
    )
)
"""``--metrics insertion_deletion``: both AUCs per item (RISE, Petsiuk et al., BMVC 2018)."""
