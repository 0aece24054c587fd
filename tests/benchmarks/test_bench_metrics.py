"""Speed of the batched insertion/deletion against RISE's per-step loop and the model's ceiling.

ResNet-18 with random weights at 224 px: the full protocol (224 steps) on CUDA, 112 steps (RISE's
step of 448 pixels) on the CPU to keep the file near a minute on 2 cores; the rate per forwarded
image hardly depends on the number of steps. Throughput is counted in
forwarded images per second; the ceiling is the model's best plain batched forward throughput
over engines (on the CPU torch eager, channels-last and ONNX Runtime) and batch sizes (up to 64
on the CPU, 512 on CUDA), measured in the same run on the same device
(:func:`sidu_bench.bench.perf.best_forward_ceiling`). On the CPU the batched protocol runs again on
ONNX Runtime (``backend="onnxruntime"``, set up outside the timing), reports its speed-up over
the torch run and agrees with it within 1e-5 in every AUC. Run with
``pytest tests/benchmarks/test_bench_metrics.py --benchmark-only``.
"""

import math
from collections.abc import Callable

import pytest
import torch
import torchvision
from torch import nn

from sidu.backends import resolve_backend
from sidu_bench.bench.perf import Ceiling, best_forward_ceiling
from sidu_bench.metrics import insertion_deletion, rise_blur

SIZE = 224
STEPS = {"cpu": 112, "cuda": 224}
WARMUP_STEPS = {"cpu": 10, "cuda": 224}
CEILING_SECONDS = {"cpu": 2.5, "cuda": 1.0}
# Explained images per device: small enough for the whole file to run in ~1 minute on 2 cores.
N_IMAGES = {"cpu": 1, "cuda": 16}
N_LOOP_IMAGES = {"cpu": 1, "cuda": 2}

DEVICES = [
    pytest.param("cpu"),
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    ),
]


