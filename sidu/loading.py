"""Load torchvision classifiers and backbones by weights name (the seed package's helpers)."""

from __future__ import annotations

import difflib
import functools
import os

import torch
import torchvision
from torch import nn
from torchvision.models import WeightsEnum

__all__ = ["load_torch_backbone", "load_torch_model_by_string", "weights_index"]


@functools.cache
def weights_index() -> dict[str, tuple[str, WeightsEnum]]:
    """Map every torchvision classification weights name to ``(builder name, weights)``.

    Aliases (``ResNet50_Weights.DEFAULT``) are names too; so are feature-extractor weights
    without a classifier (``VGG16_Weights.IMAGENET1K_FEATURES``), which serve as backbones.

    Example:
        >>> weights_index()["ResNet50_Weights.DEFAULT"][0]
        'resnet50'
    """
    return {
        f"{enum.__name__}.{member}": (builder, weights)
        for builder in torchvision.models.list_models(module=torchvision.models)
        for enum in [torchvision.models.get_model_weights(builder)]
        for member, weights in enum.__members__.items()
    }


def load_torch_model_by_string(name: str) -> nn.Module:
    """Build a torchvision classifier with the pretrained weights called ``name``.

    Weights come from torchvision's cache (``$TORCH_HOME/hub/checkpoints``) or are downloaded.

    Args:
        name: a weights name such as ``"ResNet50_Weights.IMAGENET1K_V2"`` (or an alias such as
            ``"ResNet50_Weights.DEFAULT"``).

    Returns:
        The model on the CPU, in eval mode.

    Raises:
        ValueError: unknown name (close names are suggested).
        RuntimeError: the weights are neither cached nor downloadable.

    """
    index = weights_index()
    if name not in index:
        close = difflib.get_close_matches(str(name), list(index), n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"unknown weights name {name!r}: expected a torchvision classification weights name "
            f"such as 'ResNet18_Weights.IMAGENET1K_V1'{hint}"
        )
    builder, weights = index[name]
    model = torchvision.models.get_model(builder)
    path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
    try:
        state = weights.get_state_dict(progress=False, check_hash=True)
    except OSError as error:
        raise RuntimeError(
            f"could not load the weights {name!r}: not in torchvision's cache and the download "
            f"failed ({error}); place the file from {weights.url} at {path} (or set TORCH_HOME)"
        ) from error
    model.load_state_dict(state)
    return model.eval()


def load_torch_backbone(name: str, layer: int = -2) -> nn.Sequential:
    """Build the headless backbone of a torchvision classifier (the seed package's helper).

    The backbone is ``Sequential(*children[:layer])`` of the pretrained model: for ResNets the
    default ``-2`` drops the pooling and the fully connected layer, so it returns feature maps,
    as :func:`sidu.sidu_features` (``sidu.sidu(backbone, images)``) expects.

    Args:
        name: a weights name such as ``"ResNet18_Weights.IMAGENET1K_V1"``.
        layer: how many top-level children to keep (a slice end).

    Returns:
        The backbone on the CPU, in eval mode.

    """
    model = load_torch_model_by_string(name)
    return nn.Sequential(*list(model.children())[:layer]).eval()
