"""SIDU against the plainly written float64 reference, and its exact invariants."""

import numpy as np
import pytest
import torch
from reference_sidu import layer_output, reference_sidu
from sidu_models import assert_untouched, snapshot, tiny_backbone

import sidu


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


CASES = [
    # seed, image size, threshold, target, stride
    (0, (12, 12), 0.1, None, 2),
    (1, (15, 11), 0.0, 3, 2),
    (2, (9, 16), 0.3, None, 1),
    (3, (20, 20), 0.05, 0, 3),
]


@pytest.mark.parametrize(("seed", "size", "threshold", "target", "stride"), CASES)
def test_float64_matches_reference(seed, size, threshold, target, stride, tiny_cnn):
    model = tiny_cnn(seed=seed, stride=stride)
    torch.manual_seed(100 + seed)
    images = torch.randn(2, 3, *size, dtype=torch.float64)
    result = sidu.SIDU(model, "3", threshold=threshold).explain(images, target)
    assert result.saliency.dtype == torch.float64
    for b in range(2):
        ref = reference_sidu(model, model[3], images[b].numpy(), target=target, threshold=threshold)
        assert ref["saliency"].max() > 0, "a case with an all-zero map proves nothing"
        assert relative_error(result.saliency[b].numpy(), ref["saliency"]) <= 1e-10
        np.testing.assert_allclose(
            result.similarity_difference[b].numpy(), ref["similarity"], rtol=1e-12
        )
        np.testing.assert_allclose(result.uniqueness[b].numpy(), ref["uniqueness"], atol=1e-12)
        assert int(result.target[b]) == ref["target"]


def margin_threshold(model, images, candidates):
    """A threshold no activation lies within 1e-4 of (so float32 cannot flip a mask bit)."""
    activations = np.concatenate(
        [layer_output(model, model[3], img.numpy()).ravel() for img in images]
    )
    for value in candidates:
        if np.abs(activations - value).min() > 1e-4:
            return value
    raise AssertionError("no candidate threshold with a 1e-4 margin")


@pytest.mark.parametrize("seed", [0, 5])
def test_float32_matches_reference(seed, tiny_cnn):
    model64 = tiny_cnn(seed=seed)
    torch.manual_seed(200 + seed)
    images64 = torch.randn(2, 3, 14, 14, dtype=torch.float64)
    threshold = margin_threshold(model64, images64, [0.1, 0.11, 0.12, 0.13, 0.09])
    model32 = tiny_cnn(seed=seed, dtype=torch.float32)
    maps = sidu.sidu(model32, "3", images64.float(), threshold=threshold)
    assert maps.dtype == torch.float32
    for b in range(2):
        ref = reference_sidu(model64, model64[3], images64[b].numpy(), threshold=threshold)
        assert relative_error(maps[b].double().numpy(), ref["saliency"]) <= 1e-5


def test_feature_space_form_matches_reference():
    backbone = tiny_backbone(seed=3)
    torch.manual_seed(3)
    images = torch.randn(2, 3, 10, 12, dtype=torch.float64)
    maps = sidu.sidu(backbone, images, kernel_width=0.25)
    for b in range(2):
        ref = reference_sidu(backbone, None, images[b].numpy())
        assert ref["saliency"].max() > 0
        assert relative_error(maps[b].numpy(), ref["saliency"]) <= 1e-10


def test_equal_uniqueness_gives_the_zero_map(tiny_cnn):
    # Every mask empty (threshold above all activations): all masked images are equal, so all
    # uniqueness values are equal, the authors' 1e-13 guard makes them 0 and the map is 0.
    model = tiny_cnn(seed=0)
    images = torch.randn(1, 3, 12, 12, dtype=torch.float64)
    result = sidu.SIDU(model, "3", threshold=1e9).explain(images)
    assert torch.equal(result.saliency, torch.zeros_like(result.saliency))
    assert int(result.num_distinct_masks[0]) == 1
    ref = reference_sidu(model, model[3], images[0].numpy(), threshold=1e9)
    assert np.array_equal(ref["saliency"], np.zeros((12, 12)))


def explain(model, images, **options):
    return sidu.SIDU(model, "3", **options).explain(images)


def test_deduplication_changes_nothing_but_the_work(tiny_cnn):
    model = tiny_cnn(seed=4, channels=12)
    with torch.no_grad():  # channels 6-11 copy 0-5 (duplicate masks), channel 0 is never active
        model[2].weight[6:] = model[2].weight[:6]
        model[2].bias[6:] = model[2].bias[:6]
        model[2].bias[0] = -100.0
    images = torch.randn(3, 3, 12, 12, dtype=torch.float64)
    on = explain(model, images, threshold=0.2)
    off = explain(model, images, threshold=0.2, deduplicate=False)
    assert (on.num_distinct_masks <= 11).all(), "the case must contain duplicate masks"
    assert off.forwarded_images == 3 + 3 * 12
    assert on.forwarded_images == 3 + int(on.num_distinct_masks.sum())
    torch.testing.assert_close(on.saliency, off.saliency, rtol=0, atol=1e-12)
    torch.testing.assert_close(on.uniqueness, off.uniqueness, rtol=0, atol=1e-12)


