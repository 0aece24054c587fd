"""The explainer registry and its spec syntax ``name[:key=value[,key=value]]``.

``register_explainer(name)`` registers an :class:`~.base.Explainer` subclass;
``parse_spec("rise:masks=1000")`` checks a spec against the registry and types its options;
``get_explainer(spec, model, layer, ...)`` builds a ready explainer whose ``label`` is the
canonical spec (non-default options only, keys sorted: see :mod:`.options`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from sidu.tokens import Reshape
from sidu_bench.explainers.base import (
    Explainer,
    ExplainerSettings,
    LayerExplainer,
    ModelExplainer,
)
from sidu_bench.explainers.options import canonical_label, option_fields, parse_value
from sidu_bench.registry import Registry, did_you_mean

__all__ = [
    "EXPLAINERS",
    "ExplainerSpec",
    "get_explainer",
    "list_explainers",
    "parse_spec",
    "register_explainer",
]

_ExplainerClass = TypeVar("_ExplainerClass", bound=type[Explainer])
EXPLAINERS: Registry[type[Explainer]] = Registry("explainer")
"""Every registered explainer class, by name."""


def register_explainer(name: str) -> Callable[[_ExplainerClass], _ExplainerClass]:
    """Class decorator: register an :class:`Explainer` subclass under ``name``.

    The class's ``options_type`` must be a dataclass whose fields all have defaults and the type
    ``int``, ``float``, ``bool``, ``str`` or ``Literal["a", "b", ...]`` (see :mod:`.options`).
    Names may not contain ``:``, ``,``, ``=`` or spaces; a dot groups names of one family
    (``captum.Saliency``).
    """
    if not name or any(char in name for char in ":,= "):
        raise ValueError(f"explainer name must be non-empty without ':,= ', got {name!r}")

    def decorator(cls: _ExplainerClass) -> _ExplainerClass:
        if not (isinstance(cls, type) and issubclass(cls, Explainer)):
            raise TypeError(f"register_explainer expects an Explainer subclass, got {cls!r}")
        option_fields(cls.options_type)
        EXPLAINERS.register(name, cls)
        cls.name = name
        return cls

    return decorator


def list_explainers() -> list[str]:
    """Return the registered explainer names, sorted."""
    return EXPLAINERS.names()


@dataclass(frozen=True)
class ExplainerSpec:
    """A parsed spec: the registered name and its typed options dataclass."""

    name: str
    options: object

    @property
    def label(self) -> str:
        """The canonical spec text (non-default options, keys sorted)."""
        return canonical_label(self.name, self.options)


def parse_spec(spec: str) -> ExplainerSpec:
    """Parse ``name[:key=value[,key=value]]`` into typed, validated options.

    Example:
        >>> parse_spec("rise:p=0.25,masks=1000").label
        'rise:masks=1000,p=0.25'

    Raises:
        ValueError: unknown explainer (with the closest names), unknown option (with the valid
            ones), malformed or repeated ``key=value``, or a value of the wrong type or range.
    """
    if not isinstance(spec, str):
        raise TypeError(f"explainer spec must be a string, got {type(spec).__name__}")
    name, colon, rest = spec.strip().partition(":")
    cls = EXPLAINERS.get(name.strip())
    fields = option_fields(cls.options_type)
    valid = ", ".join(sorted(fields)) or "none"
    values: dict[str, object] = {}
    for item in rest.split(",") if colon else []:
        key, equals, text = (part.strip() for part in item.partition("="))
        if not equals or not key or not text:
            raise ValueError(
                f"explainer spec {spec!r}: {item!r} is not key=value "
                f"(syntax: name[:key=value[,key=value]]; options of {cls.name!r}: {valid})"
            )
        if key not in fields:
            raise ValueError(
                f"explainer spec {spec!r}: unknown option {key!r} for {cls.name!r}"
                f"{did_you_mean(key, fields)} (valid options: {valid})"
            )
        if key in values:
            raise ValueError(f"explainer spec {spec!r}: option {key!r} is given twice")
        values[key] = parse_value(text, fields[key][0], where=f"{cls.name} option {key!r}")
    try:
        options = cls.options_type(**values)
    except (TypeError, ValueError) as error:
        raise ValueError(f"explainer spec {spec!r}: {error}") from error
    return ExplainerSpec(cls.name, options)


def explained_layer(spec: str, layer: str, sidu_layer: str | None = None) -> str:
    """The layer explainer ``spec`` explains: for SIDU ``sidu_layer`` if given, else ``layer``.

    A model declares ``sidu_layer`` where SIDU has its own layer (transformers:
    :attr:`sidu_bench.models.ModelSpec.sidu_layer`).

    Example:
        >>> explained_layer("sidu:threshold=0.2", "blocks.11.norm1", "blocks.10.mlp.act")
        'blocks.10.mlp.act'
        >>> explained_layer("gradcam", "blocks.11.norm1", "blocks.10.mlp.act")
        'blocks.11.norm1'
    """
    if sidu_layer is not None and parse_spec(spec).name == "sidu":
        return sidu_layer
    return layer


def get_explainer(
    spec: str | ExplainerSpec,
    model: nn.Module | None = None,
    layer: str | nn.Module | None = None,
    *,
    seed: int = 0,
    dtype: torch.dtype | None = None,
    batch_size: int | None = None,
    memory_budget: int | None = None,
    channels_last: bool = False,
    backend: str = "torch",
    precision: str = "ieee",
    reshape: Reshape | None = None,
) -> Explainer:
    """Build the explainer of ``spec`` for ``model`` (and ``layer``, for layer-based methods).

    Args:
        spec: ``name[:key=value,...]`` or a parsed :class:`ExplainerSpec`.
        model: the classifier (unused by ``center`` and ``random``).
        layer: the explained layer's name or module (used by ``sidu``, ``gradcam``,
            ``scorecam``; ignored by the others).
        seed: global seed of per-item randomness.
        dtype: ``None`` or ``torch.bfloat16``/``torch.float16`` for autocast forward passes.
        batch_size: masked images per forward pass (``None``: from ``memory_budget``).
        memory_budget: bytes per chunk of masked images when ``batch_size`` is ``None``.
        channels_last: feed masked images in channels-last memory format.
        backend: engine of the perturbation forwards: ``"torch"``, ``"onnxruntime"`` or
            ``"auto"`` (:func:`sidu.backends.resolve_backend`); the explainer's
            ``backend_used`` tells which ran.
        precision: float32 CUDA arithmetic during a call, ``"ieee"`` or ``"tf32"``.
        reshape: how layer-based methods read a layer that does not output ``[B, K, h, w]``
            (a Vision Transformer's tokens: ``sidu.TokenGrid(prefix=1)``; see
            :class:`~sidu_bench.explainers.base.LayerExplainer`); ignored by the others.

    Returns:
        The explainer; its ``label`` is the canonical spec.

    Example:
        >>> get_explainer("center").label
        'center'
    """
    parsed = spec if isinstance(spec, ExplainerSpec) else parse_spec(spec)
    cls = EXPLAINERS.get(parsed.name)
    settings = ExplainerSettings(
        seed=seed,
        dtype=dtype,
        batch_size=batch_size,
        memory_budget=memory_budget,
        channels_last=channels_last,
        backend=backend,
        precision=precision,
    )
    if issubclass(cls, ModelExplainer) and model is None:
        raise ValueError(f"explainer {parsed.label!r} needs a model")
    if issubclass(cls, LayerExplainer):
        if layer is None:
            raise ValueError(f"explainer {parsed.label!r} needs a layer")
        return cls(model, layer, options=parsed.options, settings=settings, reshape=reshape)
    if issubclass(cls, ModelExplainer):
        return cls(model, options=parsed.options, settings=settings)
    return cls(options=parsed.options, settings=settings)
