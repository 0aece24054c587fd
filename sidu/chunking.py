"""How many images one forward pass may take: the chunking policy of the engine and the metrics.

Every perturbation forward in the project (SIDU's, Score-CAM's and RISE's masked images in
:func:`sidu.engine.masked_forward`, insertion/deletion's perturbed images) runs in chunks of
``budget // bytes_per_image`` images, capped, sized by one function,
:func:`sidu.engine.auto_batch_size` (insertion/deletion adds the two input-sized sources of each
perturbed image to its bytes per image). This module holds the CUDA side of that rule:

* **bytes per image** (:func:`probe_bytes_per_image`): the increase of the forward pass's peak
  allocation from a one-image batch to a two-image batch. Costs that do not grow with the batch
  (weights cast to bf16 under autocast: VGG-19's fc6 alone is a 205 MB copy; cuDNN and cuBLAS
  workspaces) appear in both probes and cancel. The peak is read without touching the
  device-wide peak counter that callers (and the bench) rely on: the current allocation is
  sampled after every module's forward; the result is remembered per model and input signature;
* **budget** (:func:`cuda_memory_budget`): :data:`CUDA_BUDGET_FRACTION` of the free device memory
  (``torch.cuda.mem_get_info``), read when a call sizes its chunks;
* **cap** :data:`CUDA_MAX_BATCH`: beyond it bigger batches no longer speed up forward passes.

On the CPU the estimate is cheap (:func:`sidu.engine.estimate_bytes_per_image`: the input plus
three times the largest leaf module output of a one-image pass) and the budget fixed (128 MiB, at
most 256 images): CPU throughput peaks at small, cache-sized batches.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable

import torch
from torch import nn

from sidu.capture import forward_hooks

__all__ = [
    "CUDA_BUDGET_FRACTION",
    "CUDA_MAX_BATCH",
    "PROBE_BATCHES",
    "balanced_chunk_size",
    "batch_size_for",
    "cuda_memory_budget",
    "memory_kind",
    "probe_bytes_per_image",
    "remembered_bytes_per_image",
]

CUDA_BUDGET_FRACTION = 0.5
"""Share of the free device memory (at sizing time) one chunk may use on CUDA. The other half
covers what the probe cannot see (temporaries inside one module's forward, allocator
fragmentation, batch-independent costs of the first chunk)."""

CUDA_MAX_BATCH = 512
"""Most images per forward pass on CUDA."""

PROBE_BATCHES = (1, 2)
"""Batch sizes of the two probe forward passes whose peak difference is the per-image cost."""


def memory_kind(device: torch.device) -> str:
    """Return ``"cuda"`` for a CUDA device and ``"cpu"`` for anything else (its sizing rule)."""
    return "cuda" if device.type == "cuda" else "cpu"


def cuda_memory_budget(device: torch.device) -> int:
    """Return the default bytes per chunk on a CUDA device: a share of its free memory.

    Args:
        device: the CUDA device the chunks run on.

    Returns:
        ``int(free_bytes * CUDA_BUDGET_FRACTION)``.

    """
    free, _total = torch.cuda.mem_get_info(device)
    return int(free * CUDA_BUDGET_FRACTION)


def batch_size_for(bytes_per_image: int, budget: int, max_batch: int) -> int:
    """Return how many images of ``bytes_per_image`` fit ``budget``, between 1 and ``max_batch``.

    Example:
        >>> batch_size_for(100, 1050, 512), batch_size_for(100, 10**9, 512)
        (10, 512)
        >>> batch_size_for(100, 5, 8)
        1

    """
    if bytes_per_image < 1:
        raise ValueError(f"bytes_per_image must be at least 1, got {bytes_per_image}")
    if max_batch < 1:
        raise ValueError(f"max_batch must be at least 1, got {max_batch}")
    return int(max(1, min(max_batch, budget // bytes_per_image)))


def balanced_chunk_size(total: int, limit: int) -> int:
    """Return the size that splits ``total`` items evenly into the fewest chunks of <= ``limit``.

    Even chunks leave no small remainder chunk that runs the model inefficiently.

    Example:
        >>> balanced_chunk_size(224, 10), balanced_chunk_size(12, 10), balanced_chunk_size(3, 10)
        (10, 6, 3)

    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if total < 1:
        return limit
    return math.ceil(total / math.ceil(total / limit))


