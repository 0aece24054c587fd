"""The Captum adapter: parity with Captum's own ``attribute``, plain references, conventions."""

import sys

import pytest
import torch
from sidu_models import assert_untouched, explain_checked, explained_case, snapshot

from sidu_bench import cli, plugins
from sidu_bench.explainers import get_explainer, item_seed, list_explainers, parse_spec
from sidu_bench.explainers.captum_adapter import SMOOTHGRAD_CHUNK, reduce_channels
from sidu_bench.metrics.substrates import rise_blur

CAPTUM = [name for name in list_explainers() if name.startswith("captum.")]
SPECS = {
    "captum.DeepLift": "captum.DeepLift",
    "captum.GuidedBackprop": "captum.GuidedBackprop",
    "captum.InputXGradient": "captum.InputXGradient",
    "captum.IntegratedGradients": "captum.IntegratedGradients:n_steps=8",
    "captum.LayerGradCam": "captum.LayerGradCam",
    "captum.Occlusion": "captum.Occlusion:window=3",
    "captum.Saliency": "captum.Saliency",
    "captum.SmoothGrad": "captum.SmoothGrad:samples=5",
}
pytestmark = pytest.mark.usefixtures("one_thread")

IDS = ["a", "b", "c"]
TARGETS = torch.tensor([2, 0, 4])


def captum_attr():
    return pytest.importorskip("captum.attr")


def test_every_captum_explainer_is_covered_and_parses():
    assert sorted(SPECS) == CAPTUM
    assert len(CAPTUM) == 8
    assert parse_spec("captum.IntegratedGradients:n_steps=50").label == "captum.IntegratedGradients"
    assert (
        parse_spec("captum.Occlusion:reduce=max_abs,window=9,stride=3").label
        == "captum.Occlusion:reduce=max_abs,stride=3,window=9"
    )
    spec = "captum.IntegratedGradients:n_steps=8,reduce=sum,captum.Saliency,center"
    assert cli._names(spec) == [
        "captum.IntegratedGradients:n_steps=8,reduce=sum",
        "captum.Saliency",
        "center",
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("captum.Saliency:reduce=mean", r"option 'reduce' expects one of abs_sum, sum, max_abs"),
        ("captum.IntegratedGradients:baseline=ones", "expects one of zeros, blur, got 'ones'"),
        ("captum.IntegratedGradients:n_steps=0", "n_steps must be >= 1"),
        ("captum.IntegratedGradients:method=riemann_left,n_steps=1", "n_steps must be >= 2"),
        ("captum.Occlusion:window=4,stride=5", r"stride must be in \[0, window=4\]"),
        ("captum.SmoothGrad:samples=0", "samples must be >= 1"),
        ("captum.LayerGradCam:reduce=sum", "unknown option 'reduce'"),
    ],
)
def test_bad_options_are_named(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_spec(spec)


def test_missing_captum_gives_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    model, _ = explained_case()
    with pytest.raises(ValueError, match=r"'captum.Saliency' needs the optional package captum"):
        get_explainer("captum.Saliency", model)


def test_reduce_channels_matches_plain_loops():
    attributions = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    expected = {rule: torch.empty(2, 4, 5, dtype=torch.float64) for rule in ("abs_sum", "sum")}
    expected["max_abs"] = torch.empty(2, 4, 5, dtype=torch.float64)
    for b in range(2):
        for i in range(4):
            for j in range(5):
                values = [float(attributions[b, c, i, j]) for c in range(3)]
                expected["abs_sum"][b, i, j] = sum(abs(v) for v in values)
                expected["sum"][b, i, j] = sum(values)
                expected["max_abs"][b, i, j] = max(abs(v) for v in values)
    for rule, reference in expected.items():
        torch.testing.assert_close(reduce_channels(attributions, rule), reference)
    with pytest.raises(ValueError, match="reduce must be one of"):
        reduce_channels(attributions, "mean")
    with pytest.raises(ValueError, match=r"must be a \[B, C, H, W\] tensor"):
        reduce_channels(attributions[0], "sum")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("rule", ["abs_sum", "sum", "max_abs"])
def test_saliency_and_integrated_gradients_equal_captums_attribute(dtype, rule):
    attr = captum_attr()
    model, images = explained_case(dtype)
    saliency = get_explainer(f"captum.Saliency:reduce={rule}", model)(images, TARGETS, IDS)
    ig = get_explainer(f"captum.IntegratedGradients:reduce={rule}", model)(images, TARGETS, IDS)
    inputs = images.clone().requires_grad_(True)
    own_saliency = attr.Saliency(model).attribute(inputs, target=TARGETS, abs=False)
    own_ig = attr.IntegratedGradients(model).attribute(
        inputs, baselines=torch.zeros_like(images), target=TARGETS, n_steps=50
    )
    for maps, own in ((saliency, own_saliency), (ig, own_ig)):
        expected = reduce_channels(own.detach().to(torch.float64), rule).float()
        torch.testing.assert_close(maps, expected, rtol=0, atol=1e-6)


def test_saliency_is_the_plain_input_gradient():
    captum_attr()
    model, images = explained_case()
    maps = get_explainer("captum.Saliency", model)(images, TARGETS, IDS)
    for index, target in enumerate(TARGETS.tolist()):
        x = images[index : index + 1].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(x)[0, target], x)
        expected = sum(grad[0, c].abs() for c in range(3))
        torch.testing.assert_close(maps[index], expected.float(), rtol=0, atol=1e-7)


