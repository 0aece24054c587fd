"""The small CNN of the synthetic data set and its shipped weights.

Architecture (64 x 64 input): four Conv3x3-BN-ReLU blocks of 8, 16, 32 and 64 channels with strides
2, 2, 2, 1, global average pooling and a linear layer to the 6 classes. The explained layer
``features`` outputs 64 channels at 8 x 8 (post-ReLU); about 4 MFLOPs per image.
:func:`sidu_bench.training.train_synthetic` trains it on synthetic images; the result ships as
``weights/synthetic_cnn.pt`` with a JSON of its metrics. Its classes, class space and input size
are the synthetic shapes' (:mod:`sidu_bench.domains`), read from the checkpoint when it has them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sidu.capture import forward_hooks
from sidu_bench.domains import (
    SHAPES_CLASS_NAMES,
    SHAPES_CLASS_SPACE,
    SHAPES_IMAGE_SIZE,
    SYNTHETIC_SHAPES,
)
from sidu_bench.models._api import ModelSpec, register_model
from sidu_bench.models.checkpoint import load_checkpoint, load_state

WEIGHTS = Path(__file__).resolve().parent / "weights" / "synthetic_cnn.pt"
ARCH = "synthetic_cnn"
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
WIDTHS = (8, 16, 32, 64)
STRIDES = (2, 2, 2, 1)
DEFAULT_LAYER = "features"
BLOCKS = (*(f"features.block{index}" for index in range(1, len(WIDTHS) + 1)), "fc")
"""The Conv-BN-ReLU blocks and the classifier (:attr:`ModelSpec.blocks`)."""


class SyntheticCNN(nn.Module):
    """Conv-BN-ReLU blocks (``features``), global average pooling and a linear classifier."""

    def __init__(self, num_classes: int = len(SHAPES_CLASS_NAMES)) -> None:
        super().__init__()
        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        channels = 3
        for index, (width, stride) in enumerate(zip(WIDTHS, STRIDES, strict=True), start=1):
            blocks[f"block{index}"] = nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(channels, width, 3, stride=stride, padding=1, bias=False),
                    bn=nn.BatchNorm2d(width),
                    relu=nn.ReLU(),
                )
            )
            channels = width
        self.features = nn.Sequential(blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]`` for normalised images ``[B, 3, S, S]``."""
        return self.fc(self.pool(self.features(x)).flatten(1))


@register_model(ARCH)
def synthetic_cnn(*, checkpoint: Path | None = None) -> ModelSpec:
    """The CNN trained on the synthetic data set (the shipped weights unless ``checkpoint``)."""
    return synthetic_spec(
        ARCH, SyntheticCNN, WEIGHTS, checkpoint, default_layer=DEFAULT_LAYER, blocks=BLOCKS
    )


def synthetic_spec(
    arch: str,
    build: Callable[[int], nn.Module],
    weights: Path,
    checkpoint: Path | None,
    **fields: Any,
) -> ModelSpec:
    """A synthetic-shapes model's spec: ``build(num_classes)`` with ``weights`` (or ``checkpoint``).

    Classes, input size, normalisation and class space come from the checkpoint's metadata
    (the synthetic shapes' by default); ``fields`` are the remaining :class:`ModelSpec` fields
    (``default_layer``, ``blocks``, ...).
    """
    path = weights if checkpoint is None else checkpoint
    state, metadata = load_checkpoint(path, arch=arch)
    names = tuple(metadata.get("class_names", SHAPES_CLASS_NAMES))
    module = build(len(names))
    load_state(module, state, path)
    return ModelSpec(
        module=module.eval(),
        name=arch if checkpoint is None else f"{arch}@{checkpoint}",
        input_size=int(metadata.get("input_size", SHAPES_IMAGE_SIZE)),
        mean=tuple(metadata.get("mean", MEAN)),
        std=tuple(metadata.get("std", STD)),
        class_names=names,
        class_space=metadata.get("class_space", SHAPES_CLASS_SPACE),
        domain=SYNTHETIC_SHAPES,
        **fields,
    )


def count_flops(module: nn.Module, size: int = SHAPES_IMAGE_SIZE) -> float:
    """Multiply-adds x 2 of convolutions and linear layers for one ``size`` x ``size`` image."""
    flops = 0.0

    def hook(layer: nn.Module, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal flops
        if isinstance(layer, nn.Conv2d):
            per_output = (
                layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
            )
            flops += 2.0 * output.numel() * per_output
        elif isinstance(layer, nn.Linear):
            flops += 2.0 * output.numel() * layer.in_features

    layers = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with forward_hooks(layers, hook), torch.no_grad():
        module(torch.zeros(1, 3, size, size))
    return flops
