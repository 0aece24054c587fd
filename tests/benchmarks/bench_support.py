"""What the explainer and SIDU benchmark files share: cases, ceilings and the recorded numbers.

Each benchmark measures its case in a fresh process through the ``bench`` probe (forwarded images
counted at the network's stem, peak memory), then times one call in this process with
pytest-benchmark (after a warm-up call when the case is shorter than 2 s). The ceiling is the
model's best plain batched forward throughput, measured once per (model, device, dtype) in the
same session; peers' seconds are kept so that our cases report the speed-up over them.
"""

from __future__ import annotations

import pytest
import torch

from sidu_bench.bench import ProbeRequest, build_case, measure, method_call
from sidu_bench.bench.probe import DTYPES
from sidu_bench.perf import forward_ceiling, time_call

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
_ceilings: dict[tuple[str, str, str, bool], float] = {}
peer_seconds: dict[tuple[str, str, str], float] = {}
"""(model, device, our explainer label) -> the peer's seconds per image, for the speed-up."""


def case_for(model: str, device: str):
    """The built case, shared across the session (one image)."""
    if (model, device) not in _cases:
        _cases[(model, device)] = build_case(model, device)
    return _cases[(model, device)]


def ceiling_for(model: str, device: str, dtype: str = "float32", channels_last: bool = False):
    """The model's ceiling in images/s (measured once per session and variant)."""
    key = (model, device, dtype, channels_last)
    if key not in _ceilings:
        case = case_for(model, device)
        _ceilings[key] = forward_ceiling(
            case.module, case.images, dtype=DTYPES[dtype], channels_last=channels_last
        ).images_per_second
    return _ceilings[key]


def run_case(
    benchmark,
    model: str,
    device: str,
    spec: str,
    *,
    peer: bool = False,
    dtype: str = "float32",
    channels_last: bool = False,
) -> dict[str, float]:
    """Time one call of ``spec`` (or its peer) under ``benchmark``; fill ``extra_info``."""
    case = case_for(model, device)
    call = method_call(spec, case, peer=peer, dtype=DTYPES[dtype], channels_last=channels_last)
    probe = measure(
        ProbeRequest(
            model=model,
            spec=spec,
            peer=peer,
            device=device,
            dtype=dtype,
            channels_last=channels_last,
        )
    )
    # a first call pays one-off costs (lazy initialisation); they matter only for short calls
    warmup = 1 if probe.seconds_per_image < WARMUP_BELOW_SECONDS else 0
    seconds = benchmark.pedantic(
        lambda: time_call(call.run, case.device), rounds=1, iterations=1, warmup_rounds=warmup
    )
    forwarded = probe.forwarded_per_image  # counted at the stem in the probe's identical call
    ceiling = ceiling_for(model, device, "float32" if peer else dtype, channels_last and not peer)
    rate = forwarded / seconds if forwarded else float("nan")
    info = {
        "method": call.label,
        "dtype": "float32" if peer else dtype,
        "seconds_per_image": seconds,
        "forwarded_per_image": forwarded,
        "images_per_second": rate,
        "ceiling_images_per_second": ceiling,
        "ratio_to_ceiling": rate / ceiling,
        "peak_memory_bytes": probe.peak_memory_bytes,
    }
    if peer:
        peer_seconds[(model, device, spec)] = seconds
    elif (model, device, spec) in peer_seconds:
        info["speedup_over_peer"] = peer_seconds[(model, device, spec)] / seconds
    benchmark.extra_info.update(info)
    return info


def run_ceiling(benchmark, model: str, device: str) -> None:
    """Benchmark one plain forward at 32 images; ``extra_info`` carries the ceiling."""
    case = case_for(model, device)
    ceiling = ceiling_for(model, device)
    batch = case.images.expand(32, -1, -1, -1).contiguous()

    def forward() -> object:
        with torch.inference_mode():
            return case.module(batch)

    benchmark.pedantic(lambda: time_call(forward, case.device), rounds=1, iterations=1)
    benchmark.extra_info.update(method="ceiling", ceiling_images_per_second=ceiling)
