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
from sidu.tokens import Reshape, TokenGrid
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
    map as ``[B, C, h, w]``); MaxViT the last of ``blocks``; ViT the first LayerNorm of the last
    encoder layer (``encoder.layers.encoder_layer_11.ln_1`` for ViT-B/16: its patch tokens are
    the last ones that reach the class token through attention; pytorch-grad-cam's choice),
    read as a grid through :func:`default_reshape`.

    Raises:
        ValueError: unknown family: a layer must be given.
    """
    if arch.startswith(("vgg", "alexnet")):
        features = module.get_submodule("features")
        relus = [name for name, layer in features.named_children() if isinstance(layer, nn.ReLU)]
        return f"features.{relus[-1]}"
    if arch.startswith("maxvit"):
        return f"blocks.{len(module.get_submodule('blocks')) - 1}"
    if arch.startswith("vit"):
        last = list(module.get_submodule("encoder.layers").named_children())[-1][0]
        return f"encoder.layers.{last}.ln_1"
    for prefix, layer in _FAMILY_LAYERS:
        if arch.startswith(prefix):
            return layer
    raise ValueError(
        f"{arch} has no spatial feature map to explain by default; pass layer= with a module "
        "whose output is [B, K, h, w]"
    )


def default_reshape(arch: str) -> Reshape | None:
    """How the explainers read a torchvision architecture's layers (:attr:`ModelSpec.reshape`).

    ViT: its encoder layers output ``[B, 1 + h * w, C]`` (a class token, then the patches in
    row-major order), read as ``[B, C, h, w]`` by ``TokenGrid(prefix=1)``; the class token
    never enters a map. The others: ``None`` (their default layers output ``[B, K, h, w]``).
    """
    return TokenGrid(prefix=1) if arch.startswith("vit") else None


def default_sidu_layer(arch: str, module: nn.Module) -> str | None:
    """SIDU's own default layer of a torchvision architecture (:attr:`ModelSpec.sidu_layer`).

    ViT: the post-GELU MLP activations of the second-to-last encoder layer
    (``encoder.layers.encoder_layer_10.mlp.1`` for ViT-B/16), the last patch-token
    activations that still reach the class token (the last layer's MLP output of a patch token
    reaches no logit), thresholded as post-activation maps; chosen by measurement on the
    synthetic ViT (docs/protocol.md, item 21). Others: ``None`` (SIDU explains the default layer).
    """
    if not arch.startswith("vit"):
        return None
    layers = [name for name, _ in module.get_submodule("encoder.layers").named_children()]
    return f"encoder.layers.{layers[-2]}.mlp.1" if len(layers) > 1 else None


def _with_parameters(module: nn.Module, prefix: str) -> list[str]:
    """``prefix.child`` for each child of ``module`` (in order) that holds parameters."""
    return [
        f"{prefix}.{name}"
        for name, child in module.named_children()
        if next(child.parameters(), None) is not None
    ]


def _stages_at_pools(features: nn.Module, prefix: str) -> list[str]:
    """The children of ``features`` with parameters, in stages that end at a max-pooling layer."""
    stages: list[list[str]] = [[]]
    for name, child in features.named_children():
        if next(child.parameters(), None) is not None:
            stages[-1].append(f"{prefix}.{name}")
        if isinstance(child, nn.MaxPool2d):
            stages.append([])
    return ["+".join(stage) for stage in stages if stage]


def default_blocks(arch: str, module: nn.Module) -> tuple[str, ...]:
    """The blocks of a torchvision architecture (:attr:`ModelSpec.blocks`), stem to head.

    ResNet/ResNeXt/Wide-ResNet ``conv1+bn1``, ``layer1``..``layer4``, ``fc`` (6); VGG and
    AlexNet the stages of ``features`` (each up to its max-pooling) and ``classifier`` (6 for
    VGG, 4 for AlexNet); EfficientNet (v1, v2), ConvNeXt and MobileNet each child of
    ``features`` that has parameters and ``classifier``; RegNet ``stem``, the four blocks of
    ``trunk_output``, ``fc``; DenseNet the stem convolution and norm, each dense block with its
    transition (the last with ``norm5``), ``classifier``; ShuffleNet ``conv1``, ``stage2``..
    ``stage4``, ``conv5``, ``fc``; Swin each child of ``features``, ``norm``, ``head``; MaxViT
    ``stem``, each of ``blocks``, ``classifier``; ViT ``conv_proj``, each encoder layer,
    ``encoder.ln``, ``heads``. Others (GoogLeNet, Inception, MNASNet, SqueezeNet): none.
    """
    children = dict(module.named_children())
    if arch.startswith(("resnet", "resnext", "wide_resnet")):
        return ("conv1+bn1", "layer1", "layer2", "layer3", "layer4", "fc")
    if arch.startswith(("vgg", "alexnet")):
        return (*_stages_at_pools(children["features"], "features"), "classifier")
    if arch.startswith(("efficientnet", "convnext", "mobilenet")):
        return (*_with_parameters(children["features"], "features"), "classifier")
    if arch.startswith("regnet"):
        return ("stem", *_with_parameters(children["trunk_output"], "trunk_output"), "fc")
    if arch.startswith("densenet"):
        names = [name for name, _ in children["features"].named_children()]
        dense = [name for name in names if name.startswith("denseblock")]
        stages = [
            f"features.{name}+features.{name.replace('denseblock', 'transition')}"
            for name in dense[:-1]
        ]
        return (
            "features.conv0+features.norm0",
            *stages,
            f"features.{dense[-1]}+features.norm5",
            "classifier",
        )
    if arch.startswith("shufflenet"):
        return ("conv1", "stage2", "stage3", "stage4", "conv5", "fc")
    if arch.startswith("swin"):
        return (*_with_parameters(children["features"], "features"), "norm", "head")
    if arch.startswith("maxvit"):
        return ("stem", *_with_parameters(children["blocks"], "blocks"), "classifier")
    if arch.startswith("vit"):
        layers = _with_parameters(module.get_submodule("encoder.layers"), "encoder.layers")
        return ("conv_proj", *layers, "encoder.ln", "heads")
    return ()


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
        blocks=default_blocks(arch, module),
        reshape=default_reshape(arch),
        sidu_layer=None if layer is not None else default_sidu_layer(arch, module),
    )
