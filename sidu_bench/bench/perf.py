"""Measuring speed and memory: the forward-pass ceiling and peak memory of a case.

Speed claims in this project are ratios measured in one run: an explainer's forwarded images per
second against the best plain batched forward throughput of the same model on the same machine
(the *ceiling*), so that a slow or busy machine moves both numbers together. The ceiling is the
best over *engines* as well as batch sizes: on the CPU torch eager, torch with channels-last
inputs and ONNX Runtime (when installed and the export passes its check); on CUDA torch eager and
channels-last, under autocast when the dtype is reduced, with batches up to the engine's 512.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from sidu.backends import resolve_backend
from sidu.engine import forward_context, synchronize
from sidu.precision import fp32_precision

__all__ = [
    "CEILING_BATCH_SIZES",
    "CUDA_CEILING_BATCH_SIZES",
    "Ceiling",
    "CeilingEngine",
    "PeakMemory",
    "best_forward_ceiling",
    "ceiling_batch_sizes",
    "ceiling_engines",
    "engine_throughput",
    "time_call",
]

logger = logging.getLogger(__name__)

CEILING_BATCH_SIZES = (1, 8, 32, 64)
"""Batch sizes of the CPU ceiling (the engine's CPU chunks rarely exceed 64 at 224 px)."""
CUDA_CEILING_BATCH_SIZES = (1, 8, 32, 64, 128, 256, 512)
"""Batch sizes of the CUDA ceiling: up to the masked-forward engine's largest chunk (512)."""

Timer = Callable[[Callable[[], object], torch.device], float]
"""``timer(function, device) -> seconds`` of one call (:func:`time_call`, or a fake in tests)."""


@dataclass(frozen=True)
class Ceiling:
    """The best plain forward throughput of a model over engines and batch sizes.

    Attributes:
        images_per_second: the best throughput.
        batch_size: the batch size that reached it.
        by_batch_size: throughput per batch size of the winning engine.
        engine: the engine that reached it (``torch``, ``torch-channels-last``, ``onnxruntime``).
        by_engine: throughput per batch size of every measured engine.
        setup_seconds: one-time set-up per engine (ONNX export, session, check), not timed.
        skipped: engines that were not measured, with the reason.
    """

    images_per_second: float
    batch_size: int
    by_batch_size: dict[int, float]
    engine: str = "torch"
    by_engine: dict[str, dict[int, float]] = field(default_factory=dict)
    setup_seconds: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CeilingEngine:
    """One way to run a model's plain forward pass.

    Attributes:
        name: the engine's name in tables.
        forward: ``forward(batch) -> logits``.
        channels_last: feed the batch in channels-last memory format.
        setup_seconds: what building the engine cost (export, session), outside any timing.
    """

    name: str
    forward: Callable[[torch.Tensor], object]
    channels_last: bool = False
    setup_seconds: float = 0.0


def time_call(function: Callable[[], object], device: torch.device) -> float:
    """Return the wall-clock seconds of one call, synchronising the device around it."""
    synchronize(device)
    start = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - start


def ceiling_batch_sizes(device: torch.device | str) -> tuple[int, ...]:
    """The ceiling's batch sizes on ``device``: up to 64 on the CPU, up to 512 on CUDA."""
    return CUDA_CEILING_BATCH_SIZES if torch.device(device).type == "cuda" else CEILING_BATCH_SIZES


def engine_throughput(
    engine: CeilingEngine,
    image: torch.Tensor,
    *,
    batch_sizes: Sequence[int],
    dtype: torch.dtype | None = None,
    min_seconds: float = 1.0,
    timer: Timer = time_call,
) -> dict[int, float]:
    """Measure ``engine``'s plain forward throughput on copies of ``image`` per batch size.

    Each batch size gets one warm-up pass, then passes until ``min_seconds`` have elapsed (at
    least two); throughput is images over the median pass time. A batch size that runs out of
    CUDA memory ends the sweep (larger ones would too).

    Args:
        engine: the engine.
        image: one input ``[1, C, H, W]`` on the model's device.
        batch_sizes: the batch sizes to try, ascending.
        dtype: ``torch.bfloat16``/``torch.float16`` to run under autocast.
        min_seconds: least time spent per batch size.
        timer: measures one call (see :data:`Timer`).

    Returns:
        Images per second per batch size measured.
    """
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"image must be one input [1, C, H, W], got {tuple(image.shape)}")
    if not batch_sizes or any(not isinstance(b, int) or b < 1 for b in batch_sizes):
        raise ValueError(f"batch_sizes must be positive ints, got {batch_sizes!r}")
    throughput: dict[int, float] = {}
    for batch_size in batch_sizes:
        batch = image.expand(batch_size, *image.shape[1:]).contiguous()
        if engine.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        try:
            with forward_context(image.device, dtype):
                engine.forward(batch)
                times: list[float] = []
                while len(times) < 2 or sum(times) < min_seconds:
                    times.append(timer(lambda b=batch: engine.forward(b), image.device))
        except torch.cuda.OutOfMemoryError:
            logger.info("ceiling %s: batch %d runs out of CUDA memory", engine.name, batch_size)
            del batch
            torch.cuda.empty_cache()
            break
        median = sorted(times)[len(times) // 2]
        throughput[batch_size] = batch_size / median
    if not throughput:
        raise RuntimeError(f"ceiling engine {engine.name}: no batch size fits in memory")
    return throughput


def ceiling_engines(
    model: nn.Module,
    image: torch.Tensor,
    *,
    dtype: torch.dtype | None = None,
) -> tuple[list[CeilingEngine], dict[str, str]]:
    """The engines a ceiling compares on ``image``'s device, and those left out with the reason.

    Torch eager (``torch``) and channels-last inputs (``torch-channels-last``) everywhere; on the
    CPU also ONNX Runtime (``onnxruntime``) for float32 forwards when it is installed and the
    export passes its check (:func:`sidu.backends.resolve_backend`; the export is set-up, timed
    apart).

    Args:
        model: the network, in eval mode on the image's device.
        image: one input ``[1, C, H, W]``.
        dtype: the autocast dtype of the forwards, if any (ONNX Runtime runs float32 only).

    Returns:
        ``(engines, skipped)``: the engines, and ``{name: why it is not among them}``.
    """
    engines = [
        CeilingEngine("torch", model),
        CeilingEngine("torch-channels-last", model, channels_last=True),
    ]
    skipped: dict[str, str] = {}
    if image.device.type != "cpu":
        return engines, skipped
    start = time.perf_counter()
    try:
        backend = resolve_backend(model, image, "onnxruntime", dtype=dtype)
    except (RuntimeError, ValueError) as error:
        skipped["onnxruntime"] = str(error)
        logger.info("ceiling without onnxruntime: %s", error)
        return engines, skipped
    engines.append(CeilingEngine("onnxruntime", backend, setup_seconds=time.perf_counter() - start))
    return engines, skipped


def best_forward_ceiling(
    model: nn.Module,
    image: torch.Tensor,
    *,
    dtype: torch.dtype | None = None,
    precision: str = "ieee",
    batch_sizes: Sequence[int] | None = None,
    min_seconds: float = 1.0,
    engines: Sequence[CeilingEngine] | None = None,
    timer: Timer = time_call,
) -> Ceiling:
    """The best plain batched forward throughput of ``model`` over engines and batch sizes.

    Args:
        model: the network, in eval mode on the image's device.
        image: one input ``[1, C, H, W]``.
        dtype: ``torch.bfloat16``/``torch.float16`` to measure under autocast.
        precision: float32 CUDA arithmetic, ``"ieee"`` or ``"tf32"``
            (:func:`sidu.precision.fp32_precision`; no effect on the CPU).
        batch_sizes: the batch sizes to try (default: :func:`ceiling_batch_sizes`).
        min_seconds: least time spent per engine and batch size.
        engines: the engines to compare (default: :func:`ceiling_engines`).
        timer: measures one call (see :data:`Timer`).

    Returns:
        The :class:`Ceiling`: the winning engine and batch size, and every measurement.
    """
    skipped: dict[str, str] = {}
    if engines is None:
        engines, skipped = ceiling_engines(model, image, dtype=dtype)
    if not engines:
        raise ValueError("engines must name at least one ceiling engine")
    sizes = tuple(batch_sizes) if batch_sizes is not None else ceiling_batch_sizes(image.device)
    by_engine: dict[str, dict[int, float]] = {}
    with fp32_precision(precision):
        for engine in engines:
            by_engine[engine.name] = engine_throughput(
                engine, image, batch_sizes=sizes, dtype=dtype, min_seconds=min_seconds, timer=timer
            )
    engine, batch_size = max(
        ((name, size) for name, rates in by_engine.items() for size in rates),
        key=lambda pair: by_engine[pair[0]][pair[1]],
    )
    return Ceiling(
        images_per_second=by_engine[engine][batch_size],
        batch_size=batch_size,
        by_batch_size=by_engine[engine],
        engine=engine,
        by_engine=by_engine,
        setup_seconds={e.name: e.setup_seconds for e in engines},
        skipped=skipped,
    )


class PeakMemory:
    """Track how far the memory of this process rises above a baseline.

    :meth:`start` takes the baseline (the memory in use now) and forgets earlier peaks;
    :meth:`peak` is the highest memory in use since the last :meth:`start` or
    :meth:`reset_peak`, *minus the baseline*, on every device:

    - CPU (Linux): resident set size. The high-water mark ``VmHWM`` is reset through
      ``/proc/self/clear_refs``; ``ru_maxrss`` is not used because it carries the parent's peak
      across ``exec``. Only a fresh process gives a clean number: memory freed earlier but kept
      by the allocator is reused without raising the resident size.
    - CUDA: allocated device memory (``memory_allocated``/``max_memory_allocated``).

    :meth:`reset_peak` forgets the peaks of one-time set-up (a warm-up call) while keeping the
    baseline, so that what the set-up keeps allocated (an ONNX Runtime session) still counts.

    Args:
        device: the device whose memory is tracked.
    """

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self._base = 0

    def start(self) -> None:
        """Take the baseline and forget earlier peaks."""
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self._base = int(torch.cuda.memory_allocated(self.device))
        else:
            self._base = _proc_status("VmRSS")
        self.reset_peak()

    def reset_peak(self) -> None:
        """Forget the peaks so far; the baseline stays."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")

    def peak(self) -> int:
        """Bytes: the peak since the last reset, minus the baseline."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return int(torch.cuda.max_memory_allocated(self.device)) - self._base
        return _proc_status("VmHWM") - self._base


def _proc_status(field_name: str) -> int:
    """A ``kB`` field of ``/proc/self/status``, in bytes."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field_name} (peak memory needs Linux)")
