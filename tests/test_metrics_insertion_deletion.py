"""Insertion/deletion: exactness against the plain per-step reference, hand-computed curves,
RISE's blur kernel, chunking, model state and input errors."""

import copy
import math
import warnings

import numpy as np
import pytest
import torch
from reference_metrics import (
    PixelSumModel,
    blur,
    insertion_deletion_one,
    rise_kernel,
    tiny_cnn,
)
from torch import nn

from sidu_bench.metrics import curve_auc, insertion_deletion, rise_blur, rise_blur_kernel

pytestmark = pytest.mark.usefixtures("one_thread")


def _random_batch(seed: int, size: tuple[int, int], map_size: tuple[int, int] | None = None):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(3, 3, *size, generator=generator)
    maps = torch.rand(3, *(map_size or size), generator=generator)
    return images, maps


def _assert_matches_reference(result, model, images, maps, atol=1e-6, **options):
    for index in range(len(images)):
        reference = insertion_deletion_one(
            model, images[index], maps[index].double().numpy(), **options
        )
        assert result.target[index].item() == reference["target"]
        for name in ("deletion", "insertion"):
            curve = getattr(result, f"{name}_curve")[index].numpy()
            np.testing.assert_allclose(curve, reference[f"{name}_curve"], rtol=0, atol=atol)
            auc = getattr(result, f"{name}_auc")[index].item()
            assert auc == pytest.approx(reference[f"{name}_auc"], abs=atol)
            # The curve must move, or the comparison could not tell orders apart.
            assert np.ptp(reference[f"{name}_curve"]) > 1e-3


@pytest.mark.parametrize(
    ("size", "map_size", "options"),
    [
        pytest.param((16, 16), None, {}, id="square-224-steps"),
        pytest.param((20, 28), None, {}, id="non-square-224-steps-not-dividing"),
        pytest.param((16, 16), None, {"step": 7}, id="step-not-dividing-HW"),
        pytest.param((20, 28), (5, 7), {}, id="low-resolution-saliency"),
        pytest.param((12, 12), None, {"steps": 10}, id="ten-steps"),
    ],
)
def test_matches_plain_per_step_reference(size, map_size, options):
    model = tiny_cnn(seed=sum(size))
    images, maps = _random_batch(seed=size[1], size=size, map_size=map_size)
    result = insertion_deletion(model, images, maps, **options)
    _assert_matches_reference(result, model, images, maps, **options)


def test_float64_model_and_images_match_reference_tightly():
    model = tiny_cnn(seed=3).double()
    images, maps = _random_batch(seed=4, size=(14, 18))
    images = images.double()
    result = insertion_deletion(model, images, maps, step=5)
    assert result.deletion_curve.dtype == torch.float64
    _assert_matches_reference(result, model, images, maps, atol=1e-12, step=5)


def test_explicit_target_and_substrates_match_reference():
    model = tiny_cnn(seed=5)
    images, maps = _random_batch(seed=6, size=(12, 16))
    target = torch.tensor([4, 0, 2])
    grey = torch.full((3, 1, 1), 0.5)
    start = torch.randn(3, 3, 12, 16, generator=torch.Generator().manual_seed(7))
    result = insertion_deletion(
        model,
        images,
        maps,
        target=target,
        steps=12,
        deletion_substrate=grey,
        insertion_substrate=start,
    )
    assert result.target.tolist() == [4, 0, 2]
    for index in range(3):
        reference = insertion_deletion_one(
            model,
            images[index],
            maps[index].double().numpy(),
            target=int(target[index]),
            steps=12,
            deletion_substrate=np.full((3, 1, 1), 0.5),
            insertion_substrate=start[index].double().numpy(),
        )
        np.testing.assert_allclose(
            result.deletion_curve[index].numpy(), reference["deletion_curve"], atol=1e-6, rtol=0
        )
        np.testing.assert_allclose(
            result.insertion_curve[index].numpy(), reference["insertion_curve"], atol=1e-6, rtol=0
        )


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


