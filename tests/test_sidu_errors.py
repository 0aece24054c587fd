"""Bad input gives a clear error naming the argument and what was expected."""

import pytest
import torch

import sidu


@pytest.fixture
def model(tiny_cnn):
    return tiny_cnn(seed=0, dtype=torch.float32)


@pytest.fixture
def images():
    return torch.rand(2, 3, 12, 12)


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (
            torch.rand(3, 12, 12),
            ValueError,
            r"images must be 4-D \[B, C, H, W\], got shape \(3, 12, 12\)",
        ),
        (
            torch.ones(2, 3, 12, 12, dtype=torch.long),
            TypeError,
            "images must be a floating tensor, got dtype torch.int64",
        ),
        ([[1.0]], TypeError, "images must be a torch.Tensor"),
        (
            torch.rand(2, 1, 12, 12),
            ValueError,
            "images has 1 channels but the model's first layer expects 3",
        ),
        (torch.rand(0, 3, 12, 12), ValueError, "images is an empty batch"),
    ],
)
def test_bad_images(model, bad, error, message):
    with pytest.raises(error, match=message):
        sidu.sidu(model, "3", bad)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_images(model, images, value):
    images[1, 0, 3, 3] = value
    with pytest.raises(ValueError, match="images contains NaN or infinite values"):
        sidu.sidu(model, "3", images)


def test_unknown_layer_suggests_close_names():
    model = torch.nn.Sequential()
    model.add_module("features", torch.nn.Conv2d(3, 4, 3))
    model.add_module("layer4", torch.nn.ReLU())
    with pytest.raises(
        ValueError, match=r"layer 'layr4' is not a module of the model; did you mean 'layer4'"
    ):
        sidu.SIDU(model, "layr4")


def test_foreign_module_as_layer(model):
    with pytest.raises(ValueError, match="layer is a module that is not part of model"):
        sidu.SIDU(model, torch.nn.ReLU())


def test_layer_output_not_4d(model, images):
    with pytest.raises(
        ValueError, match=r"layer '5' must output a 4-D feature map \[B, K, h, w\], got \(2, 6\)"
    ):
        sidu.sidu(model, "5", images)


def test_layer_that_runs_twice_is_refused(images):
    class SharedActivation(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.conv2 = torch.nn.Conv2d(4, 4, 3, padding=1)
            self.act = torch.nn.ReLU()
            self.head = torch.nn.Linear(4, 3)

        def forward(self, x):
            x = self.act(self.conv2(self.act(self.conv1(x))))
            return self.head(x.mean(dim=(2, 3)))

    with pytest.raises(ValueError, match="layer 'act' ran 2 times in one forward pass"):
        sidu.sidu(SharedActivation(), "act", images)


def test_model_without_logits(images):
    backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    with pytest.raises(
        ValueError,
        match=r"model must return logits \[N, num_classes\].*sidu.sidu\(backbone, images\)",
    ):
        sidu.sidu(backbone, "1", images)


@pytest.mark.parametrize(
    ("target", "error", "message"),
    [
        (5, ValueError, r"target out of range: classes outside \[0, 5\).*: \[5, 5\]"),
        (-1, ValueError, r"target out of range: classes outside \[0, 5\).*: \[-1, -1\]"),
        ([0, 7], ValueError, r"target out of range: classes outside \[0, 5\).*: \[7\]"),
        (
            torch.tensor([0, 1, 2]),
            ValueError,
            r"target must be an int or hold one class per image \(2\), got shape \(3,\)",
        ),
        (torch.tensor([0.0, 1.0]), TypeError, "target must hold integer class indices"),
        (True, TypeError, "target must be None, an int, a sequence of ints or a"),
        ("cat", TypeError, "target must be None, an int, a sequence of ints or a"),
        (object(), TypeError, "target must be None, an int, a sequence of ints or a"),
    ],
)
def test_bad_target(model, images, target, error, message):
    with pytest.raises(error, match=message):
        sidu.sidu(model, "3", images, target=target)


def test_model_and_images_on_different_devices(images, tiny_cnn):
    model = tiny_cnn(seed=0, dtype=torch.float32).to("meta")
    with pytest.raises(ValueError, match="model is on meta but images are on cpu"):
        sidu.sidu(model, "3", images)


def test_dtype_mismatch(model, images):
    with pytest.raises(
        TypeError, match=r"images are torch.float64 but the model's parameters are torch.float32"
    ):
        sidu.sidu(model, "3", images.double())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"kernel_width": 0.0}, "kernel_width must be a number > 0"),
        ({"threshold": float("nan")}, "threshold must be a real number"),
        ({"batch_size": 0}, "batch_size must be a positive int or None"),
        ({"dtype": torch.int8}, "dtype must be None, torch.float32"),
    ],
)
def test_bad_options(model, options, message):
    with pytest.raises(ValueError, match=message):
        sidu.SIDU(model, "3", **options)


def test_not_a_model():
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        sidu.SIDU("resnet18", "layer4")
