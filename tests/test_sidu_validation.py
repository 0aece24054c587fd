"""sidu.validation, sidu.scores and sidu.precision's dtype names: one rule each, named errors."""

import math

import pytest
import torch

from sidu.engine import masked_forward
from sidu.precision import (
    DTYPES,
    autocast,
    check_dtype,
    check_precision,
    dtype_name,
    parse_dtype,
)
from sidu.scores import class_probabilities, target_probability
from sidu.validation import (
    check_batch_size,
    check_images,
    check_logits,
    check_model_device,
    check_model_inputs,
    resolve_target,
)


def test_images_are_finite_unless_finite_false():
    images = torch.rand(2, 3, 4, 4)
    images[1, 2, 0, 0] = math.nan
    with pytest.raises(ValueError, match="images contains NaN or infinite values"):
        check_images(images)
    with pytest.raises(ValueError, match="substrate contains NaN"):
        check_images(images, name="substrate")
    assert check_images(images, finite=False) is images
    with pytest.raises(ValueError, match="images must be 4-D"):
        check_images(images[0], finite=False)


def test_model_inputs_name_channels_device_and_dtype(tiny_cnn):
    model = tiny_cnn(seed=0, dtype=torch.float32)
    images = torch.rand(2, 3, 8, 8)
    assert check_model_inputs(model, images) is images
    with pytest.raises(ValueError, match="images has 1 channels but the model's first layer"):
        check_model_inputs(model, images[:, :1])
    with pytest.raises(TypeError, match=r"images are torch.float64 but the model's parameters"):
        check_model_inputs(model, images.double())
    check_model_inputs(model, images.double(), dtype=torch.bfloat16)  # autocast takes any float
    with pytest.raises(ValueError, match="model and images must be on the same device"):
        check_model_inputs(model.to("meta"), images)


def test_device_check_reads_buffers_of_a_model_without_parameters():
    norm = torch.nn.BatchNorm2d(3, affine=False).to("meta")
    with pytest.raises(ValueError, match="the model is on meta but images are on cpu"):
        check_model_device(norm, torch.rand(1, 3, 2, 2))
    check_model_device(torch.nn.ReLU(), torch.rand(1, 3, 2, 2))


def test_logits_and_batch_size():
    assert check_logits(torch.zeros(3, 5), batch=3).shape == (3, 5)
    with pytest.raises(ValueError, match=r"logits \[N, num_classes\] for N = 2, got \(3, 5\)"):
        check_logits(torch.zeros(3, 5), batch=2)
    with pytest.raises(ValueError, match=r"got \(3,\); use a classifier"):
        check_logits(torch.zeros(3), batch=3, hint="; use a classifier")
    assert check_batch_size(None) is None
    assert check_batch_size(4) == 4
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="batch_size must be a positive int or None"):
            check_batch_size(bad)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (None, [1, 0, 2]),
        (2, [2, 2, 2]),
        ([0, 1, 2], [0, 1, 2]),
        ((2, 2, 0), [2, 2, 0]),
        (torch.tensor(1), [1, 1, 1]),
        (torch.tensor([2, 1, 0], dtype=torch.int32), [2, 1, 0]),
    ],
)
def test_resolve_target_forms(target, expected):
    scores = torch.tensor([[0.1, 0.8, 0.1], [0.5, 0.2, 0.3], [0.0, 0.1, 0.9]])
    classes = resolve_target(target, scores)
    assert classes.dtype == torch.int64
    assert classes.tolist() == expected
    classes[0] = 0  # a fresh tensor, never an expanded view


def test_scores_match_a_plain_float64_softmax():
    generator = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        logits = (torch.randn(4, 7, generator=generator) * 20).to(dtype)
        target = torch.tensor([0, 6, 3, 3])
        probabilities = class_probabilities(logits)
        assert probabilities.dtype == torch.float64
        for i, row in enumerate(logits.double().tolist()):
            top = max(row)
            total = sum(math.exp(v - top) for v in row)
            expected = [math.exp(v - top) / total for v in row]
            assert probabilities[i].tolist() == pytest.approx(expected, abs=1e-15, rel=0)
            assert target_probability(logits, target)[i].item() == pytest.approx(
                expected[int(target[i])], abs=1e-15, rel=0
            )


def test_dtype_names_round_trip_and_errors():
    for name, dtype in DTYPES.items():
        assert parse_dtype(name) is dtype
        assert dtype_name(dtype) == name
    assert dtype_name(torch.float32) == "float32"
    with pytest.raises(ValueError, match="dtype must be one of float32, bfloat16, float16, got"):
        parse_dtype("fp16")
    with pytest.raises(ValueError, match=r"dtype must be None, torch\.float32, torch\.bfloat16"):
        dtype_name(torch.float64)
    for dtype in (None, torch.float32, torch.float64, torch.bfloat16, torch.float16):
        assert check_dtype(dtype) is dtype
    with pytest.raises(ValueError, match=r"dtype must be None, torch\.float32, torch\.float64"):
        check_dtype("bfloat16")
    assert check_precision("tf32") == "tf32"
    with pytest.raises(ValueError, match="precision must be one of"):
        check_precision("high")


def test_autocast_only_for_reduced_dtypes():
    a = torch.ones(2, 2)
    for dtype, expected in ((None, torch.float32), (torch.float64, torch.float32)):
        with autocast(a.device, dtype):
            assert (a @ a).dtype == expected
    with autocast(a.device, torch.bfloat16):
        assert (a @ a).dtype == torch.bfloat16


def test_masked_forward_scans_the_images_unless_told_not_to(tiny_cnn):
    model = tiny_cnn(seed=1, dtype=torch.float32)
    images = torch.rand(1, 3, 8, 8)
    images[0, 0, 0, 0] = math.inf
    masks = torch.ones(2, 8, 8)
    with pytest.raises(ValueError, match="images contains NaN or infinite values"):
        masked_forward(model, images, masks)
    outputs = masked_forward(model, images, masks, validate_args=False)
    assert not bool(torch.isfinite(outputs[0]).all())
