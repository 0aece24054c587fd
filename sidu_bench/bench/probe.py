"""One measured case in a fresh process: seconds, forwarded images and peak memory.

:func:`measure` runs each case in a fresh process forked from a fork server that has imported
this package once (a second or so per case instead of a new interpreter's import time); the
probe builds the case, prepares the method (targets, hooks and imports are not timed), takes the
memory baseline, runs the one-time set-up, times one call while counting forwarded images and
tracking peak memory (:class:`sidu_bench.bench.perf.PeakMemory`). A fresh process per case keeps
earlier cases' allocations out of the memory number.

Set-up is one untimed warm-up call of the whole method, on CUDA (cuDNN/cuBLAS initialisation) and
wherever our explainer runs on a backend other than ``torch`` (the ONNX export, session and check
happen in the first call); on the CPU the torch methods are warmed up only by the clean forwards
of preparation. ``setup_seconds`` is the warm-up call's time beyond the timed call's.

Peak memory is the rise over the baseline taken after the model and inputs are built and before
the set-up, on every device: what the set-up keeps (an ONNX Runtime session) counts, its
transient peak does not (the peak is reset after the warm-up).
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import multiprocessing
import os
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection

from sidu.precision import parse_dtype
from sidu_bench.bench.cases import build_case
from sidu_bench.bench.config import check_engine_options
from sidu_bench.bench.methods import ForwardCounter, method_call
from sidu_bench.bench.perf import PeakMemory, time_call
from sidu_bench.plugins import load_plugins

__all__ = ["Measurement", "ProbeRequest", "measure", "measure_here"]


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
        backend: forward backend of our explainers: ``torch``, ``onnxruntime`` or ``auto``.
        precision: float32 CUDA arithmetic of our explainers: ``ieee`` or ``tf32``.
    """

    model: str
    spec: str
    peer: bool = False
    device: str = "cpu"
    dtype: str = "float32"
    channels_last: bool = False
    images: int = 1
    imports: tuple[str, ...] = ()
    backend: str = "torch"
    precision: str = "ieee"

    def __post_init__(self) -> None:
        """Validate the dtype, backend and precision names and the image count."""
        check_engine_options(
            dtype=self.dtype, backend=self.backend, precision=self.precision, images=self.images
        )


@dataclass(frozen=True)
class Measurement:
    """One timed call of a method.

    Attributes:
        label: the method's label (canonical explainer spec or peer name).
        seconds_per_image: wall-clock seconds of the call over the explained images.
        forwarded_per_image: images forwarded during the call (through any engine), per
            explained image.
        peak_memory_bytes: the peak rise of memory in use over the baseline before the set-up
            (model and inputs excluded): resident set size on the CPU, allocated device memory
            on CUDA.
        backend: the engine that ran the forwards (``onnxruntime`` when any ran there, else
            ``torch``; ``""`` without forwards).
        backend_note: why a requested non-torch backend ran torch (``""`` otherwise).
        setup_seconds: the warm-up call's seconds beyond the timed call's (export, session,
            lazy initialisation; at least 0); NaN where no warm-up call ran.
    """

    label: str
    seconds_per_image: float
    forwarded_per_image: float
    peak_memory_bytes: int
    backend: str = ""
    backend_note: str = ""
    setup_seconds: float = math.nan


def measure_here(request: ProbeRequest) -> Measurement:
    """Measure ``request`` in this process (the probe's body; use :func:`measure` for memory)."""
    load_plugins(request.imports)
    case = build_case(request.model, request.device, images=request.images)
    call = method_call(
        request.spec,
        case,
        peer=request.peer,
        dtype=parse_dtype(request.dtype),
        channels_last=request.channels_last,
        backend=request.backend,
        precision=request.precision,
    )
    counter = ForwardCounter(case.module, case.images)
    tracker = PeakMemory(case.device)
    tracker.start()
    warm_up = case.device.type == "cuda" or (not request.peer and request.backend != "torch")
    warm_up_seconds = time_call(call.run, case.device) if warm_up else math.nan
    tracker.reset_peak()
    with counter.counting():
        seconds = time_call(call.run, case.device)
    return Measurement(
        label=call.label,
        seconds_per_image=seconds / request.images,
        forwarded_per_image=counter.count / request.images,
        peak_memory_bytes=tracker.peak(),
        backend=counter.engine(),
        backend_note=counter.fallback_reason(),
        setup_seconds=max(0.0, warm_up_seconds - seconds) if warm_up else math.nan,
    )


@functools.cache
def _context() -> multiprocessing.context.BaseContext:
    """A fork server that has imported this module: each probe is a cheap fresh fork of it."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def watch_requester(requester: int, interval: float = 1.0) -> None:
    """End this process (exit status 1) once process ``requester`` is gone; poll every ``interval``.

    A probe is forked from the fork server, not from the bench that asked for it, so a killed
    bench would otherwise leave its probe computing (and the fork server waiting for it) with
    nothing to report to, competing with the next run's timings.
    """
    while True:
        time.sleep(interval)
        try:
            os.kill(requester, 0)
        except ProcessLookupError:
            os._exit(1)


def _probe(request: ProbeRequest, connection: Connection, path: list[str], requester: int) -> None:
    """Child process: measure ``request``; send ``("ok", fields)`` or ``("error", text)``.

    ``path`` is the parent's ``sys.path`` (the fork server's may predate it), so that
    ``request.imports`` resolve as they do in the parent; ``requester`` is the bench's process
    id: the probe ends when that process is gone (:func:`watch_requester`).
    """
    threading.Thread(target=watch_requester, args=(requester,), daemon=True).start()
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
    arguments = (request, sender, list(sys.path), os.getpid())
    process = context.Process(target=_probe, args=arguments, daemon=True)
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
