"""Every explainer beside its peer and the forward ceiling, per model: ``pytest --benchmark-only``.

One group per (explainer, model, device): our explainer, its peer package where one exists
(pytorch-grad-cam's Grad-CAM and Score-CAM) and the model's ceiling. Score-CAM and RISE run with a
reduced, named mask count (``scorecam:max_channels=256``, ``rise:masks=256``): images/s does not
depend on it, and the Score-CAM peer forwards the same channels. SIDU has its own file
(``test_bench_sidu.py``). ``extra_info`` carries seconds and forwarded images per explained image,
images/s, the ratio to the ceiling, the speed-up over the peer and the peak memory (fresh process).
On the CPU the explainers that run on the masked-forward engine (Score-CAM, RISE) are measured
again with ``backend="auto"`` (ONNX Runtime), after the torch case, and report the speed-up over
the torch backend.
"""

import pytest
from bench_support import model_params, run_case, run_ceiling

from sidu_bench.bench import peer_label

EXPLAINERS = ("gradcam", "scorecam:max_channels=256", "rise:masks=256", "center", "random")
WITH_PEERS = [spec for spec in EXPLAINERS if peer_label(spec) is not None]
ON_THE_ENGINE = ("scorecam:max_channels=256", "rise:masks=256")


@pytest.mark.parametrize("spec", WITH_PEERS)
@pytest.mark.parametrize(("model", "device"), model_params())
def test_peer(benchmark, model, device, spec):
    """The peer package's version, measured first so that our case reports the speed-up."""
    pytest.importorskip("pytorch_grad_cam")
    benchmark.group = f"{spec}-{model}-{device}"
    run_case(benchmark, model, device, spec, peer=True)


@pytest.mark.parametrize("spec", EXPLAINERS)
@pytest.mark.parametrize(("model", "device"), model_params())
def test_explainer(benchmark, model, device, spec):
    """Our explainer, float32."""
    benchmark.group = f"{spec}-{model}-{device}"
    info = run_case(benchmark, model, device, spec)
    assert info["seconds_per_image"] > 0


@pytest.mark.parametrize("spec", ON_THE_ENGINE)
@pytest.mark.parametrize(("model", "device"), model_params())
def test_explainer_auto_backend(benchmark, model, device, spec):
    """Our explainer with ``backend="auto"`` (ONNX Runtime on the CPU), float32."""
    if device != "cpu":
        pytest.skip("ONNX Runtime runs the CPU's forwards only")
    pytest.importorskip("onnxruntime")
    benchmark.group = f"{spec}-{model}-{device}"
    info = run_case(benchmark, model, device, spec, backend="auto")
    benchmark.extra_info["variant"] = "float32-auto"
    assert info["seconds_per_image"] > 0


@pytest.mark.parametrize("spec", EXPLAINERS)
@pytest.mark.parametrize(("model", "device"), model_params())
def test_ceiling(benchmark, model, device, spec):
    """The model's plain batched forward, in the same group."""
    benchmark.group = f"{spec}-{model}-{device}"
    run_ceiling(benchmark, model, device)