def _synchronise(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@pytest.fixture(scope="module")
def setups() -> dict[str, tuple[nn.Module, torch.Tensor, torch.Tensor]]:
    """Per device: the model, the images and smooth random saliency maps (built lazily)."""
    return {}


def _setup(setups: dict, device: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    if device not in setups:
        torch.manual_seed(0)
        model = torchvision.models.resnet18(weights=None).eval().to(device)
        generator = torch.Generator().manual_seed(1)
        images = torch.randn(N_IMAGES[device], 3, SIZE, SIZE, generator=generator).to(device)
        coarse = torch.rand(N_IMAGES[device], 1, 7, 7, generator=generator)
        maps = nn.functional.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear")[:, 0]
        setups[device] = (model, images, maps.to(device))
    return setups[device]


@pytest.fixture(scope="module")
def batched_results() -> dict:
    """Per device: the batched result, kept for the per-step loop's agreement check."""
    return {}


@pytest.fixture(scope="module")
def ceilings() -> dict[str, Ceiling]:
    """Per device: the best plain forward throughput over engines and batch sizes (lazily)."""
    return {}


@pytest.fixture(scope="module")
def torch_seconds() -> dict[str, float]:
    """Per device: the batched protocol's seconds on the torch backend, for the speed-up."""
    return {}


def _ceiling(ceilings: dict, setups: dict, device: str) -> Ceiling:
    """Sustained plain forward rate: every engine and batch size runs for CEILING_SECONDS after a
    warm-up (a burst of a few forwards overstates what a CPU sustains)."""
    if device not in ceilings:
        model, images, _ = _setup(setups, device)
        ceilings[device] = best_forward_ceiling(
            model, images[:1], min_seconds=CEILING_SECONDS[device]
        )
    return ceilings[device]


def rise_per_step_loop(
    model: nn.Module, image: torch.Tensor, saliency: torch.Tensor, *, step: int
) -> tuple[float, float]:
    """RISE's CausalMetric, as its code runs it: one forward (batch 1) per step.

    Returns (insertion AUC, deletion AUC). Substrates as in RISE: zeros for deletion, RISE's
    blur for insertion.
    """
    _, channels, height, width = image.shape
    n_pixels = height * width
    n_steps = math.ceil(n_pixels / step)
    with torch.inference_mode():
        target = int(model(image).argmax())
        order = torch.sort(-saliency.flatten(), stable=True).indices
        aucs = []
        for start, finish in ((rise_blur(image), image), (image, torch.zeros_like(image))):
            current = start.clone()
            scores = []
            for i in range(n_steps + 1):
                probabilities = torch.softmax(model(current).double(), dim=1)
                scores.append(probabilities[0, target].item())  # a host sync per step, as RISE
                if i < n_steps:
                    pixels = order[i * step : (i + 1) * step]
                    current.view(channels, n_pixels)[:, pixels] = finish.view(channels, n_pixels)[
                        :, pixels
                    ]
            aucs.append((sum(scores) - scores[0] / 2 - scores[-1] / 2) / n_steps)
    return aucs[0], aucs[1]


def _timed(benchmark, function: Callable[[], object], device: str) -> tuple[object, float]:
    """Run ``function`` once under the benchmark; return its result and the wall time."""

    def run() -> object:
        result = function()
        _synchronise(device)
        return result

    result = benchmark.pedantic(run, rounds=1, iterations=1)
    return result, benchmark.stats.stats.min


@pytest.mark.parametrize("device", DEVICES)
def test_plain_forward_ceiling(benchmark, setups, ceilings, device):
    model, images, _ = _setup(setups, device)
    ceiling = _ceiling(ceilings, setups, device)
    batch = torch.randn(ceiling.batch_size, 3, SIZE, SIZE, device=device)
    if ceiling.engine == "torch-channels-last":
        batch = batch.contiguous(memory_format=torch.channels_last)
    forward = (
        resolve_backend(model, images[:1], "onnxruntime")
        if ceiling.engine == "onnxruntime"
        else model
    )

    def run() -> None:
        with torch.inference_mode():
            forward(batch)

    _, seconds = _timed(benchmark, run, device)
    benchmark.extra_info.update(
        {
            "device": device,
            "images_per_s_by_engine_and_batch_size": {
                engine: {str(k): round(v, 1) for k, v in rates.items()}
                for engine, rates in ceiling.by_engine.items()
            },
            "skipped_engines": ceiling.skipped,
            "best_engine": ceiling.engine,
            "best_batch_size": ceiling.batch_size,
            "ceiling_images_per_s": round(ceiling.images_per_second, 1),
        }
    )
    assert seconds > 0


@pytest.mark.parametrize("device", DEVICES)
def test_batched_insertion_deletion(
    benchmark, setups, ceilings, batched_results, torch_seconds, device
):
    model, images, maps = _setup(setups, device)
    ceiling = _ceiling(ceilings, setups, device).images_per_second
    steps = STEPS[device]
    # Warm-up with the chunk size of the timed run (10 at 224 px on the CPU; oneDNN and cuDNN
    # set up each new batch size once).
    insertion_deletion(model, images[:1], maps[:1], steps=WARMUP_STEPS[device])

    result, seconds = _timed(
        benchmark, lambda: insertion_deletion(model, images, maps, steps=steps), device
    )
    forwards = len(images) * (2 * steps + 1)
    rate = forwards / seconds
    benchmark.extra_info.update(
        {
            "device": device,
            "explained_images": len(images),
            "steps": steps,
            "forwarded_images_per_explained_image": 2 * steps + 1,
            "images_per_s": round(rate, 1),
            "seconds_per_explained_image": round(seconds / len(images), 4),
            "ceiling_images_per_s": round(ceiling, 1),
            "ceiling_engine": ceilings[device].engine,
            "ratio_to_ceiling": round(rate / ceiling, 3),
            "backend": "torch",
        }
    )
    assert result.deletion_curve.shape == (len(images), steps + 1)
    batched_results[device] = result
    torch_seconds[device] = seconds


def test_batched_insertion_deletion_onnxruntime(
    benchmark, setups, ceilings, batched_results, torch_seconds
):
    """The batched protocol with every forward on ONNX Runtime (CPU), against the torch run."""
    pytest.importorskip("onnxruntime")
    device = "cpu"
    model, images, maps = _setup(setups, device)
    ceiling = _ceiling(ceilings, setups, device).images_per_second
    steps = STEPS[device]
    backend = resolve_backend(model, images, "onnxruntime")  # export, session and check
    # once per model and session: here, or in the ceiling (then this one is served from the cache)
    setup_seconds = backend.setup_seconds or ceilings[device].setup_seconds.get("onnxruntime", 0.0)
    insertion_deletion(model, images[:1], maps[:1], steps=WARMUP_STEPS[device], backend=backend)

    result, seconds = _timed(
        benchmark,
        lambda: insertion_deletion(model, images, maps, steps=steps, backend=backend),
        device,
    )
    forwards = len(images) * (2 * steps + 1)
    rate = forwards / seconds
    info = {
        "device": device,
        "backend": "onnxruntime",
        "backend_setup_seconds": round(setup_seconds, 2),
        "explained_images": len(images),
        "steps": steps,
        "forwarded_images_per_explained_image": 2 * steps + 1,
        "images_per_s": round(rate, 1),
        "seconds_per_explained_image": round(seconds / len(images), 4),
        "ceiling_images_per_s": round(ceiling, 1),
        "ceiling_engine": ceilings[device].engine,
        "ratio_to_ceiling": round(rate / ceiling, 3),
    }
    if device in torch_seconds:
        info["speedup_over_torch_backend"] = round(torch_seconds[device] / seconds, 3)
    benchmark.extra_info.update(info)
    torch_result = batched_results.get(device) or insertion_deletion(
        model, images, maps, steps=steps
    )
    torch.testing.assert_close(result.insertion_auc, torch_result.insertion_auc, rtol=0, atol=1e-5)
    torch.testing.assert_close(result.deletion_auc, torch_result.deletion_auc, rtol=0, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_per_step_loop_insertion_deletion(benchmark, setups, ceilings, batched_results, device):
    model, images, maps = _setup(setups, device)
    ceiling = _ceiling(ceilings, setups, device).images_per_second
    count = N_LOOP_IMAGES[device]
    steps = STEPS[device]
    step = SIZE * SIZE // steps

    def loop() -> list[tuple[float, float]]:
        return [
            rise_per_step_loop(model, images[i : i + 1], maps[i], step=step) for i in range(count)
        ]

    aucs, seconds = _timed(benchmark, loop, device)
    forwards_per_image = 2 * (steps + 1) + 1
    rate = count * forwards_per_image / seconds
    benchmark.extra_info.update(
        {
            "device": device,
            "explained_images": count,
            "steps": steps,
            "forwarded_images_per_explained_image": forwards_per_image,
            "images_per_s": round(rate, 1),
            "seconds_per_explained_image": round(seconds / count, 4),
            "ceiling_images_per_s": round(ceiling, 1),
            "ratio_to_ceiling": round(rate / ceiling, 3),
        }
    )
    # Both compute the same protocol: the AUCs agree.
    batched = batched_results.get(device) or insertion_deletion(
        model, images[:count], maps[:count], steps=steps
    )
    for i, (insertion, deletion) in enumerate(aucs):
        assert insertion == pytest.approx(batched.insertion_auc[i].item(), abs=1e-5)
        assert deletion == pytest.approx(batched.deletion_auc[i].item(), abs=1e-5)
