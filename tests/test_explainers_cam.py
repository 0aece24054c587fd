"""Grad-CAM and Score-CAM: equal to pytorch-grad-cam's maps, chunk-size invariant, engine-run."""

import numpy as np
import pytest
import torch
from sidu_models import tiny_cnn

from sidu_bench.explainers import CAMExplainer, ExplainerSettings, NoOptions, get_explainer
from sidu_bench.explainers.scorecam import ScoreCAMMasks

IDS = ["a", "b", "c"]
TARGETS = torch.tensor([0, 3, 1])
CASES = [
    # stride of the explained layer, image size (integer and fractional resize factors)
    (4, (32, 32)),
    (2, (20, 28)),
    (3, (31, 17)),
]


def case(stride, size, *, dtype=torch.float32, seed=1):
    model = tiny_cnn(seed=seed, channels=12, stride=stride, dtype=dtype)
    generator = torch.Generator().manual_seed(100 + stride)
    images = torch.randn(3, 3, *size, generator=generator, dtype=dtype)
    return model, images


@pytest.mark.parametrize(
    ("name", "library_class"), [("gradcam", "GradCAM"), ("scorecam", "ScoreCAM")]
)
@pytest.mark.parametrize(("stride", "size"), CASES)
def test_matches_pytorch_grad_cam(name, library_class, stride, size):
    library = pytest.importorskip("pytorch_grad_cam")
    targets_module = pytest.importorskip("pytorch_grad_cam.utils.model_targets")
    model, images = case(stride, size)
    ours = get_explainer(name, model, "3", batch_size=5)(images, TARGETS, IDS).numpy()
    with getattr(library, library_class)(model=model, target_layers=[model[3]]) as cam:
        targets = [targets_module.ClassifierOutputTarget(int(t)) for t in TARGETS]
        reference = cam(input_tensor=images, targets=targets)
    assert reference.shape == ours.shape == (3, *size)
    assert np.ptp(reference, axis=(1, 2)).min() > 0.9, "a flat map proves nothing"
    # measured: <= 3e-7 (float32 rounding); the bound is 1e-3
    assert np.abs(ours - reference).max() <= 1e-5


@pytest.mark.parametrize(("name", "change"), [("gradcam", 0.05), ("scorecam", 0.005)])
def test_the_target_changes_the_map(name, change):
    # Score-CAM's softmax over similar logits gives nearly uniform weights on this tiny model
    model, images = case(4, (32, 32))
    explainer = get_explainer(name, model, "3")
    first = explainer(images, TARGETS, IDS)
    second = explainer(images, (TARGETS + 1) % 5, IDS)
    assert (first - second).abs().amax(dim=(1, 2)).min() > change


def test_scorecam_masks_are_normalised_align_corners_upsamplings():
    activations = torch.tensor([[[[0.0, 2.0], [4.0, 6.0]], [[1.0, 1.0], [1.0, 1.0]]]])
    masks = ScoreCAMMasks(activations, (3, 5)).masks(0, 0, 2)
    # align_corners=True: corners are the input's corners, the centre row is their mean
    expected = torch.tensor(
        [[0.0, 1 / 12, 2 / 12, 3 / 12, 4 / 12], [0.0, 1 / 12, 2 / 12, 3 / 12, 4 / 12]]
    )
    expected = torch.stack([expected[0], expected[0] + 2 / 6, expected[0] + 4 / 6])
    torch.testing.assert_close(masks[0], expected, atol=1e-7, rtol=0)
    assert float(masks[0].max()) == pytest.approx(1.0 / (1.0 + 1e-8), abs=1e-7)
    assert torch.equal(masks[1], torch.zeros(3, 5)), "a constant channel is all zero (1e-8 guard)"


def test_scorecam_runs_on_the_engine_chunk_by_chunk(masked_forward_spy):
    model, images = case(2, (20, 28), dtype=torch.float64)
    get_explainer("scorecam", model, "3", batch_size=5)(images, TARGETS, IDS)
    assert masked_forward_spy.batch_sizes == [5]
    assert max(masked_forward_spy.slices) <= 5
    assert sum(masked_forward_spy.slices) == 3 * 12


