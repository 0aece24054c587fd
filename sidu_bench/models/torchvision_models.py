"""torchvision classification weights (``ResNet50_Weights.IMAGENET1K_V2``) as model specs.

Preprocessing follows the weights' own preset except for the centre crop, which evaluation never
does: images are squashed to the preset's *resize* size (232 for ``ResNet50_Weights.IMAGENET1K_V2``)
and normalised with its mean and std. Vision transformers (``vit_*``) accept only their training
resolution and get the preset's crop size instead.

Weights are read from torchvision's cache (``$TORCH_HOME/hub/checkpoints``) or downloaded there;
without network and cache the error says which file to put where.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections import OrderedDict
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models import WeightsEnum

from sidu.loading import weights_index
from sidu_bench.domains import NATURAL_IMAGES
from sidu_bench.models._api import ModelSpec

logger = logging.getLogger(__name__)

IMAGENET_SPACE = "imagenet-1k"

_FAMILY_LAYERS = (
    ("resnet", "layer4"),
    ("resnext", "layer4"),
    ("wide_resnet", "layer4"),
    ("densenet", "features.relu5"),
    ("mobilenet", "features"),
    ("efficientnet", "features"),
    ("convnext", "features"),
    ("regnet", "trunk_output"),
    ("shufflenet", "conv5"),
    ("squeezenet", "features"),
    ("mnasnet", "layers"),
    ("googlenet", "inception5b"),
    ("inception", "Mixed_7c"),
    ("swin", "permute"),
)
"""Default explained layer per architecture family: the last post-activation feature map."""


def list_architectures() -> list[str]:
    """Names of the torchvision classification builders (``resnet50``, ...)."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


def list_weights() -> list[str]:
    """Every torchvision classification weights name (aliases such as ``DEFAULT`` excluded)."""
    return sorted({str(weights) for _, weights in weights_index().values() if _classifies(weights)})


def is_weights_name(name: str) -> bool:
    """Whether ``name`` is a torchvision classification weights name (aliases included)."""
    return name in weights_index() and _classifies(weights_index()[name][1])


def _classifies(weights: WeightsEnum) -> bool:
    """Whether ``weights`` classify (``VGG16_Weights.IMAGENET1K_FEATURES`` extracts features)."""
    return bool(weights.meta.get("categories"))


def weights_for_architecture(arch: str) -> str:
    """The canonical name of an architecture's default weights."""
    return str(torchvision.models.get_model_weights(arch).DEFAULT)


def default_layer(arch: str, module: nn.Module) -> str:
    """The default explained layer of a torchvision architecture.

    ResNet/ResNeXt/Wide-ResNet ``layer4``; VGG and AlexNet the last ReLU of ``features``;
    DenseNet the ReLU appended to ``features`` by :func:`build`; MobileNet, EfficientNet,
    ConvNeXt, SqueezeNet ``features``; RegNet ``trunk_output``; ShuffleNet ``conv5``; MNASNet
    ``layers``; GoogLeNet ``inception5b``; Inception-v3 ``Mixed_7c``; Swin ``permute`` (the final
    map as ``[B, C, h, w]``); MaxViT the last of ``blocks``.

    Raises:
        ValueError: the architecture has no spatial feature map (ViT): a layer must be given.
    """
    if arch.startswith(("vgg", "alexnet")):
        features = module.get_submodule("features")
        relus = [name for name, layer in features.named_children() if isinstance(layer, nn.ReLU)]
        return f"features.{relus[-1]}"
    if arch.startswith("maxvit"):
        return f"blocks.{len(module.get_submodule('blocks')) - 1}"
    for prefix, layer in _FAMILY_LAYERS:
        if arch.startswith(prefix):
            return layer
    raise ValueError(
        f"{arch} has no spatial feature map to explain by default; pass layer= with a module "
        "whose output is [B, K, h, w]"
    )


class DenseNetPostReLU(nn.Module):
    """A torchvision DenseNet whose final ReLU is a module (``features.relu5``).

    torchvision applies that ReLU functionally and in place after ``features``, so no module
    outputs the post-activation map; this wrapper computes the same logits with the ReLU appended
    to ``features``. The state dict keys are unchanged.
    """

    def __init__(self, densenet: torchvision.models.DenseNet) -> None:
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict([*densenet.features.named_children(), ("relu5", nn.ReLU())])
        )
        self.classifier = densenet.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]``."""
        pooled = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(pooled, 1))


def adapt_architecture(arch: str, module: nn.Module) -> nn.Module:
    """Make the default layer of ``arch`` a module of its own (DenseNet); others unchanged."""
    if isinstance(module, torchvision.models.DenseNet):
        return DenseNetPostReLU(module)
    return module


def cache_file(weights: WeightsEnum) -> Path:
    """Where torchvision's loader looks for the weights file."""
    filename = Path(urllib.parse.urlparse(weights.url).path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def from_weights(name: str, *, layer: str | None = None) -> ModelSpec:
    """Build the model of a torchvision weights name with its preprocessing.

    Args:
        name: e.g. ``"ResNet50_Weights.IMAGENET1K_V2"`` or ``"ResNet50_Weights.DEFAULT"``.
        layer: explained layer; required only for architectures without a default (ViT).

    Returns:
        The eval-mode :class:`ModelSpec` (class space ``imagenet-1k``).

    Raises:
        RuntimeError: the weights are not cached and cannot be downloaded; the message says
            where to put the file.
    """
    arch, weights = weights_index()[name]
    path = cache_file(weights)
    if not path.is_file():
        logger.info("downloading %s to %s", weights.url, path)
    try:
        module = torchvision.models.get_model(arch, weights=weights, progress=False)
    except (OSError, RuntimeError) as error:
        raise RuntimeError(
            f"weights {weights} are not cached and could not be downloaded ({error}). "
            f"Download {weights.url} on a machine with network and copy it to {path} "
            "(set TORCH_HOME to use another cache folder)."
        ) from error
    module = adapt_architecture(arch, module)
    explained = layer if layer is not None else default_layer(arch, module)
    preset = weights.transforms()
    size = preset.crop_size[0] if arch.startswith("vit") else preset.resize_size[0]
    categories = tuple(weights.meta["categories"])
    return ModelSpec(
        module=module.eval(),
        name=str(weights),
        input_size=int(size),
        mean=tuple(preset.mean),
        std=tuple(preset.std),
        class_names=categories,
        default_layer=explained,
        class_space=IMAGENET_SPACE if len(categories) == 1000 else None,
        domain=NATURAL_IMAGES,
        interpolation=preset.interpolation.value,
    )