# Pixel values 1..6 in row-major order on a 2 x 3 image, the same in all three channels; the
# model's target-0 probability is sigmoid(sum of all values / 10).
HAND_IMAGE = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]).expand(1, 3, 2, 3).contiguous()
# Order by descending saliency, ties by row-major index: pixels 1, 3 (0.9), 2, 4, 0, 5,
# holding the values 2, 4, 3, 5, 1, 6.
HAND_MAP = torch.tensor([[[0.1, 0.9, 0.5], [0.9, 0.2, 0.0]]])


def test_hand_computed_deletion_curve_with_fixed_step():
    result = insertion_deletion(PixelSumModel(10.0), HAND_IMAGE, HAND_MAP, step=2, target=0)
    # Sums 3 * (21, 21 - 2 - 4, 21 - 2 - 4 - 3 - 5, 0) = 63, 45, 21, 0.
    expected = [_sigmoid(6.3), _sigmoid(4.5), _sigmoid(2.1), 0.5]
    np.testing.assert_allclose(result.deletion_curve[0].numpy(), expected, rtol=0, atol=1e-7)
    auc = (sum(expected) - expected[0] / 2 - expected[-1] / 2) / 3
    assert result.deletion_auc.item() == pytest.approx(auc, abs=1e-7)
    assert (result.n_steps, result.step_rule, result.step) == (3, "step", 2)
    assert result.pixels_changed.tolist() == [0, 2, 4, 6]


def test_hand_computed_deletion_curve_with_steps_not_dividing():
    result = insertion_deletion(PixelSumModel(10.0), HAND_IMAGE, HAND_MAP, steps=4, target=0)
    # Boundaries floor(i * 6 / 4) = 0, 1, 3, 4, 6: removed value sums 0, 2, 9, 14, 21.
    expected = [_sigmoid(6.3), _sigmoid(5.7), _sigmoid(3.6), _sigmoid(2.1), 0.5]
    np.testing.assert_allclose(result.deletion_curve[0].numpy(), expected, rtol=0, atol=1e-7)
    assert (result.n_steps, result.step_rule, result.step) == (4, "steps", None)
    assert result.pixels_changed.tolist() == [0, 1, 3, 4, 6]


def test_hand_computed_insertion_curve_from_a_zero_substrate():
    zeros = torch.zeros(1, 3, 2, 3)
    result = insertion_deletion(
        PixelSumModel(10.0), HAND_IMAGE, HAND_MAP, step=2, target=0, insertion_substrate=zeros
    )
    # Sums 3 * (0, 2 + 4, 2 + 4 + 3 + 5, 21) = 0, 18, 42, 63.
    expected = [0.5, _sigmoid(1.8), _sigmoid(4.2), _sigmoid(6.3)]
    np.testing.assert_allclose(result.insertion_curve[0].numpy(), expected, rtol=0, atol=1e-7)


def test_constant_map_removes_pixels_in_row_major_order():
    # A constant map, with -0.0 and +0.0 mixed: all ties, so row-major order (values 1..6).
    constant = torch.tensor([[[0.0, -0.0, 0.0], [-0.0, 0.0, -0.0]]])
    result = insertion_deletion(PixelSumModel(10.0), HAND_IMAGE, constant, step=2, target=0)
    # Sums 3 * (21, 21 - 1 - 2, 21 - 10, 0) = 63, 54, 33, 0.
    expected = [_sigmoid(6.3), _sigmoid(5.4), _sigmoid(3.3), 0.5]
    np.testing.assert_allclose(result.deletion_curve[0].numpy(), expected, rtol=0, atol=1e-7)


def test_constant_map_matches_reference_on_a_cnn():
    model = tiny_cnn(seed=8)
    images, _ = _random_batch(seed=9, size=(10, 14))
    maps = torch.full((3, 10, 14), 0.25)
    result = insertion_deletion(model, images, maps, steps=20)
    _assert_matches_reference(result, model, images, maps, steps=20)


