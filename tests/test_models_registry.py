"""The model registry: every entry's schema, names, layers and local checkpoints."""

from __future__ import annotations

import pytest
import torch
import torchvision

from sidu_bench.models import ModelSpec, get_model, list_models
from sidu_bench.models.checkpoint import load_checkpoint, save_checkpoint

REGISTERED = [
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "synthetic_cnn",
    "synthetic_vit",
]


def test_registered_names():
    assert list_models(include_torchvision=False) == REGISTERED


@pytest.mark.parametrize("name", REGISTERED)
def test_registered_model_schema(name):
    spec = get_model(name)
    assert isinstance(spec, ModelSpec)
    assert spec.name == name
    assert not spec.module.training
    assert len(spec.mean) == len(spec.std) == 3
    assert all(s > 0 for s in spec.std)
    assert spec.class_space is not None
    assert len(set(spec.class_names)) == spec.num_classes
    outputs, sidu_outputs = [], []
    handle = spec.layer().register_forward_hook(lambda _m, _i, out: outputs.append(out))
    sidu_layer = spec.layer(spec.sidu_layer or spec.default_layer)
    sidu_handle = sidu_layer.register_forward_hook(lambda _m, _i, out: sidu_outputs.append(out))
    with torch.no_grad():
        logits = spec.module(torch.zeros(2, 3, spec.input_size, spec.input_size))
    handle.remove()
    sidu_handle.remove()
    assert logits.shape == (2, spec.num_classes)
    assert len(outputs) == 1, "the default layer must fire exactly once per forward"
    read = spec.reshape or (lambda output: output)  # a transformer's tokens, read as a grid
    features = read(outputs[0])
    assert features.ndim == 4
    assert features.shape[0] == 2
    assert features.shape[2] >= 7
    # SIDU thresholds post-activation maps: ReLU's (>= 0) or GELU's (>= -0.17)
    assert float(read(sidu_outputs[0]).min()) >= -0.17, "SIDU's layer must be post-activation"
    if spec.sidu_layer is None:
        assert float(features.min()) >= 0, "the default layer must be post-activation"


def test_unknown_model_lists_close_names():
    with pytest.raises(ValueError, match=r"unknown model 'efficientnet_lite3'.*efficientnet_lite0"):
        get_model("efficientnet_lite3")
    with pytest.raises(ValueError, match=r"ResNet50_Weights\.IMAGENET1K_V2"):
        get_model("ResNet50_Weights.IMAGENET1K_V3")
    with pytest.raises(
        ValueError, match=r"architecture without weights.*ResNet50_Weights\.IMAGENET1K_V2"
    ):
        get_model("resnet50")


def test_layer_override_is_checked():
    assert get_model("synthetic_cnn", layer="features.block3").default_layer == "features.block3"
    with pytest.raises(ValueError, match=r"unknown layer 'features\.blok3'.*features\.block3"):
        get_model("synthetic_cnn", layer="features.blok3")


def test_input_size_override():
    assert get_model("synthetic_cnn", input_size=96).input_size == 96
    with pytest.raises(ValueError, match="input_size"):
        get_model("synthetic_cnn", input_size=0)


def test_torchvision_architecture_from_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None, num_classes=3).eval()
    path = tmp_path / "resnet18-3.pt"
    save_checkpoint(path, reference.state_dict(), class_names=["x", "y", "z"], input_size=128)
    spec = get_model("resnet18", checkpoint=path)
    assert spec.class_names == ("x", "y", "z")
    assert spec.input_size == 128
    assert spec.default_layer == "layer4"
    assert spec.class_space is None
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(spec.module(x), reference(x))


def test_bare_state_dict_checkpoint_infers_the_classes(tmp_path):
    path = tmp_path / "bare.pth"
    torch.save(torchvision.models.squeezenet1_1(weights=None, num_classes=5).state_dict(), path)
    spec = get_model("squeezenet1_1", checkpoint=path)
    assert spec.num_classes == 5
    assert spec.input_size == 224
    assert spec.default_layer == "features"


def test_registered_architecture_from_a_checkpoint(tmp_path):
    spec = get_model("synthetic_cnn")
    path = tmp_path / "cnn.pt"
    save_checkpoint(path, spec.module.state_dict(), arch="synthetic_cnn")
    again = get_model("synthetic_cnn", checkpoint=path)
    assert again.name == f"synthetic_cnn@{path}"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(again.module(x), spec.module(x))


def test_extra_checkpoint_entries_are_ignored_with_a_warning(tmp_path, caplog):
    path = tmp_path / "training.pt"
    state = get_model("synthetic_cnn").module.state_dict()
    torch.save({"state_dict": state, "epoch": 3, "class_names": list("abcdef")}, path)
    loaded, metadata = load_checkpoint(path)
    assert metadata == {"class_names": list("abcdef")}
    assert loaded.keys() == state.keys()
    assert "ignoring entries ['epoch']" in caplog.text


def test_bad_checkpoints_name_the_file(tmp_path):
    pickled = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), pickled)
    with pytest.raises(ValueError, match=r"module\.pt.*weights_only=True"):
        load_checkpoint(pickled)
    wrong = tmp_path / "wrong.pt"
    save_checkpoint(wrong, torchvision.models.resnet18(weights=None).state_dict(), arch="resnet18")
    with pytest.raises(ValueError, match=r"wrong\.pt is for 'resnet18'"):
        get_model("synthetic_cnn", checkpoint=wrong)
    with pytest.raises(ValueError, match=r"wrong\.pt is for 'resnet18', not 'resnet34'"):
        get_model("resnet34", checkpoint=wrong)
    assert load_checkpoint(wrong, arch="resnet18")[1]["arch"] == "resnet18"
    bare = tmp_path / "bare.pt"
    save_checkpoint(bare, torchvision.models.resnet18(weights=None).state_dict())
    with pytest.raises(ValueError, match=r"bare\.pt does not fit the architecture"):
        get_model("resnet34", checkpoint=bare)
    with pytest.raises(FileNotFoundError, match="absent"):
        get_model("resnet18", checkpoint=tmp_path / "absent.pt")
    with pytest.raises(ValueError, match=r"unknown architecture 'resnet_18'.*resnet18"):
        get_model("resnet_18", checkpoint=wrong)
