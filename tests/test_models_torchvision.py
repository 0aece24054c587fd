"""torchvision weights: preprocessing, default layers per family, cache and offline errors."""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision

from sidu.tokens import TokenGrid
from sidu_bench.models import get_model, list_models, torchvision_models
from sidu_bench.models.torchvision_models import (
    DenseNetPostReLU,
    adapt_architecture,
    cache_file,
    default_layer,
    default_reshape,
    default_sidu_layer,
    list_architectures,
    list_weights,
)

pytestmark = pytest.mark.filterwarnings("ignore:The default weight initialization:FutureWarning")

FAMILY_EXAMPLES = {
    "alexnet": "features.11",
    "convnext_tiny": "features",
    "densenet121": "features.relu5",
    "efficientnet_b0": "features",
    "googlenet": "inception5b",
    "inception_v3": "Mixed_7c",
    "maxvit_t": "blocks.3",
    "mnasnet0_5": "layers",
    "mobilenet_v2": "features",
    "mobilenet_v3_small": "features",
    "regnet_x_400mf": "trunk_output",
    "resnet18": "layer4",
    "resnext50_32x4d": "layer4",
    "shufflenet_v2_x0_5": "conv5",
    "squeezenet1_1": "features",
    "swin_t": "permute",
    "vgg11_bn": "features.27",
    "wide_resnet50_2": "layer4",
}


def meta_model(arch: str) -> torch.nn.Module:
    with torch.device("meta"):
        return adapt_architecture(arch, torchvision.models.get_model(arch, weights=None)).eval()


def test_every_weights_entry_has_preprocessing_and_categories():
    names = list_weights()
    assert "ResNet50_Weights.IMAGENET1K_V2" in names
    assert len(names) > 100
    assert set(names) <= set(list_models())
    for name in names:
        weights = torchvision.models.get_weight(name)
        preset = weights.transforms()
        assert len(preset.mean) == len(preset.std) == 3, name
        assert preset.resize_size[0] >= preset.crop_size[0] > 0, name
        assert len(weights.meta["categories"]) == 1000, name
        assert cache_file(weights).name.endswith(".pth"), name


@pytest.mark.parametrize("arch", [a for a in list_architectures() if not a.startswith("regnet")])
def test_every_architecture_has_a_default_layer_or_a_clear_error(arch):
    # RegNet builders compute widths with tensors and cannot run on the meta device; one RegNet
    # is checked on the CPU below.
    module = meta_model(arch)
    module.get_submodule(default_layer(arch, module))
    sidu_layer = default_sidu_layer(arch, module)
    if arch.startswith("vit"):  # tokens, read through TokenGrid; SIDU on its own layer
        layers = len(module.get_submodule("encoder.layers"))
        assert default_layer(arch, module) == f"encoder.layers.encoder_layer_{layers - 1}.ln_1"
        assert sidu_layer == f"encoder.layers.encoder_layer_{layers - 2}.mlp.1"
        assert isinstance(module.get_submodule(sidu_layer), torch.nn.GELU)
        assert default_reshape(arch) == TokenGrid(prefix=1)
    else:
        assert sidu_layer is None
        assert default_reshape(arch) is None


@pytest.mark.parametrize(("arch", "layer"), sorted(FAMILY_EXAMPLES.items()))
def test_default_layer_outputs_a_feature_map_once(arch, layer):
    module = (
        meta_model(arch)
        if arch != "regnet_x_400mf"
        else adapt_architecture(arch, torchvision.models.get_model(arch, weights=None)).eval()
    )
    assert default_layer(arch, module) == layer
    device = next(module.parameters()).device
    outputs = []
    handle = module.get_submodule(layer).register_forward_hook(
        lambda _m, _i, out: outputs.append(out.shape)
    )
    with torch.no_grad():
        size = 299 if arch == "inception_v3" else 224
        logits = module(torch.zeros(1, 3, size, size, device=device))
    handle.remove()
    assert logits.shape == (1, 1000)
    assert len(outputs) == 1
    assert len(outputs[0]) == 4
    assert outputs[0][2] >= 7


def test_densenet_wrapper_keeps_logits_and_state_dict():
    torch.manual_seed(0)
    original = torchvision.models.densenet121(weights=None).eval()
    wrapped = DenseNetPostReLU(original).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(wrapped(x), original(x))
    assert wrapped.state_dict().keys() == original.state_dict().keys()


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty torch cache and no network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))

    def refuse(url, *_args, **_kwargs):
        raise urllib.error.URLError(f"no network for {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    return tmp_path / "torch-home"


def test_cached_weights_load_with_their_preprocessing(offline):
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    path = cache_file(weights)
    assert path.parent == offline / "hub" / "checkpoints"
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), path)
    spec = get_model("ResNet18_Weights.DEFAULT")
    assert spec.name == "ResNet18_Weights.IMAGENET1K_V1"
    assert spec.input_size == 256  # the preset's resize size: squash, no centre crop
    assert spec.mean == (0.485, 0.456, 0.406)
    assert spec.std == (0.229, 0.224, 0.225)
    assert spec.default_layer == "layer4"
    assert spec.class_space == "imagenet-1k"
    assert spec.class_names[0] == "tench"
    assert not spec.module.training
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(spec.module(x), reference.eval()(x))


def test_uncached_weights_offline_say_where_to_put_the_file(offline):
    with pytest.raises(RuntimeError, match=r"resnet18-f37072fd\.pth.*TORCH_HOME") as error:
        get_model("ResNet18_Weights.IMAGENET1K_V1")
    assert str(offline / "hub" / "checkpoints") in str(error.value)


def test_vit_needs_an_explicit_layer(offline):
    weights = torchvision.models.ViT_B_32_Weights.IMAGENET1K_V1
    assert torchvision_models.is_weights_name(str(weights))
    with pytest.raises(RuntimeError, match="could not be downloaded"):
        get_model(str(weights), layer="encoder")