def test_blur_kernel_has_rises_published_numbers():
    kernel = rise_blur_kernel()
    assert kernel.shape == (11, 11)
    assert round(kernel[5, 5].item(), 5) == 0.00883
    for corner in (kernel[0, 0], kernel[0, 10], kernel[10, 0], kernel[10, 10]):
        assert round(corner.item(), 5) == 0.00774
    assert kernel.sum().item() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(kernel.numpy(), rise_kernel(), rtol=0, atol=1e-15)


def test_rise_blur_matches_scipy_with_zero_padding():
    image = torch.randn(
        2, 3, 9, 13, generator=torch.Generator().manual_seed(10), dtype=torch.float64
    )
    blurred = rise_blur(image)
    for index in range(2):
        np.testing.assert_allclose(blurred[index].numpy(), blur(image[index].numpy()), atol=1e-14)
    # Zero padding: a constant image darkens at the border, by the kernel's mass inside.
    ones = rise_blur(torch.ones(1, 1, 20, 20, dtype=torch.float64))
    assert ones[0, 0, 0, 0].item() == pytest.approx(rise_kernel()[5:, 5:].sum(), abs=1e-14)
    assert ones[0, 0, 10, 10].item() == pytest.approx(1.0, abs=1e-14)


class _CountingModel(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(len(x))
        return self.inner(x)


def test_chunk_size_does_not_change_curves_and_bounds_each_forward():
    images, maps = _random_batch(seed=11, size=(12, 12))
    results = {}
    for batch_size in (1, 7, 100_000):
        model = _CountingModel(tiny_cnn(seed=12))
        results[batch_size] = insertion_deletion(
            model, images, maps, steps=16, batch_size=batch_size
        )
        assert max(model.batch_sizes) == min(batch_size, 3 * 16)
        # The clean images once, then 16 deletion and 16 insertion steps per image.
        assert sum(model.batch_sizes) == 3 * (2 * 16 + 1)
    for batch_size in (7, 100_000):
        for name in ("deletion_curve", "insertion_curve"):
            np.testing.assert_allclose(
                getattr(results[batch_size], name).numpy(),
                getattr(results[1], name).numpy(),
                rtol=0,
                atol=1e-6,
            )


def test_default_chunk_forwards_everything_once():
    model = _CountingModel(tiny_cnn(seed=13))
    images, maps = _random_batch(seed=14, size=(16, 16))
    insertion_deletion(model, images, maps)
    # One image sizes the chunks (sidu.engine.auto_batch_size); then the clean images once and
    # 224 deletion and 224 insertion steps per image.
    assert model.batch_sizes[0] == 1
    assert sum(model.batch_sizes[1:]) == 3 * (2 * 224 + 1)


def test_curve_auc_is_the_normalised_trapezoid():
    curve = torch.tensor([[1.0, 0.5, 0.25, 0.0], [0.2, 0.2, 0.2, 0.2]], dtype=torch.float64)
    expected = [(0.75 + 0.375 + 0.125) / 3, 0.2]
    np.testing.assert_allclose(curve_auc(curve).numpy(), expected, rtol=0, atol=1e-15)


class _StatefulNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = tiny_cnn(seed=15)
        self.norm = nn.BatchNorm2d(3)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.body(self.norm(x)))


