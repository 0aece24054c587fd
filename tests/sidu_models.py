"""Tiny seeded classifiers for the SIDU tests."""

from __future__ import annotations

import torch
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