@pytest.mark.parametrize("name", ["gradcam", "scorecam"])
def test_chunk_size_and_batch_invariance(name):
    model, images = case(3, (31, 17), dtype=torch.float64)
    reference = get_explainer(name, model, "3", batch_size=64)(images, TARGETS, IDS)
    for batch_size in (1, 7):
        maps = get_explainer(name, model, "3", batch_size=batch_size)(images, TARGETS, IDS)
        torch.testing.assert_close(maps, reference, atol=1e-7, rtol=0)
    for b in range(3):
        single = get_explainer(name, model, "3", batch_size=4)(
            images[b : b + 1], TARGETS[b : b + 1], IDS[b : b + 1]
        )
        torch.testing.assert_close(single[0], reference[b], atol=1e-7, rtol=0)


def test_gradcam_with_frozen_parameters_and_under_inference_mode():
    model, images = case(4, (32, 32))
    reference = get_explainer("gradcam", model, "3")(images, TARGETS, IDS)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    frozen = get_explainer("gradcam", model, "3")(images, TARGETS, IDS)
    torch.testing.assert_close(frozen, reference, atol=0, rtol=0)
    with torch.inference_mode():
        inference_images = images.clone()
        inside = get_explainer("gradcam", model, "3")(inference_images, TARGETS, IDS)
    torch.testing.assert_close(inside, reference, atol=0, rtol=0)
    with torch.inference_mode():
        inference_targets = TARGETS.clone()  # e.g. predictions taken under inference mode
    outside = get_explainer("gradcam", model, "3")(images, inference_targets, IDS)
    torch.testing.assert_close(outside, reference, atol=0, rtol=0)
    assert all(p.grad is None and not p.requires_grad for p in model.parameters())


class SideBranch(torch.nn.Module):
    """A classifier with a branch that runs but misses the logits, and one that never runs."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.side = torch.nn.Conv2d(3, 2, 1)
        self.unused = torch.nn.Conv2d(3, 2, 1)

    def forward(self, x):
        self.side(x)
        return self.net(x)


def test_gradcam_layer_off_the_logit_path():
    model, images = case(4, (32, 32))
    wrapped = SideBranch(model)
    with pytest.raises(ValueError, match="the logits do not depend on layer 'side'"):
        get_explainer("gradcam", wrapped, "side")(images, TARGETS, IDS)
    with pytest.raises(RuntimeError, match="layer 'unused' did not run"):
        get_explainer("gradcam", wrapped, "unused")(images, TARGETS, IDS)
    reference = get_explainer("gradcam", model, "3")(images, TARGETS, IDS)
    torch.testing.assert_close(
        get_explainer("gradcam", wrapped, "net.3")(images, TARGETS, IDS), reference
    )


@pytest.mark.parametrize("name", ["gradcam", "scorecam"])
def test_bfloat16_autocast_stays_close_to_float32(name):
    model, images = case(4, (32, 32))
    full = get_explainer(name, model, "3")(images, TARGETS, IDS)
    reduced = get_explainer(name, model, "3", dtype=torch.bfloat16)(images, TARGETS, IDS)
    assert reduced.dtype == torch.float32
    assert (reduced - full).abs().max() < 0.1
    assert not torch.equal(reduced, full), "autocast was not applied"


class ChannelMeanCAM(CAMExplainer):
    """A toy CAM whose weights rule is 1 / K for every channel."""

    def weights(self, images, targets, logits, activations):
        count = activations.shape[1]
        return torch.full((len(images), count), 1.0 / count, dtype=torch.float64), activations


def test_a_cam_is_its_weights_rule():
    model, images = case(3, (31, 17), dtype=torch.float64)
    explainer = ChannelMeanCAM(model, "3", options=NoOptions(), settings=ExplainerSettings())
    maps = explainer(images, TARGETS, IDS)
    store = []
    handle = model[3].register_forward_hook(lambda module, args, output: store.append(output))
    with torch.no_grad():
        model(images)
    handle.remove()
    for b in range(3):
        cam = store[0][b].mean(dim=0).clamp_min(0)
        cam = (cam - cam.min()) / (cam.max() - cam.min() + 1e-7)
        up = torch.nn.functional.interpolate(cam[None, None], size=(31, 17), mode="bilinear")[0, 0]
        expected = (up - up.min()) / (up.max() - up.min() + 1e-7)
        torch.testing.assert_close(maps[b], expected.float(), rtol=0, atol=1e-6)
    assert float(maps.std()) > 0.1, "a flat map proves nothing"
    with pytest.raises(ValueError, match=r"outside \[0, 5\)"):
        explainer(images, torch.tensor([0, 1, 9]), IDS)
