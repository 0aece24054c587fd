"""SIDU per model beside the forward ceiling and pytorch-sidu, measured in one run.

One group per (model, device): pytorch-sidu (the incumbent, float32, one forward per mask), our
SIDU in each precision/layout/backend variant and the model's ceiling (the best engine and batch
size, same session). Work is counted in forwarded images (distinct masks + the clean image and
the engine's chunk-sizing probe), so ``ratio_to_ceiling`` says how close the engine runs to the
model's best plain batched throughput. The ONNX Runtime variants (``float32-onnxruntime``: the
masked forwards on ONNX Runtime; ``float32-auto``: what ``backend="auto"`` chooses) run on the
CPU only, after the torch ``float32`` variant, and ``extra_info`` carries their
``speedup_over_torch_backend`` and the one-time set-up (``backend_setup_seconds``, outside the
timing). Reduced precision runs on CUDA only; on the CPU the channels-last variant and
pytorch-sidu on EfficientNet-Lite0 (~8 GB, a minute) need ``--bench-large``. pytorch-sidu on
ResNet-50 needs ~34 GB: CUDA only.
"""

import pytest
from bench_support import model_params, run_case, run_ceiling

VARIANTS = {
    # name: (dtype, channels-last inputs, backend); channels-last changes float reduction order
    # only, ONNX Runtime agrees with torch within float tolerance
    "float32": ("float32", False, "torch"),
    "float32-onnxruntime": ("float32", False, "onnxruntime"),
    "float32-auto": ("float32", False, "auto"),
    "float32-channels_last": ("float32", True, "torch"),
    "bfloat16": ("bfloat16", False, "torch"),
    "bfloat16-channels_last": ("bfloat16", True, "torch"),
}
CPU_DEFAULT_VARIANTS = ("float32", "float32-onnxruntime", "float32-auto")
CPU_LARGE_VARIANTS = ("float32-channels_last",)
CPU_ONLY_VARIANTS = ("float32-onnxruntime", "float32-auto")
CPU_LARGE_PEER_MODELS = ("efficientnet_lite0", "resnet50", "vgg19")


def _large(request) -> bool:
    return request.config.getoption("bench_large")


@pytest.mark.parametrize(("model", "device"), model_params())
def test_pytorch_sidu(benchmark, request, model, device):
    """The incumbent package on the same model, layer and image (it always runs in float32)."""
    pytest.importorskip("pytorch_sidu")
    if device == "cpu" and model in CPU_LARGE_PEER_MODELS and not _large(request):
        pytest.skip("pytorch-sidu on this model on the CPU: add --bench-large")
    if device == "cpu" and model == "resnet50":
        pytest.skip("pytorch-sidu on ResNet-50 needs ~34 GB: CUDA only")
    benchmark.group = f"sidu-{model}-{device}"
    run_case(benchmark, model, device, "sidu", peer=True)


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize(("model", "device"), model_params())
def test_sidu(benchmark, request, model, device, variant):
    """Our SIDU (de-duplicated, batched) in one variant."""
    if device == "cpu" and variant not in CPU_DEFAULT_VARIANTS:
        if variant not in CPU_LARGE_VARIANTS:
            pytest.skip("reduced precision: CUDA cases only")
        if not _large(request):
            pytest.skip("channels-last on the CPU: add --bench-large")
    if device != "cpu" and variant in CPU_ONLY_VARIANTS:
        pytest.skip("ONNX Runtime runs the CPU's forwards only")
    dtype, channels_last, backend = VARIANTS[variant]
    if backend != "torch":
        pytest.importorskip("onnxruntime")
    benchmark.group = f"sidu-{model}-{device}"
    info = run_case(
        benchmark,
        model,
        device,
        "sidu",
        dtype=dtype,
        channels_last=channels_last,
        backend=backend,
    )
    benchmark.extra_info["variant"] = variant
    assert info["forwarded_per_image"] > 1


@pytest.mark.parametrize(("model", "device"), model_params())
def test_ceiling(benchmark, model, device):
    """The model's plain batched forward, in the same group."""
    benchmark.group = f"sidu-{model}-{device}"
    run_ceiling(benchmark, model, device)
