"""One measured case in a fresh process: seconds, forwarded images and peak memory.

:func:`measure` runs each case in a fresh process forked from a fork server that has imported
this package once (a second or so per case instead of a new interpreter's import time); the
probe builds the case, prepares the method (targets, hooks and imports are not timed), warms
up (on CUDA the whole method once; on the CPU the clean forwards of preparation), times one call
while counting forwarded images and tracking peak memory (:class:`sidu_bench.perf.PeakMemory`).
A fresh process per case keeps earlier cases' allocations out of the memory number.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import multiprocessing
import sys
import traceback
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection

import torch

from sidu_bench.bench.cases import build_case
from sidu_bench.bench.methods import ForwardCounter, method_call
from sidu_bench.perf import PeakMemory, time_call

__all__ = ["Measurement", "ProbeRequest", "measure", "measure_here"]

DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class ProbeRequest:
    """What to measure.

    Attributes:
        model: a :data:`~sidu_bench.bench.cases.BENCH_MODELS` name.
        spec: our explainer spec.
        peer: measure the spec's peer package instead of our explainer.
        device: ``"cpu"`` or a CUDA device.
        dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"`` (our explainers only).
        channels_last: channels-last masked images (our explainers only).
        images: explained images per call.
        imports: modules imported first (they may register explainers).
    """

    model: str
    spec: str
    peer: bool = False
    device: str = "cpu"
    dtype: str = "float32"
    channels_last: bool = False
    images: int = 1
    imports: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Validate the dtype name and the image count."""
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.images < 1:
            raise ValueError(f"images must be >= 1, got {self.images}")


@dataclass(frozen=True)
class Measurement:
    """One timed call of a method.

    Attributes:
        label: the method's label (canonical explainer spec or peer name).
        seconds_per_image: wall-clock seconds of the call over the explained images.
        forwarded_per_image: images entering the network during the call, per explained image.
        peak_memory_bytes: CPU: peak resident set size added by the call; CUDA: peak allocated
            device memory during the call, model and inputs included.
    """

    label: str
    seconds_per_image: float
    forwarded_per_image: float
    peak_memory_bytes: int


def measure_here(request: ProbeRequest) -> Measurement:
    """Measure ``request`` in this process (the probe's body; use :func:`measure` for memory)."""
    for module in request.imports:
        importlib.import_module(module)
    case = build_case(request.model, request.device, images=request.images)
    call = method_call(
        request.spec,
        case,
        peer=request.peer,
        dtype=DTYPES[request.dtype],
        channels_last=request.channels_last,
    )
    counter = ForwardCounter(case.module, case.images)
    if case.device.type == "cuda":
        call.run()
    tracker = PeakMemory(case.device)
    tracker.start()
    with counter.counting():
        seconds = time_call(call.run, case.device)
    return Measurement(
        label=call.label,
        seconds_per_image=seconds / request.images,
        forwarded_per_image=counter.count / request.images,
        peak_memory_bytes=tracker.peak(),
    )


@functools.cache
def _context() -> multiprocessing.context.BaseContext:
    """A fork server that has imported this module: each probe is a cheap fresh fork of it."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def _probe(request: ProbeRequest, connection: Connection, path: list[str]) -> None:
    """Child process: measure ``request``; send ``("ok", fields)`` or ``("error", text)``.

    ``path`` is the parent's ``sys.path`` (the fork server's may predate it), so that
    ``request.imports`` resolve as they do in the parent.
    """
    sys.path[:] = path
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            result = measure_here(request)
        connection.send(("ok", asdict(result)))
    except BaseException:
        connection.send(("error", captured.getvalue()[-2000:] + traceback.format_exc()))
    finally:
        connection.close()


def measure(request: ProbeRequest, *, timeout: float = 1800) -> Measurement:
    """Measure ``request`` in a fresh process (forked from a server that imported the package).

    Raises:
        RuntimeError: the probe failed (its traceback is in the message), died or timed out.
    """
    context = _context()
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_probe, args=(request, sender, list(sys.path)), daemon=True)
    process.start()
    sender.close()
    try:
        if not receiver.poll(timeout):
            process.kill()
            raise RuntimeError(f"bench probe {request} timed out after {timeout:.0f} s")
        try:
            status, payload = receiver.recv()
        except EOFError:
            process.join()
            raise RuntimeError(
                f"bench probe {request} died with exit code {process.exitcode} (killed for memory?)"
            ) from None
    finally:
        receiver.close()
        process.join(timeout=60)
    if status != "ok":
        raise RuntimeError(f"bench probe {request} failed:\n{payload}")
    return Measurement(**payload)
