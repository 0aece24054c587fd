"""The seed package's loading helpers, without network: weights come from a prepared cache."""

import os
import urllib.error

import pytest
import torch
import torchvision

import sidu


@pytest.fixture
def cached_resnet18(tmp_path, monkeypatch):
    """A TORCH_HOME whose cache holds (random) ResNet-18 weights under torchvision's file name."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(0)
    state = torchvision.models.resnet18().state_dict()
    torch.save(state, checkpoints / os.path.basename(weights.url))
    return state


def test_model_by_string_loads_the_cached_weights(cached_resnet18):
    model = sidu.load_torch_model_by_string("ResNet18_Weights.IMAGENET1K_V1")
    assert not model.training
    assert torch.equal(model.fc.weight, cached_resnet18["fc.weight"])


def test_seed_readme_form_explains_a_backbone(cached_resnet18):
    backbone = sidu.load_torch_backbone("ResNet18_Weights.IMAGENET1K_V1")
    assert isinstance(backbone, torch.nn.Sequential)
    images = torch.rand(1, 3, 64, 64)
    assert backbone(images).shape == (1, 512, 2, 2)
    maps = sidu.sidu(backbone, images)
    assert maps.shape == (1, 64, 64)
    torch.testing.assert_close(maps, sidu.sidu_features(backbone, images).saliency, rtol=0, atol=0)
    assert float(maps.max()) > 0


def test_unknown_weights_name_suggests_close_names():
    with pytest.raises(
        ValueError,
        match=r"unknown weights name 'ResNet18_Weights\.IMAGENET1K_V3'.*IMAGENET1K_V1",
    ):
        sidu.load_torch_model_by_string("ResNet18_Weights.IMAGENET1K_V3")


def test_offline_without_cache_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(*_args, **_kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(
        RuntimeError,
        match=r"could not load the weights 'ResNet18_Weights.IMAGENET1K_V1'.*place the file",
    ):
        sidu.load_torch_model_by_string("ResNet18_Weights.IMAGENET1K_V1")


def test_feature_form_rejects_a_target():
    backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    with pytest.raises(ValueError, match="target is not used by the feature-space form"):
        sidu.sidu(backbone, torch.rand(1, 3, 8, 8), target=1)