def test_model_state_and_training_flags_are_restored():
    torch.manual_seed(15)
    model = _StatefulNet()
    model.norm.running_mean.uniform_(-1, 1)
    model.train()
    model.body.eval()
    flags = [module.training for module in model.modules()]
    before = copy.deepcopy(model.state_dict())
    images, maps = _random_batch(seed=16, size=(10, 10))
    result = insertion_deletion(model, images, maps, steps=8)
    assert [module.training for module in model.modules()] == flags
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    assert all(parameter.requires_grad for parameter in model.parameters())
    reference_model = copy.deepcopy(model).eval()
    _assert_matches_reference(result, reference_model, images, maps, steps=8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_no_host_synchronisation_per_step_on_cuda():
    model = tiny_cnn(seed=17).cuda()
    images, maps = (t.cuda() for t in _random_batch(seed=18, size=(16, 16)))
    counts = []
    for steps in (8, 64):
        insertion_deletion(model, images, maps, steps=steps, batch_size=4)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                insertion_deletion(model, images, maps, steps=steps, batch_size=4)
        finally:
            torch.cuda.set_sync_debug_mode(0)
        counts.append(len(caught))
    assert counts[0] == counts[1]


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"images": torch.zeros(3, 4, 4)}, ValueError, r"images must be 4-D"),
        (
            {"images": torch.zeros(1, 3, 4, 4, dtype=torch.int64)},
            TypeError,
            r"images must be a floating",
        ),
        ({"saliency": torch.rand(2, 4, 4)}, ValueError, r"saliency must hold one map per image"),
        ({"saliency": torch.rand(4, 4)}, ValueError, r"saliency must be 3-D"),
        (
            {"saliency": torch.tensor([[[0.0, math.nan]] * 2])},
            ValueError,
            r"saliency must be finite",
        ),
        (
            {"saliency": torch.tensor([[[0.0, math.inf]] * 2])},
            ValueError,
            r"saliency must be finite",
        ),
        ({"target": 5}, ValueError, r"target out of range.*\[0, 5\).*\[5\]"),
        ({"target": -1}, ValueError, r"target out of range"),
        ({"target": [0, 1]}, ValueError, r"target must be an int or hold one class per image"),
        ({"target": 1.0}, TypeError, r"target must hold integer class indices"),
        ({"steps": 0}, ValueError, r"steps must be an integer >= 1"),
        ({"step": 0}, ValueError, r"step must be an integer >= 1"),
        ({"step": 2.5}, TypeError, r"step must be an integer >= 1"),
        ({"batch_size": 0}, ValueError, r"batch_size must be an integer >= 1"),
        (
            {"deletion_substrate": torch.zeros(2, 3, 4, 4)},
            ValueError,
            r"deletion_substrate must broadcast",
        ),
        (
            {"insertion_substrate": torch.zeros(4, 5)},
            ValueError,
            r"insertion_substrate must broadcast",
        ),
        ({"insertion_substrate": 0.0}, TypeError, r"insertion_substrate must be a torch.Tensor"),
    ],
)
def test_bad_input_raises_a_clear_error(change, error, message):
    arguments = {
        "model": tiny_cnn(seed=19),
        "images": torch.zeros(1, 3, 4, 4),
        "saliency": torch.rand(1, 4, 4),
    }
    arguments.update(change)
    with pytest.raises(error, match=message):
        insertion_deletion(**arguments)


def test_model_output_and_device_errors():
    images, maps = torch.zeros(1, 3, 4, 4), torch.rand(1, 4, 4)
    flat = nn.Sequential(nn.Flatten(0))
    with pytest.raises(ValueError, match=r"model must return logits \[N, num_classes\]"):
        insertion_deletion(flat, images, maps)
    elsewhere = tiny_cnn(seed=20).to("meta")
    with pytest.raises(ValueError, match=r"model and images must be on the same device"):
        insertion_deletion(elsewhere, images, maps)


def test_default_chunks_fit_the_engine_s_cpu_budget_and_are_balanced():
    from sidu_bench.metrics.insertion_deletion import _chunk_size

    model = nn.Sequential(
        nn.Conv2d(3, 8, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)
    )
    model.train()
    images = torch.rand(1, 3, 224, 224)
    # per image: the input (602112 bytes), 3 x the largest leaf output (the conv's 1605632
    # bytes) and two input-sized sources: 6623232 bytes; 128 MiB holds 20 of them, and 224
    # forwards -> 12 chunks of <= 20.
    assert _chunk_size(images, None, total=224, model=model) == 19
    assert _chunk_size(images, None, total=30, model=model) == 15
    assert _chunk_size(images, None, total=20, model=model) == 20
    assert _chunk_size(images, 7, total=224, model=model) == 7
    assert model.training, "the model's training flag is restored"
    # small inputs: at most the engine's CPU cap of 256; 5000 forwards -> 20 chunks of 250
    assert _chunk_size(torch.rand(1, 3, 16, 16), None, total=5000, model=model) == 250
