"""The model contract (``ModelSpec``) and the registry of model factories."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from torch import nn

from sidu.tokens import Reshape
from sidu_bench.registry import Registry, unknown_name_message

ModelFactory = Callable[..., "ModelSpec"]
_Factory = TypeVar("_Factory", bound=ModelFactory)

__all__ = ["MODELS", "ModelSpec", "find_layer", "register_model"]

MODELS: Registry[ModelFactory] = Registry("model")
"""Every registered model factory, by name (torchvision weights names are not registered)."""


@dataclass(frozen=True)
class ModelSpec:
    """A classifier ready for evaluation, with the preprocessing its inputs need.

    Attributes:
        module: the network in eval mode, mapping ``[B, 3, S, S]`` normalised images to logits.
        name: canonical name (registry name, torchvision weights name or ``arch@checkpoint``).
        input_size: S, the square size inputs are squashed to (never cropped).
        mean: per-channel mean of the normalisation of ``[0, 1]`` RGB values.
        std: per-channel standard deviation of that normalisation.
        class_names: one name per logit, in logit order.
        default_layer: dotted module name of the layer explained unless told otherwise; its
            output is the post-activation feature map ``[B, K, h, w]``, or is read as one
            through ``reshape``.
        class_space: identifier of the label space (``"imagenet-1k"``, ...), so data sets can
            tell whether their labels are this model's classes; ``None`` when unknown.
        interpolation: resize interpolation of the model's preprocessing.
        domain: the kind of images the model was trained on (``"natural-images"``,
            ``"synthetic-shapes"``, ...; see :mod:`sidu_bench.domains`); the runner refuses a data
            set of another domain unless told otherwise. ``None``: undeclared (also refused).
        blocks: the model's blocks in forward order (stem, stages, head), for metrics that
            change the model block by block (the model-randomisation checks): each a dotted
            module name, or several joined by ``+`` for a stage that is not one module
            (``"blocks.1+blocks.2"``); together they hold every module with
            ``reset_parameters``, each once. Empty: none declared.
        reshape: how the layer-based explainers read this model's explained layers when they
            do not output ``[B, K, h, w]`` (a Vision Transformer's token sequence:
            :class:`sidu.TokenGrid`; see :mod:`sidu.tokens`); ``None``: they do.
        sidu_layer: the layer SIDU explains where it differs from ``default_layer`` (Vision
            Transformers: the post-GELU MLP activations of the second-to-last block, chosen by
            measurement, docs/protocol.md item 21); ``None``: SIDU explains ``default_layer``.
    """

    module: nn.Module
    name: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    class_names: tuple[str, ...]
    default_layer: str
    class_space: str | None = None
    interpolation: str = "bilinear"
    domain: str | None = None
    blocks: tuple[str, ...] = ()
    reshape: Reshape | None = None
    sidu_layer: str | None = None

    @property
    def num_classes(self) -> int:
        """Number of logits."""
        return len(self.class_names)

    def layer(self, name: str | None = None) -> nn.Module:
        """Return the module called ``name`` (the default layer for ``None``)."""
        return find_layer(self.module, self.default_layer if name is None else name)


def find_layer(module: nn.Module, name: str) -> nn.Module:
    """Return the sub-module of ``module`` with dotted name ``name``.

    Raises:
        ValueError: no such layer; the message lists the closest layer names.
    """
    layers = dict(module.named_modules())
    if name not in layers or name == "":
        raise ValueError(unknown_name_message("layer", name, [n for n in layers if n]))
    return layers[name]


def register_model(name: str) -> Callable[[_Factory], _Factory]:
    """Register a factory ``(*, checkpoint: Path | None = None, **config) -> ModelSpec``.

    Raises:
        ValueError: the name is taken.
    """

    def decorator(factory: _Factory) -> _Factory:
        return MODELS.register(name, factory)

    return decorator
