"""Measuring speed and memory: the forward-pass ceiling and peak memory of a case.

Speed claims in this project are ratios measured in one run: an explainer's forwarded images per
second against the best plain batched forward throughput of the same model on the same machine
(the *ceiling*), so that a slow or busy machine moves both numbers together.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from sidu.engine import forward_context

CEILING_BATCH_SIZES = (1, 8, 32, 64)


@dataclass(frozen=True)
class Ceiling:
    """The best plain forward throughput of a model over batch sizes.

    Attributes:
        images_per_second: the best throughput.
        batch_size: the batch size that reached it.
        by_batch_size: throughput per batch size tried.
    """

    images_per_second: float
    batch_size: int
    by_batch_size: dict[int, float]


def synchronize(device: torch.device) -> None:
    """Wait for queued work on ``device`` (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(function: Callable[[], object], device: torch.device) -> float:
    """Return the wall-clock seconds of one call, synchronising the device around it."""
    synchronize(device)
    start = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - start


def forward_ceiling(
    model: nn.Module,
    image: torch.Tensor,
    *,
    batch_sizes: Sequence[int] = CEILING_BATCH_SIZES,
    dtype: torch.dtype | None = None,
    min_seconds: float = 1.0,
    channels_last: bool = False,
) -> Ceiling:
    """Measure the best plain batched forward throughput of ``model`` on copies of ``image``.

    Each batch size gets one warm-up pass, then passes until ``min_seconds`` have elapsed (at
    least two); throughput is images over the median pass time. The model must already be in eval
    mode on the image's device.

    Args:
        model: the network.
        image: one input ``[1, C, H, W]``.
        batch_sizes: the batch sizes to try.
        dtype: ``torch.bfloat16``/``torch.float16`` to measure under autocast.
        min_seconds: least time spent per batch size.
        channels_last: feed the batch in channels-last memory format.

    Returns:
        The :class:`Ceiling`.
    """
    throughput: dict[int, float] = {}
    for batch_size in batch_sizes:
        batch = image.expand(batch_size, *image.shape[1:]).contiguous()
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with forward_context(image.device, dtype):
            model(batch)
            times: list[float] = []
            while len(times) < 2 or sum(times) < min_seconds:
                times.append(time_call(lambda b=batch: model(b), image.device))
        median = sorted(times)[len(times) // 2]
        throughput[batch_size] = batch_size / median
    best = max(throughput, key=throughput.__getitem__)
    return Ceiling(throughput[best], best, throughput)


class PeakMemory:
    """Track the peak memory of the work done after :meth:`start` in this process.

    CPU (Linux): the resident set size's high-water mark ``VmHWM`` is reset through
    ``/proc/self/clear_refs`` and the peak is ``VmHWM`` minus the resident size at the start;
    ``ru_maxrss`` is not used because it carries the parent's peak across ``exec``. CUDA: the
    peak allocated device memory (including what was allocated before the start). Only a fresh
    process gives a clean CPU number: memory freed earlier but kept by the allocator is reused
    without raising the resident size.

    Args:
        device: the device whose memory is tracked.
    """

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self._base = 0

    def start(self) -> None:
        """Forget earlier peaks; the next :meth:`peak` covers only what follows."""
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
        self._base = _proc_status("VmRSS")

    def peak(self) -> int:
        """Bytes: the peak since :meth:`start`."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return int(torch.cuda.max_memory_allocated(self.device))
        return _proc_status("VmHWM") - self._base


def _proc_status(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status``, in bytes."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field} (peak memory needs Linux)")