def test_integrated_gradients_riemann_right_with_blur_baseline_is_the_plain_sum():
    captum_attr()
    model, images = explained_case()
    steps = 6
    spec = (
        f"captum.IntegratedGradients:n_steps={steps},method=riemann_right,baseline=blur,reduce=sum"
    )
    maps = get_explainer(spec, model, batch_size=4)(images, TARGETS, IDS)
    for index, target in enumerate(TARGETS.tolist()):
        x = images[index : index + 1]
        x0 = rise_blur(x)
        total = torch.zeros_like(x)
        for k in range(1, steps + 1):
            point = (x0 + k / steps * (x - x0)).requires_grad_(True)
            (grad,) = torch.autograd.grad(model(point)[0, target], point)
            total += grad / steps
        expected = ((x - x0) * total)[0].sum(dim=0)
        torch.testing.assert_close(maps[index], expected.float(), rtol=0, atol=1e-6)


@pytest.mark.parametrize(("window", "stride"), [(3, 0), (4, 3)])
def test_occlusion_is_the_plain_sliding_window(window, stride):
    captum_attr()
    model, images = explained_case()
    spec = f"captum.Occlusion:window={window},stride={stride},reduce=sum"
    maps = get_explainer(spec, model, batch_size=5)(images, TARGETS, IDS)
    step = stride or window
    height, width = images.shape[-2:]
    for index, target in enumerate(TARGETS.tolist()):
        x = images[index : index + 1]
        clean = float(model(x)[0, target].detach())
        total = torch.zeros(height, width, dtype=torch.float64)
        count = torch.zeros(height, width, dtype=torch.float64)
        rows = range(0, -(-(height - window) // step) * step + 1, step)
        cols = range(0, -(-(width - window) // step) * step + 1, step)
        for top in rows:
            for left in cols:
                occluded = x.clone()
                occluded[..., top : top + window, left : left + window] = 0.0
                total[top : top + window, left : left + window] += clean - float(
                    model(occluded)[0, target].detach()
                )
                count[top : top + window, left : left + window] += 1
        expected = 3 * total / count  # the same difference in each of the 3 channels
        torch.testing.assert_close(maps[index], expected.float(), rtol=0, atol=1e-6)


def test_occlusion_window_larger_than_the_image_is_named():
    captum_attr()
    model, images = explained_case()
    with pytest.raises(ValueError, match=r"window=15 exceeds the image size 12x10"):
        get_explainer("captum.Occlusion", model)(images, TARGETS, IDS)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_layer_grad_cam_equals_the_builtin_gradcam(dtype):
    captum_attr()
    model, images = explained_case(dtype)
    ours = get_explainer("captum.LayerGradCam", model, "3")(images, TARGETS, IDS)
    builtin = get_explainer("gradcam", model, "3")(images, TARGETS, IDS)
    torch.testing.assert_close(ours, builtin, rtol=0, atol=1e-6 if dtype == torch.float64 else 1e-5)
    assert float(ours.amax()) > 0.99


def test_smoothgrad_is_seeded_per_item_and_equals_noise_tunnel():
    attr = captum_attr()
    model, images = explained_case()
    explainer = get_explainer("captum.SmoothGrad:samples=20", model, seed=7)
    state = torch.random.get_rng_state()
    maps = explainer(images, TARGETS, IDS)
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.testing.assert_close(
        explainer(images[1:], TARGETS[1:], IDS[1:]), maps[1:], rtol=0, atol=0
    )
    renamed = explainer(images[:1], TARGETS[:1], ["z"])
    assert not torch.equal(renamed, maps[:1])
    other_seed = get_explainer("captum.SmoothGrad:samples=20", model, seed=8)
    assert not torch.equal(other_seed(images[:1], TARGETS[:1], IDS[:1]), maps[:1])
    for index, item_id in enumerate(IDS):
        x = images[index : index + 1].clone().requires_grad_(True)
        with torch.random.fork_rng():
            torch.manual_seed(item_seed(7, item_id, "captum.SmoothGrad"))
            own = attr.NoiseTunnel(attr.Saliency(model)).attribute(
                x,
                nt_type="smoothgrad",
                nt_samples=20,
                nt_samples_batch_size=SMOOTHGRAD_CHUNK,
                stdevs=0.15 * float(x.detach().max() - x.detach().min()),
                target=int(TARGETS[index]),
                abs=False,
            )
        expected = reduce_channels(own.detach(), "abs_sum")[0].float()
        torch.testing.assert_close(maps[index], expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_contract_batch_invariance_and_no_trace(name):
    captum_attr()
    model, images = explained_case()
    model.train()
    before = snapshot(model)
    explainer, maps = explain_checked(
        SPECS[name], model, images, TARGETS, IDS, seed=1, batch_size=4
    )
    assert float(maps.abs().amax()) > 0
    alone = explainer(images[2:], TARGETS[2:], IDS[2:])
    torch.testing.assert_close(alone, maps[2:], rtol=0, atol=1e-7)
    assert_untouched(model, before)


def test_targets_outside_the_classes_are_named():
    captum_attr()
    model, images = explained_case()
    with pytest.raises(ValueError, match=r"outside \[0, 5\)"):
        get_explainer("captum.Saliency", model)(images, torch.tensor([0, 1, 9]), IDS)


def test_provenance_names_captum_and_its_version():
    captum = pytest.importorskip("captum")
    model, _ = explained_case()
    record = plugins.provenance(get_explainer("captum.Occlusion:window=5", model))
    assert record["label"] == "captum.Occlusion:window=5"
    assert record["options"] == {"window": 5, "stride": 0, "baseline": "zeros", "reduce": "abs_sum"}
    assert (record["package"], record["version"]) == ("captum", captum.__version__)
    assert record["source"] == "built-in"