def probe_bytes_per_image(model: nn.Module, images: torch.Tensor) -> int:
    """Measure the bytes one more image adds to a CUDA forward pass of ``model``.

    Runs ``model`` (under the caller's autocast context, in inference mode) once on one image to
    settle lazily created state (cuBLAS workspace, autocast weight cache, cuDNN handles), then on
    batches of :data:`PROBE_BATCHES` copies of ``images[0]``. A probe's peak is the largest
    allocation (``torch.cuda.memory_stats_as_nested_dict``'s current allocated bytes) sampled
    after forming its batch and after every module's forward, minus the allocation before the
    batch was formed (so the batch itself counts). The result is the difference of the two
    probes' peaks divided by the difference of their batch sizes; should it not be positive
    (nothing grows with the batch), the one-image peak is used instead, an over-estimate.
    Temporaries that live only inside one module's forward (a convolution's workspace) are seen
    by neither probe; :data:`CUDA_BUDGET_FRACTION` leaves room for them. The device-wide peak
    counters are neither reset nor read.

    The result is remembered per model (held weakly) and per input signature: image shape,
    dtype and device, autocast dtype, training flag, and the model's module and parameter counts
    (a changed architecture is probed again; changed weights do not change memory).

    Args:
        model: the network, in the mode it will run in, on the images' device.
        images: ``[B, C, H, W]`` inputs (only the first image is used).

    Returns:
        Bytes per image, at least 1.

    """
    return remembered_bytes_per_image(model, images, _measure_bytes_per_image)


def remembered_bytes_per_image(
    model: nn.Module, images: torch.Tensor, measure: Callable[[nn.Module, torch.Tensor], int]
) -> int:
    """``measure(model, images[:1])``, computed once per model (held weakly) and input signature.

    The signature (:func:`_probe_key`) is what a forward pass's memory depends on besides the
    weights, so an estimate that costs a forward pass is not repeated on every call.
    """
    key = (_probe_key(model, images), measure)
    known = _PROBED.setdefault(model, {})
    if key not in known:
        known[key] = measure(model, images[:1])
    return known[key]


_PROBED: weakref.WeakKeyDictionary[nn.Module, dict[tuple[object, ...], int]] = (
    weakref.WeakKeyDictionary()
)
"""Measured bytes per image, per model and :func:`_probe_key`."""


def _probe_key(model: nn.Module, images: torch.Tensor) -> tuple[object, ...]:
    """What the per-image cost of ``model`` on ``images`` depends on, besides the weights."""
    kind = images.device.type
    autocast = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else None
    modules = sum(1 for _ in model.modules())
    parameters = sum(p.numel() for p in model.parameters())
    return (
        tuple(images.shape[1:]),
        images.dtype,
        images.device,
        autocast,
        model.training,
        modules,
        parameters,
    )


def _measure_bytes_per_image(model: nn.Module, image: torch.Tensor) -> int:
    """The two-probe measurement of :func:`probe_bytes_per_image` on one image ``[1, C, H, W]``."""
    small, large = PROBE_BATCHES
    _forward(model, image)
    peaks = {size: _probe_peak(model, image, size) for size in (small, large)}
    per_image = (peaks[large] - peaks[small]) // (large - small)
    if per_image <= 0:
        per_image = peaks[small] // small
    return max(1, per_image)


def _allocated(device: torch.device) -> int:
    """Bytes currently allocated by tensors on ``device`` (a cheap read of the allocator)."""
    stats = torch.cuda.memory_stats_as_nested_dict(device)
    return int(stats.get("allocated_bytes", {}).get("all", {}).get("current", 0))


def _probe_peak(model: nn.Module, image: torch.Tensor, size: int) -> int:
    """Peak bytes allocated by forming a batch of ``size`` copies of ``image`` and forwarding it."""
    device = image.device
    torch.cuda.synchronize(device)
    start = _allocated(device)
    highest = start

    def sample(*_args: object) -> None:
        nonlocal highest
        highest = max(highest, _allocated(device))

    with forward_hooks(model.modules(), sample):
        batch = image.expand(size, *image.shape[1:]).contiguous()
        sample()
        _forward(model, batch)
        del batch
    torch.cuda.synchronize(device)
    return highest - start


def _forward(model: nn.Module, batch: torch.Tensor) -> None:
    """One inference forward pass whose outputs are dropped at once."""
    with torch.inference_mode():
        model(batch)
