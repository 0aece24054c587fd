"""The suite's tiny seeded models, and a check that an explainer left a model as it found it."""

from __future__ import annotations

import torch
import torchvision
from torch import nn


def tiny_cnn(
    *, seed: int, channels: int = 6, classes: int = 5, stride: int = 2, dtype=torch.float64
) -> nn.Sequential:
    """Conv-ReLU-Conv-ReLU ('3' is the explained layer) then pooling and a linear head."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, channels, 3, stride=stride, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(channels, classes),
    )
    with torch.no_grad():
        model[2].bias.add_(0.05)
        model[6].weight.mul_(4.0)
    return model.to(dtype).eval()


def tiny_backbone(*, seed: int, channels: int = 5, dtype=torch.float64) -> nn.Sequential:
    """A headless backbone returning feature maps [B, channels, H/2, W/2]."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, channels, 3, stride=2, padding=1),
        nn.ReLU(),
    )
    return model.to(dtype).eval()


def explained_case(dtype=torch.float64) -> tuple[nn.Sequential, torch.Tensor]:
    """The contract tests' classifier (8 channels at layer '3', 5 classes) and 3 images 12 x 10."""
    model = tiny_cnn(seed=2, channels=8, dtype=dtype)
    images = torch.randn(3, 3, 12, 10, dtype=dtype, generator=torch.Generator().manual_seed(3))
    return model, images


def explain_checked(
    spec: str, model: nn.Module, images: torch.Tensor, targets: torch.Tensor, ids, **settings
):
    """Build explainer ``spec`` on layer '3'; return it and its maps, checked against the
    interface: the canonical label, maps ``[B, H, W]`` float32 and finite."""
    from sidu_bench.explainers import get_explainer

    explainer = get_explainer(spec, model, "3", **settings)
    assert explainer.label == spec
    maps = explainer(images, targets, ids)
    assert maps.shape == (images.shape[0], *images.shape[-2:])
    assert maps.dtype == torch.float32
    assert bool(torch.isfinite(maps).all())
    return explainer, maps


def snapshot(model: nn.Module) -> dict[str, object]:
    """Everything an explainer must leave as it was: modes, state, grad flags, devices."""
    return {
        "training": [m.training for m in model.modules()],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "device": [p.device for p in model.parameters()],
    }


def assert_untouched(model: nn.Module, before: dict[str, object]) -> None:
    """Assert that ``model`` matches its :func:`snapshot` ``before``: no hook, no ``.grad``."""
    after = snapshot(model)
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert after["device"] == before["device"]
    for key, value in before["state"].items():
        assert torch.equal(after["state"][key], value), key
    for module in model.modules():
        assert not module._forward_hooks
        assert not module._forward_pre_hooks
        assert not module._backward_hooks
    assert all(p.grad is None for p in model.parameters())


def tiny_vit(dtype=torch.float32, seed=0) -> nn.Module:
    """A torchvision ViT at 32 px: 4 x 4 patches of 8 px, 1 class token, width 16, 5 classes."""
    torch.manual_seed(seed)
    model = torchvision.models.VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
        num_classes=5,
    )
    nn.init.normal_(model.heads.head.weight, std=0.5)  # torchvision starts it at zero
    return model.to(dtype).eval()


def tiny_swin(seed=0) -> nn.Module:
    """A torchvision Swin at 32 px: its stages output channels-last grids [B, h, w, C]."""
    torch.manual_seed(seed)
    model = torchvision.models.SwinTransformer(
        patch_size=[4, 4],
        embed_dim=16,
        depths=[1, 1],
        num_heads=[2, 2],
        window_size=[2, 2],
        num_classes=5,
    )
    return model.eval()
