"""One measured case in a fresh process: seconds, forwarded images and peak memory.

:func:`measure` starts ``python -m sidu_bench.bench.probe`` with the case as JSON; the probe
builds the case, prepares the method (targets, hooks and imports are not timed), warms up (on
CUDA the whole method once; on the CPU the clean forwards of preparation), then times one call
while counting forwarded images and tracking peak memory (:class:`sidu_bench.perf.PeakMemory`).
A fresh process per case keeps earlier cases' allocations out of the memory number.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from sidu_bench.bench.cases import build_case
from sidu_bench.bench.methods import ForwardCounter, method_call
from sidu_bench.perf import PeakMemory, time_call

__all__ = ["Measurement", "ProbeRequest", "measure", "measure_here"]

RESULT_MARK = "SIDU-BENCH-PROBE "
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


def measure(request: ProbeRequest, *, timeout: float = 1800) -> Measurement:
    """Measure ``request`` in a fresh Python process.

    Raises:
        RuntimeError: the probe failed (its error output is in the message) or timed out.
    """
    command = [sys.executable, "-m", "sidu_bench.bench.probe", json.dumps(asdict(request))]
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise RuntimeError(f"bench probe {request} timed out after {timeout:.0f} s") from error
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"bench probe {request} failed:\n{completed.stderr[-4000:]}")
    return Measurement(**json.loads(lines[-1][len(RESULT_MARK) :]))


def main(argv: Sequence[str] | None = None) -> int:
    """Probe entry point: measure the JSON request in ``argv[0]``, print the result line."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    fields = json.loads(arguments[0])
    fields["imports"] = tuple(fields.get("imports", ()))
    result = measure_here(ProbeRequest(**fields))
    sys.stdout.write(RESULT_MARK + json.dumps(asdict(result)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
