"""The masked-forward engine shared by SIDU, Score-CAM and RISE.

Every mask-perturbation explainer runs the same loop: for each image ``x_b`` and each of its masks
``M_{b,k}``, evaluate ``model(x_b * M_{b,k})``. :func:`masked_forward` runs that loop batched
across masks *and* images, in chunks sized by a memory budget, and never holds more than one chunk
of masked images. Masks come from a :class:`MaskSource` that produces them chunk by chunk, so an
explainer only describes its masks (binary feature maps resized with a mirrored border for SIDU,
normalised activations for Score-CAM, random grids for RISE) and the engine does the rest.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from sidu.backends import ForwardBackend, resolve_backend, torch_threads_for
from sidu.capability import warn_if_slow_dtype
from sidu.capture import forward_hooks
from sidu.chunking import (
    CUDA_MAX_BATCH,
    batch_size_for,
    cuda_memory_budget,
    memory_kind,
    probe_bytes_per_image,
    remembered_bytes_per_image,
)
from sidu.precision import autocast, fp32_precision
from sidu.validation import check_batch_size, check_images, check_model_device

__all__ = [
    "MaskSource",
    "TensorMasks",
    "auto_batch_size",
    "estimate_bytes_per_image",
    "forward_context",
    "masked_forward",
    "synchronize",
]

OutputTransform = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

DEFAULT_MEMORY_BUDGET = 128 * 1024**2
"""Bytes of activations per chunk on the CPU (on CUDA: :func:`sidu.chunking.cuda_memory_budget`).
Small on purpose: batches whose activations outgrow the caches run slower (ResNet-18 at 224 px:
best at 8-16 images), while a tiny network needs large batches to amortise per-call overhead."""
MAX_BATCH = {"cuda": CUDA_MAX_BATCH, "cpu": 256}


@runtime_checkable
class MaskSource(Protocol):
    """Masks for each image of a batch, produced on demand, a slice at a time."""

    def num_masks(self, image_index: int) -> int:
        """Return how many masks image ``image_index`` has."""
        ...

    def masks(self, image_index: int, start: int, stop: int) -> torch.Tensor:
        """Return masks ``start:stop`` of one image: ``[n, H, W]`` or ``[n, C, H, W]``."""
        ...


class TensorMasks:
    """A :class:`MaskSource` over masks already in memory.

    Args:
        masks: ``[K, H, W]`` or ``[K, C, H, W]`` (the same masks for every image) or
            ``[B, K, H, W]`` / ``[B, K, C, H, W]`` with ``per_image=True``.
        per_image: whether the first axis indexes images.

    """

    def __init__(self, masks: torch.Tensor, *, per_image: bool = False) -> None:
        expected = (4, 5) if per_image else (3, 4)
        if masks.dim() not in expected:
            raise ValueError(
                f"masks must have {expected[0]} or {expected[1]} dimensions "
                f"({'[B, K, (C,) H, W]' if per_image else '[K, (C,) H, W]'}), got shape "
                f"{tuple(masks.shape)}"
            )
        self._masks = masks
        self._per_image = per_image

    def num_masks(self, image_index: int) -> int:
        """Return the number of masks of one image."""
        return self._masks.shape[1] if self._per_image else self._masks.shape[0]

    def masks(self, image_index: int, start: int, stop: int) -> torch.Tensor:
        """Return masks ``start:stop`` of one image."""
        if self._per_image:
            return self._masks[image_index, start:stop]
        return self._masks[start:stop]


@dataclass(frozen=True)
class _Piece:
    """Masks ``start:stop`` of image ``image_index``: one contiguous part of a chunk."""

    image_index: int
    start: int
    stop: int


def _chunks(counts: list[int], batch_size: int) -> Iterator[list[_Piece]]:
    """Split all (image, mask) pairs, image by image, into chunks of at most ``batch_size``."""
    chunk: list[_Piece] = []
    room = batch_size
    for image_index, count in enumerate(counts):
        start = 0
        while start < count:
            stop = min(count, start + room)
            chunk.append(_Piece(image_index, start, stop))
            room -= stop - start
            start = stop
            if room == 0:
                yield chunk
                chunk, room = [], batch_size
    if chunk:
        yield chunk


def estimate_bytes_per_image(model: nn.Module, image: torch.Tensor) -> int:
    """Estimate the peak memory one image needs in an inference forward pass of ``model``.

    On CUDA the increase of the peak allocation from a one-image to a two-image forward pass is
    measured (:func:`sidu.chunking.probe_bytes_per_image`: batch-independent costs such as weight
    casts under autocast cancel, and the device-wide peak counter is left alone). Elsewhere the
    estimate is the input plus three times the largest output of any leaf module (a layer's
    input, its output and one skip connection alive at once), read from forward hooks during a
    one-image pass. Either estimate is made once per model and input signature
    (:func:`sidu.chunking.remembered_bytes_per_image`).

    Args:
        model: the network, in the mode it will be run in.
        image: one input ``[1, C, H, W]`` on the model's device.

    Returns:
        Bytes per image (at least 1).

    """
    if memory_kind(image.device) == "cuda":
        return probe_bytes_per_image(model, image)
    return remembered_bytes_per_image(model, image, _largest_leaf_output_estimate)


def _largest_leaf_output_estimate(model: nn.Module, image: torch.Tensor) -> int:
    """The input plus three times the largest leaf output of a one-image forward pass."""
    largest = 0

    def record(_module: nn.Module, _inputs: object, output: object) -> None:
        nonlocal largest
        if isinstance(output, torch.Tensor):
            largest = max(largest, output.numel() * output.element_size())

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    with forward_hooks(leaves, record), torch.inference_mode():
        model(image)
    return max(1, image.numel() * image.element_size() + 3 * largest)


def auto_batch_size(
    model: nn.Module,
    images: torch.Tensor,
    *,
    memory_budget: int | None = None,
    dtype: torch.dtype | None = None,
    extra_bytes_per_image: int = 0,
) -> int:
    """Choose how many perturbed images to forward at once so that a chunk fits ``memory_budget``.

    The one chunking policy of every perturbation forward (the masked images of SIDU, Score-CAM
    and RISE, insertion/deletion's perturbed images): per image the forward pass's cost
    (:func:`estimate_bytes_per_image`) plus ``extra_bytes_per_image``, within the budget.

    Args:
        model: the network.
        images: the batch to explain (its first image is used for the estimate).
        memory_budget: bytes one chunk may use; default on CUDA
            :data:`sidu.chunking.CUDA_BUDGET_FRACTION` of the free device memory, elsewhere
            128 MiB.
        dtype: the autocast dtype the forward passes will use, if any.
        extra_bytes_per_image: what each image of a chunk holds besides its forward pass (the
            sources insertion/deletion gathers a perturbed image from).

    Returns:
        A batch size between 1 and 512 (CUDA) or 256 (elsewhere).

    """
    kind = memory_kind(images.device)
    with forward_context(images.device, dtype):
        per_image = estimate_bytes_per_image(model, images[:1]) + extra_bytes_per_image
    if memory_budget is not None:
        budget = int(memory_budget)
    elif kind == "cuda":
        budget = cuda_memory_budget(images.device)
    else:
        budget = DEFAULT_MEMORY_BUDGET
    return batch_size_for(per_image, budget, MAX_BATCH[kind])


@contextlib.contextmanager
def forward_context(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """Inference mode, plus autocast when ``dtype`` is a reduced precision (bf16/fp16)."""
    with torch.inference_mode(), autocast(device, dtype):
        yield


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def masked_forward(
    model: nn.Module,
    images: torch.Tensor,
    masks: MaskSource | torch.Tensor,
    *,
    transform: OutputTransform | None = None,
    batch_size: int | None = None,
    memory_budget: int | None = None,
    dtype: torch.dtype | None = None,
    channels_last: bool = False,
    progress: Callable[[int], None] | None = None,
    backend: str | ForwardBackend = "torch",
    precision: str = "ieee",
    validate_args: bool = True,
) -> list[torch.Tensor]:
    """Evaluate ``model(images[b] * mask)`` for every mask of every image, batched.

    Masked images of all images are packed together into chunks of ``batch_size`` (chosen from
    ``memory_budget`` when not given); only one chunk of masked images exists at a time. The model
    runs under :func:`torch.inference_mode` (and autocast for bf16/fp16). It is not moved, and its
    mode is left as the caller set it.

    Args:
        model: the network; called on ``[n, C, H, W]`` batches.
        images: ``[B, C, H, W]`` floating inputs on the model's device.
        masks: a :class:`MaskSource`, or a tensor ``[K, H, W]``/``[K, C, H, W]`` applied to every
            image. Mask values may be continuous; masks broadcast over channels when 3-D.
        transform: applied to each chunk's outputs right after the forward pass, as
            ``transform(outputs, image_index)`` where ``image_index[i]`` is the image of row
            ``i``; use it to reduce outputs early (e.g. softmax and pick a class).
        batch_size: masked images per forward pass; ``None`` chooses it from ``memory_budget``.
        memory_budget: bytes a chunk may use when ``batch_size`` is ``None``.
        dtype: ``torch.bfloat16``/``torch.float16`` to run under autocast; ``None`` or the
            images' dtype runs in full precision.
        channels_last: pass chunks in channels-last memory format (opt-in: faster convolutions
            on CUDA and on CPUs with oneDNN; float reduction order changes slightly).
        progress: called with the number of images forwarded after each chunk.
        backend: the engine of the forwards: ``"torch"``, ``"onnxruntime"`` or ``"auto"``
            (see :func:`sidu.backends.resolve_backend`; resolved with ``images`` as the
            example), or a :class:`~sidu.backends.ForwardBackend` already resolved for
            ``model``.
        precision: float32 CUDA arithmetic, ``"ieee"`` or ``"tf32"``
            (:func:`sidu.precision.fp32_precision`); the caller's setting is restored after.
        validate_args: check ``images`` (:func:`sidu.validation.check_images`, a pass over them
            for NaN) and the model's device; ``False`` skips both, for a caller that checked
            them (as ``validate_args`` in torchmetrics).

    Returns:
        One tensor per image: the (transformed) outputs of its masks, in mask order.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
        >>> images = torch.rand(2, 3, 2, 2)
        >>> out = masked_forward(model, images, torch.ones(5, 2, 2))
        >>> [tuple(o.shape) for o in out]
        [(5, 3), (5, 3)]

    """
    if validate_args:
        check_images(images, name="images")
        check_model_device(model, images)
    source = TensorMasks(masks) if isinstance(masks, torch.Tensor) else masks
    if not isinstance(source, MaskSource):
        raise TypeError(f"masks must be a torch.Tensor or a MaskSource, got {type(masks).__name__}")
    check_batch_size(batch_size)
    with fp32_precision(precision):
        backend = resolve_backend(model, images, backend, dtype=dtype, channels_last=channels_last)
        warn_if_slow_dtype(dtype, images.device)
        if batch_size is None:
            batch_size = auto_batch_size(model, images, memory_budget=memory_budget, dtype=dtype)
        return _forward_chunks(
            backend, images, source, transform, batch_size, dtype, channels_last, progress
        )


def _forward_chunks(
    forward: ForwardBackend,
    images: torch.Tensor,
    source: MaskSource,
    transform: OutputTransform | None,
    batch_size: int,
    dtype: torch.dtype | None,
    channels_last: bool,
    progress: Callable[[int], None] | None,
) -> list[torch.Tensor]:
    """The loop of :func:`masked_forward` on validated arguments."""
    counts = [int(source.num_masks(b)) for b in range(images.shape[0])]
    outputs: list[list[torch.Tensor]] = [[] for _ in counts]
    with forward_context(images.device, dtype), torch_threads_for(forward):
        for chunk in _chunks(counts, batch_size):
            batch = torch.cat([_masked_piece(images, source, piece) for piece in chunk])
            if channels_last and forward.name == "torch":
                batch = batch.contiguous(memory_format=torch.channels_last)
            result = forward(batch)
            sizes = [piece.stop - piece.start for piece in chunk]
            if transform is not None:
                owner = [
                    torch.full((n,), p.image_index, device=batch.device)
                    for p, n in zip(chunk, sizes, strict=True)
                ]
                result = transform(result, torch.cat(owner))
            for piece, part in zip(chunk, result.split(sizes), strict=True):
                outputs[piece.image_index].append(part)
            if progress is not None:
                progress(batch.shape[0])
    return [_concat(parts, images, transform) for parts in outputs]


def _masked_piece(images: torch.Tensor, source: MaskSource, piece: _Piece) -> torch.Tensor:
    """Form the masked images of one piece: ``images[b] * masks`` with masks broadcast."""
    image = images[piece.image_index]
    masks = source.masks(piece.image_index, piece.start, piece.stop)
    expected = piece.stop - piece.start
    if masks.dim() == 3:
        masks = masks.unsqueeze(1)
    if masks.dim() != 4 or masks.shape[0] != expected or masks.shape[-2:] != image.shape[-2:]:
        raise ValueError(
            f"mask source returned shape {tuple(masks.shape)} for masks {piece.start}:{piece.stop} "
            f"of image {piece.image_index}; expected [{expected}, (C,) {image.shape[-2]}, "
            f"{image.shape[-1]}]"
        )
    return image.unsqueeze(0) * masks.to(device=image.device, dtype=image.dtype)


def _concat(
    parts: list[torch.Tensor], images: torch.Tensor, transform: OutputTransform | None
) -> torch.Tensor:
    """Join one image's outputs; an image with no masks gets an empty tensor."""
    if parts:
        return torch.cat(parts)
    if transform is not None:
        return torch.empty(0, device=images.device)
    return torch.empty(0, device=images.device, dtype=images.dtype)