@pytest.mark.parametrize("batch_size", [1, 3, 7, 1000])
def test_chunk_size_does_not_change_the_maps(batch_size, tiny_cnn):
    model = tiny_cnn(seed=6, dtype=torch.float32)
    images = torch.randn(3, 3, 16, 16)
    reference = explain(model, images, batch_size=5).saliency
    maps = explain(model, images, batch_size=batch_size).saliency
    torch.testing.assert_close(maps, reference, rtol=0, atol=1e-6 * float(reference.abs().max()))


def test_batch_equals_images_one_by_one_and_repeats_are_identical(tiny_cnn):
    model = tiny_cnn(seed=7, dtype=torch.float32)
    images = torch.randn(4, 3, 16, 16)
    targets = torch.tensor([0, 4, 2, 2])
    explainer = sidu.SIDU(model, "3")
    batch = explainer(images, targets)
    single = torch.cat([explainer(images[i : i + 1], targets[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(batch, single, rtol=0, atol=1e-6 * float(batch.abs().max()))
    assert torch.equal(explainer(images, targets), batch)


def test_targets_int_tensor_and_default(tiny_cnn):
    model = tiny_cnn(seed=8)
    images = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    explainer = sidu.SIDU(model, "3")
    default = explainer.explain(images)
    assert torch.equal(default.target, default.outputs.argmax(dim=1))
    assert torch.equal(default.predicted, default.target)
    as_int = explainer.explain(images, 1)
    as_tensor = explainer.explain(images, torch.tensor([1, 1]))
    assert torch.equal(as_int.saliency, as_tensor.saliency)
    ref = reference_sidu(model, model[3], images[0].numpy(), target=1)
    assert relative_error(as_int.saliency[0].numpy(), ref["saliency"]) <= 1e-10


def test_layer_given_as_module_and_context_manager_hooks(tiny_cnn):
    model = tiny_cnn(seed=9)
    images = torch.randn(1, 3, 12, 12, dtype=torch.float64)
    by_name = sidu.sidu(model, "3", images)
    with sidu.SIDU(model, model[3]) as explainer:
        assert len(model[3]._forward_hooks) == 1
        by_module = explainer(images)
    assert len(model[3]._forward_hooks) == 0
    assert torch.equal(by_name, by_module)


def test_model_is_left_as_it_was(tiny_cnn):
    model = tiny_cnn(seed=10, dtype=torch.float32)
    model.train()
    model[0].eval()
    model.add_module("norm_probe", torch.nn.Identity())
    before = snapshot(model)
    sidu.sidu(model, "3", torch.randn(2, 3, 12, 12))
    assert_untouched(model, before)


def test_batchnorm_runs_in_eval_mode():
    torch.manual_seed(11)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    ).double()
    model[1].running_mean.uniform_(-0.3, 0.3)
    model.train()
    images = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    ours = sidu.sidu(model, "2", images)
    assert model.training
    model.eval()
    ref = reference_sidu(model, model[2], images[0].numpy())
    assert relative_error(ours[0].numpy(), ref["saliency"]) <= 1e-10


def test_result_holds_the_intermediate_quantities(tiny_cnn):
    model = tiny_cnn(seed=12, channels=6)
    images = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    result = sidu.SIDU(model, "3").explain(images)
    assert result.masks.shape == (2, 6, 6, 6)
    assert result.masks.dtype == torch.bool
    assert result.outputs.shape == (2, 5)
    torch.testing.assert_close(result.outputs.sum(dim=1), torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(result.weights, result.similarity_difference * result.uniqueness)
    # Min-max normalised per image, with the authors' 1e-13 guard in the denominator.
    assert torch.equal(result.uniqueness.min(dim=1).values, torch.zeros(2, dtype=torch.float64))
    assert ((result.uniqueness.max(dim=1).values - 1).abs() < 1e-9).all()
    assert (result.uniqueness.max(dim=1).values < 1).all()


def test_bfloat16_autocast_stays_close_to_float32(tiny_cnn):
    model = tiny_cnn(seed=13, dtype=torch.float32)
    images = torch.randn(2, 3, 16, 16)
    full = sidu.sidu(model, "3", images)
    reduced = sidu.sidu(model, "3", images, dtype=torch.bfloat16)
    assert reduced.dtype == torch.float32
    assert relative_error(reduced.numpy(), full.numpy()) < 0.2
