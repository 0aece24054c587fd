"""What the explainer and SIDU benchmark files share: cases, ceilings and the recorded numbers.

Each benchmark measures its case in a fresh process through the ``bench`` probe (forwarded images
counted at the network's stem and through non-torch backends, peak memory), then times one call
in this process with pytest-benchmark (after a warm-up call when the case is shorter than 2 s).
A non-torch backend is set up first, outside the timing (the ONNX export and session are cached
per model, so the explainer's own resolution reuses them); ``extra_info`` says what that took.
The ceiling is the model's best plain batched forward throughput over engines (on the CPU torch
eager, channels-last and ONNX Runtime) and batch sizes, measured once per (model, device, dtype)
in the same session. Peers' and the torch backend's seconds are kept so that our cases report
the speed-up over them: run the peer and the torch variant first (file order does).
"""

from __future__ import annotations

import pytest
import torch

from sidu.backends import resolve_backend
from sidu.precision import DTYPES
from sidu_bench.bench import ProbeRequest, build_case, measure, method_call
from sidu_bench.bench.perf import Ceiling, best_forward_ceiling, time_call

CPU_MODELS = ("resnet18", "efficientnet_lite0", "synthetic_cnn")
CUDA_MODELS = ("resnet18", "resnet50", "vgg19", "efficientnet_lite0")
LARGE_CPU_MODELS = ("resnet50", "vgg19")
WARMUP_BELOW_SECONDS = 2.0
"""On the CPU only with ``--bench-large`` (minutes each; pytorch-sidu on ResNet-50 needs ~34 GB)."""


def model_params() -> list:
    """``(model, device)`` parameters: CPU defaults, large CPU models, CUDA models."""
    params = [pytest.param(model, "cpu", id=f"{model}-cpu") for model in CPU_MODELS]
    params += [
        pytest.param(model, "cpu", id=f"{model}-cpu", marks=pytest.mark.bench_large)
        for model in LARGE_CPU_MODELS
    ]
    no_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
    params += [
        pytest.param(model, "cuda", id=f"{model}-cuda", marks=no_cuda) for model in CUDA_MODELS
    ]
    return params


_cases: dict[tuple[str, str], object] = {}
_ceilings: dict[tuple[str, str, str], Ceiling] = {}
peer_seconds: dict[tuple[str, str, str], float] = {}
"""(model, device, our explainer label) -> the peer's seconds per image, for the speed-up."""
torch_seconds: dict[tuple[str, str, str, str, bool], float] = {}
"""(model, device, spec, dtype, channels-last) -> our seconds per image on the torch backend."""


def case_for(model: str, device: str):
    """The built case, shared across the session (one image)."""
    if (model, device) not in _cases:
        _cases[(model, device)] = build_case(model, device)
    return _cases[(model, device)]


def ceiling_for(model: str, device: str, dtype: str = "float32") -> Ceiling:
    """The model's ceiling over engines and batch sizes (measured once per session and dtype)."""
    key = (model, device, dtype)
    if key not in _ceilings:
        case = case_for(model, device)
        _ceilings[key] = best_forward_ceiling(case.module, case.images, dtype=DTYPES[dtype])
    return _ceilings[key]


def set_up_backend(model: str, device: str, backend: str) -> tuple[str, float]:
    """Resolve ``backend`` for the case's model before any timing.

    The ONNX export, session and check happen once per model and session: here, or earlier in
    the ceiling (which then served them from the cache).

    Returns:
        The engine's name and the seconds its one-time set-up took.
    """
    case = case_for(model, device)
    resolved = resolve_backend(case.module, case.images, backend)
    setup = resolved.setup_seconds
    if setup == 0.0:  # cached: the ceiling exported it
        setup = ceiling_for(model, device).setup_seconds.get(resolved.name, 0.0)
    return resolved.name, setup


def run_case(
    benchmark,
    model: str,
    device: str,
    spec: str,
    *,
    peer: bool = False,
    dtype: str = "float32",
    channels_last: bool = False,
    backend: str = "torch",
) -> dict[str, float]:
    """Time one call of ``spec`` (or its peer) under ``benchmark``; fill ``extra_info``."""
    case = case_for(model, device)
    info: dict[str, object] = {}
    if not peer and backend != "torch":
        info["backend_setup_seconds"] = set_up_backend(model, device, backend)[1]
    call = method_call(
        spec,
        case,
        peer=peer,
        dtype=DTYPES[dtype],
        channels_last=channels_last,
        backend=backend,
    )
    probe = measure(
        ProbeRequest(
            model=model,
            spec=spec,
            peer=peer,
            device=device,
            dtype=dtype,
            channels_last=channels_last,
            backend=backend,
        )
    )
    # a first call pays one-off costs (lazy initialisation); they matter only for short calls
    warmup = 1 if probe.seconds_per_image < WARMUP_BELOW_SECONDS else 0
    seconds = benchmark.pedantic(
        lambda: time_call(call.run, case.device), rounds=1, iterations=1, warmup_rounds=warmup
    )
    forwarded = probe.forwarded_per_image  # counted in the probe's identical call
    ceiling = ceiling_for(model, device, "float32" if peer else dtype)
    rate = forwarded / seconds if forwarded else float("nan")
    info.update(
        {
            "method": call.label,
            "dtype": "float32" if peer else dtype,
            "backend": probe.backend,
            "seconds_per_image": seconds,
            "forwarded_per_image": forwarded,
            "images_per_second": rate,
            "ceiling_images_per_second": ceiling.images_per_second,
            "ceiling_engine": ceiling.engine,
            "ceiling_batch_size": ceiling.batch_size,
            "ratio_to_ceiling": rate / ceiling.images_per_second,
            "peak_memory_bytes": probe.peak_memory_bytes,
        }
    )
    variant = (model, device, spec, dtype, channels_last)
    if peer:
        peer_seconds[(model, device, spec)] = seconds
    elif (model, device, spec) in peer_seconds:
        info["speedup_over_peer"] = peer_seconds[(model, device, spec)] / seconds
    if not peer and backend == "torch":
        torch_seconds[variant] = seconds
    elif not peer and variant in torch_seconds:
        info["speedup_over_torch_backend"] = torch_seconds[variant] / seconds
    benchmark.extra_info.update(info)
    return info


def run_ceiling(benchmark, model: str, device: str) -> None:
    """Benchmark one plain forward of the ceiling's engine at its batch size.

    ``extra_info`` carries the ceiling and every engine's best throughput.
    """
    case = case_for(model, device)
    ceiling = ceiling_for(model, device)
    batch = case.images.expand(ceiling.batch_size, -1, -1, -1).contiguous()
    if ceiling.engine == "torch-channels-last":
        batch = batch.contiguous(memory_format=torch.channels_last)
    forward = (
        resolve_backend(case.module, case.images, "onnxruntime")
        if ceiling.engine == "onnxruntime"
        else case.module
    )

    def run() -> object:
        with torch.inference_mode():
            return forward(batch)

    benchmark.pedantic(lambda: time_call(run, case.device), rounds=1, iterations=1)
    benchmark.extra_info.update(
        method="ceiling",
        ceiling_images_per_second=ceiling.images_per_second,
        ceiling_engine=ceiling.engine,
        ceiling_batch_size=ceiling.batch_size,
        best_by_engine={name: max(rates.values()) for name, rates in ceiling.by_engine.items()},
        skipped_engines=ceiling.skipped,
    )
