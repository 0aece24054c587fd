"""Classifiers behind a registry, each with its preprocessing and default explained layer.

``get_model(name, ...)`` returns a :class:`ModelSpec`. Accepted names: the registered models
(``efficientnet_lite0``, ``efficientnet_lite1``, ``efficientnet_lite2``, ``synthetic_cnn``), any
torchvision classification weights name (``ResNet50_Weights.IMAGENET1K_V2``), any timm model as
``timm:<name>`` (:mod:`sidu_bench.models.timm_models`) and, with ``checkpoint=``, an architecture
name (a registered model or a torchvision builder).
:func:`torchvision_from_seed` builds a torchvision architecture with seeded random weights.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sidu_bench.models import (
    efficientnet_lite,
    synthetic_cnn,
    synthetic_vit,
    timm_models,
    torchvision_models,
)
from sidu_bench.models._api import MODELS, ModelSpec, find_layer, register_model
from sidu_bench.models.checkpoint import torchvision_from_checkpoint, torchvision_from_seed
from sidu_bench.registry import unknown_name_message

__all__ = [
    "ModelSpec",
    "efficientnet_lite",
    "find_layer",
    "get_model",
    "list_models",
    "register_model",
    "synthetic_cnn",
    "synthetic_vit",
    "timm_models",
    "torchvision_from_seed",
    "torchvision_models",
]


def list_models(*, include_torchvision: bool = True) -> list[str]:
    """Names ``get_model`` accepts: registered models, then torchvision weights names.

    ``timm:<name>`` names are accepted too but not listed (any timm model name).
    """
    extra = torchvision_models.list_weights() if include_torchvision else []
    return MODELS.names() + extra


def _build(name: str, path: Path | None, layer: str | None) -> ModelSpec:
    if timm_models.is_timm_name(name):
        return timm_models.from_name(name, checkpoint=path, layer=layer)
    factory = MODELS.find(name)
    architectures = torchvision_models.list_architectures()
    if factory is not None:
        return factory() if path is None else factory(checkpoint=path)
    if path is not None:
        if name in architectures:
            return torchvision_from_checkpoint(name, path, layer=layer)
        known = [*MODELS.names(), *architectures]
        raise ValueError(unknown_name_message("architecture", name, known))
    if torchvision_models.is_weights_name(name):
        return torchvision_models.from_weights(name, layer=layer)
    if name in architectures:
        raise ValueError(
            f"model {name!r} is an architecture without weights: use a weights name such as "
            f"{torchvision_models.weights_for_architecture(name)} or pass a checkpoint"
        )
    raise ValueError(unknown_name_message("model", name, list_models()))


def get_model(
    name: str,
    *,
    layer: str | None = None,
    checkpoint: str | Path | None = None,
    input_size: int | None = None,
) -> ModelSpec:
    """Build a model by name, in eval mode, on the CPU.

    Args:
        name: a registered name, a torchvision weights name, ``timm:<timm model name>`` or,
            with ``checkpoint``, an architecture name (``synthetic_cnn``, ``efficientnet_lite0``,
            ``resnet50``, ...).
        layer: explained layer replacing the model's default (checked to exist), for every
            explainer (SIDU's own default layer of a transformer included).
        checkpoint: a local checkpoint file (see :mod:`sidu_bench.models.checkpoint`).
        input_size: square input size replacing the model's own.

    Returns:
        The :class:`ModelSpec`.

    Raises:
        ValueError: unknown name or layer (the message lists the closest names), bad input size.
        RuntimeError: torchvision weights neither cached nor downloadable, or timm weights not
            cached (says where to put them).
        ImportError: a ``timm:`` name without timm installed.

    Example:
        >>> spec = get_model("synthetic_cnn")
        >>> spec.input_size, spec.default_layer, spec.class_names[:2]
        (64, 'features', ('disc', 'square'))
    """
    if input_size is not None and input_size < 1:
        raise ValueError(f"input_size must be positive, got {input_size}")
    spec = _build(name, None if checkpoint is None else Path(checkpoint), layer)
    if input_size is not None:
        spec = dataclasses.replace(spec, input_size=input_size)
    if layer is not None:
        find_layer(spec.module, layer)
        spec = dataclasses.replace(spec, default_layer=layer, sidu_layer=None)
    return spec
