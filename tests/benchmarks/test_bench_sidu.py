"""SIDU speed and memory beside the forward ceiling and pytorch-sidu, measured in one run.

Work is counted in forwarded images (distinct masks + 1 per explained image), so
``images_per_second / ceiling`` says how close the engine runs to the model's own best batched
throughput. Peak memory is measured in a fresh subprocess per case (CPU: resident set size; CUDA:
max allocated). ResNet-50 and VGG-19 run on CUDA only (pytorch-sidu needs ~34 GB on a CPU).
"""

from __future__ import annotations

import pytest
import torch
import torchvision

import sidu
from sidu_bench.perf import forward_ceiling, peak_memory_of, time_call

CASES = [
    # (architecture, layer, device)
    ("resnet18", "layer4", "cpu"),
    ("resnet18", "layer4", "cuda"),
    ("resnet50", "layer4", "cuda"),
    ("vgg19", "features.35", "cuda"),
]
SETUP = """
import torch, torchvision, sidu
torch.manual_seed(0)
model = torchvision.models.{arch}().eval().to("{device}")
image = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1)).to("{device}")
"""
RUNS = {
    "sidu": 'sidu.SIDU(model, "{layer}", dtype={dtype}, channels_last={cl}).explain(image)',
    "pytorch-sidu": (
        "import pytorch_sidu; "
        'pytorch_sidu.sidu(model, "{layer}", image, device=torch.device("{device}"))'
    ),
}
VARIANTS = {
    # name: (autocast dtype, channels-last inputs); channels-last changes float reduction order
    # only, and is opt-in like the reduced precisions.
    "float32": (None, False),
    "float32-channels_last": (None, True),
    "bfloat16": (torch.bfloat16, False),
    "bfloat16-channels_last": (torch.bfloat16, True),
}
CPU_VARIANTS = ("float32", "float32-channels_last")

_measured: dict[tuple[str, str, str], float] = {}


def _skip_unavailable(device: str) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")


def _model_and_image(arch: str, device: str) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)().eval().to(device)
    image = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1)).to(device)
    return model, image


def _layer_channels(model: torch.nn.Module, layer: str, image: torch.Tensor) -> int:
    shapes = []
    handle = dict(model.named_modules())[layer].register_forward_hook(
        lambda _m, _i, out: shapes.append(out.shape)
    )
    with torch.inference_mode():
        model(image)
    handle.remove()
    return shapes[0][1]


@pytest.fixture(scope="module")
def ceilings() -> dict[tuple[str, str, str], float]:
    return {}


def _ceiling(cache, arch, device, variant, model, image) -> float:
    key = (arch, device, variant)
    if key not in cache:
        dtype, channels_last = VARIANTS[variant]
        cache[key] = forward_ceiling(
            model, image, dtype=dtype, channels_last=channels_last
        ).images_per_second
    return cache[key]


@pytest.mark.parametrize(("arch", "layer", "device"), CASES)
def test_pytorch_sidu(benchmark, ceilings, arch, layer, device):
    """The incumbent package on the same model, layer and image (it always runs in float32)."""
    _skip_unavailable(device)
    pytorch_sidu = pytest.importorskip("pytorch_sidu")
    benchmark.group = f"sidu-{arch}-{device}"
    model, image = _model_and_image(arch, device)
    masks = _layer_channels(model, layer, image)
    seconds = benchmark.pedantic(
        lambda: time_call(
            lambda: pytorch_sidu.sidu(model, layer, image, device=torch.device(device)),
            image.device,
        ),
        rounds=1,
        iterations=1,
    )
    _measured[(arch, device, "pytorch-sidu")] = seconds
    ceiling = _ceiling(ceilings, arch, device, "float32", model, image)
    benchmark.extra_info.update(
        seconds_per_image=seconds,
        forwarded_per_image=masks + 1,
        images_per_second=(masks + 1) / seconds,
        ceiling_images_per_second=ceiling,
        ratio_to_ceiling=(masks + 1) / seconds / ceiling,
        peak_memory_bytes=peak_memory_of(
            SETUP.format(arch=arch, device=device),
            RUNS["pytorch-sidu"].format(layer=layer, device=device),
            device=device,
        ),
    )


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize(("arch", "layer", "device"), CASES)
def test_sidu(benchmark, ceilings, arch, layer, device, variant):
    """Our SIDU (de-duplicated, batched); reduced precision only on CUDA."""
    _skip_unavailable(device)
    if device == "cpu" and variant not in CPU_VARIANTS:
        pytest.skip("the CPU cases are fp32")
    benchmark.group = f"sidu-{arch}-{device}"
    model, image = _model_and_image(arch, device)
    dtype, channels_last = VARIANTS[variant]
    explainer = sidu.SIDU(model, layer, dtype=dtype, channels_last=channels_last)
    results = []
    seconds = benchmark.pedantic(
        lambda: time_call(lambda: results.append(explainer.explain(image)), image.device),
        rounds=1,
        iterations=1,
    )
    forwarded = results[-1].forwarded_images
    ceiling = _ceiling(ceilings, arch, device, variant, model, image)
    peer = _measured.get((arch, device, "pytorch-sidu"))
    benchmark.extra_info.update(
        seconds_per_image=seconds,
        forwarded_per_image=forwarded,
        distinct_masks=int(results[-1].num_distinct_masks[0]),
        images_per_second=forwarded / seconds,
        ceiling_images_per_second=ceiling,
        ratio_to_ceiling=forwarded / seconds / ceiling,
        speedup_over_pytorch_sidu=None if peer is None else peer / seconds,
        peak_memory_bytes=peak_memory_of(
            SETUP.format(arch=arch, device=device),
            RUNS["sidu"].format(
                layer=layer, dtype=dtype and f"torch.{variant.split('-')[0]}", cl=channels_last
            ),
            device=device,
        ),
    )
