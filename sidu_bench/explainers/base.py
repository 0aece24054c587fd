"""The explainer interface: ``explainer(images, targets, item_ids) -> maps [B, S, S]``.

:class:`Explainer` validates the call and checks the result; a method overrides
:meth:`Explainer.explain` only. :class:`ModelExplainer` adds the classifier (explained in eval
mode, every submodule's flag restored afterwards; never moved or modified: a call that leaves
its weights, training flags, hooks or gradients changed is an error, see :mod:`.model_state`),
its forward passes and the masked-forward engine; :class:`LayerExplainer` a layer of it,
captured during one clean forward (:meth:`LayerExplainer._forward_layer`). A class activation
map subclasses :class:`~sidu_bench.explainers.cam.CAMExplainer` and gives its channel weights
only.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from sidu.backends import ForwardBackend, check_backend, resolve_backend
from sidu.capability import warn_if_slow_dtype
from sidu.capture import ActivationCapture
from sidu.engine import MaskSource, forward_context, masked_forward
from sidu.modes import eval_mode
from sidu.precision import autocast, check_dtype, check_precision, fp32_precision
from sidu.tokens import Reshape, check_reshape
from sidu.validation import (
    check_batch_size,
    check_images,
    check_logits,
    check_model_inputs,
    resolve_layer,
    resolve_target,
)
from sidu_bench.explainers.model_state import model_state, state_changes
from sidu_bench.explainers.options import NoOptions, canonical_label, check_option_types

__all__ = [
    "Explainer",
    "ExplainerSettings",
    "LayerExplainer",
    "ModelExplainer",
    "recording_gradients",
]


@contextlib.contextmanager
def recording_gradients() -> Iterator[None]:
    """Record autograd graphs within the block, also under the caller's inference or no-grad mode.

    Inputs made inside the block (``images.detach().clone().requires_grad_(True)``) are ordinary
    tensors even when ``images`` is an inference tensor.
    """
    with torch.inference_mode(False), torch.enable_grad():
        yield


@dataclass(frozen=True)
class ExplainerSettings:
    """How an explainer runs (not what it computes; not part of its label).

    Attributes:
        seed: global seed; per-item randomness derives from ``(seed, item id)``.
        dtype: ``None`` (full precision) or ``torch.bfloat16``/``torch.float16`` to run forward
            passes under autocast.
        batch_size: masked images per forward pass; ``None`` sizes chunks by ``memory_budget``.
        memory_budget: bytes per chunk of masked images when ``batch_size`` is ``None``.
        channels_last: feed masked images in channels-last memory format.
        backend: engine of the perturbation forwards (masked images): ``"torch"``,
            ``"onnxruntime"`` or ``"auto"`` (see :func:`sidu.backends.resolve_backend`); clean
            forwards that capture a layer, and backward passes, always run in torch.
        precision: float32 CUDA arithmetic during a call, ``"ieee"`` or ``"tf32"``
            (:func:`sidu.precision.fp32_precision`); the caller's settings are restored after.
    """

    seed: int = 0
    dtype: torch.dtype | None = None
    batch_size: int | None = None
    memory_budget: int | None = None
    channels_last: bool = False
    backend: str = "torch"
    precision: str = "ieee"

    def __post_init__(self) -> None:
        """Validate the settings."""
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise TypeError(f"seed must be an int, got {self.seed!r}")
        check_dtype(self.dtype)
        check_batch_size(self.batch_size)
        check_backend(self.backend)
        check_precision(self.precision)


class Explainer(abc.ABC):
    """A saliency method: ``maps = explainer(images, targets, item_ids)``.

    Subclasses set ``options_type`` (a frozen dataclass of typed options with defaults) and
    implement :meth:`explain`; :func:`~sidu_bench.explainers.register_explainer` sets ``name``.

    Args:
        options: an instance of ``options_type``.
        settings: how to run (seed, dtype, chunking, backend, precision).

    Attributes:
        backend_used: the engine of the latest call's perturbation forwards (``None``: it ran
            none).
    """

    name: ClassVar[str] = ""
    options_type: ClassVar[type] = NoOptions

    def __init__(self, *, options: object, settings: ExplainerSettings) -> None:
        if not isinstance(options, self.options_type):
            raise TypeError(
                f"options must be a {self.options_type.__name__}, got {type(options).__name__}"
            )
        check_option_types(options)
        self.options = options
        self.settings = settings
        self.backend_used: ForwardBackend | None = None

    @property
    def label(self) -> str:
        """The canonical spec, e.g. ``rise:masks=1000`` (see :mod:`.options`)."""
        return canonical_label(self.name, self.options)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label!r})"

    def __call__(
        self, images: torch.Tensor, targets: torch.Tensor, item_ids: Sequence[str]
    ) -> torch.Tensor:
        """Explain ``images`` for ``targets``.

        Args:
            images: ``[B, C, S, S]`` model inputs (``S`` may differ per axis).
            targets: ``[B]`` integer classes to explain.
            item_ids: ``B`` stable item identifiers (seed per-item randomness).

        Returns:
            ``[B, S, S]`` float32 maps on the images' device.

        Raises:
            ValueError: bad images, targets or item ids.
            TypeError: the method returned something other than a dense real tensor (``None``,
                a list, a NumPy array, a complex or boolean tensor); the message names the
                explainer.
            RuntimeError: the maps have the wrong shape, or the call left the model changed
                (weights, training flags, hooks or gradients: :func:`.model_state.state_changes`
                says which); the message names the explainer and what changed.
        """
        self._check_images(images)
        batch, size = images.shape[0], tuple(images.shape[-2:])
        if not isinstance(targets, torch.Tensor) or targets.shape != (batch,):
            shape = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets)
            raise ValueError(f"targets must be a [{batch}] integer tensor, got {shape}")
        if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
            raise TypeError(f"targets must be an integer tensor, got dtype {targets.dtype}")
        if isinstance(item_ids, str) or len(item_ids) != batch:
            raise ValueError(f"item_ids must be a sequence of {batch} strings, got {item_ids!r}")
        ids = tuple(item_ids)
        if not all(isinstance(item_id, str) for item_id in ids):
            raise TypeError(f"item_ids must be strings, got {ids!r}")
        self.backend_used = None
        model = self._watched_model()
        before = None if model is None else model_state(model)
        try:
            with fp32_precision(self.settings.precision):
                maps = self.explain(images, targets.to(device=images.device, dtype=torch.long), ids)
        except Exception as error:
            add_note = getattr(error, "add_note", None)  # Python 3.11+
            if model is not None and before is not None and add_note is not None:
                with contextlib.suppress(Exception):  # the explainer's error comes first
                    changes = state_changes(before, model_state(model))
                    if changes:
                        add_note(f"explainer {self.label!r} also {_changed(changes)}")
            raise
        if model is not None and before is not None:
            changes = state_changes(before, model_state(model))
            if changes:  # checked first: a changed model matters more than the maps
                raise RuntimeError(
                    f"explainer {self.label!r} {_changed(changes)}; an explainer must leave "
                    "the model as it found it, or every later explainer explains the changed "
                    "model (restore what it changes, remove its hooks, and take gradients "
                    "with torch.autograd.grad rather than .backward())"
                )
        return self._check_maps(maps, (batch, *size)).to(device=images.device, dtype=torch.float32)

    def _watched_model(self) -> nn.Module | None:
        """The model whose state a call must leave unchanged (``None``: the explainer has none)."""
        return None

    def _check_maps(self, maps: object, shape: tuple[int, ...]) -> torch.Tensor:
        """Return ``maps`` unless it is not a dense real tensor of ``shape`` (error naming it)."""
        if not isinstance(maps, torch.Tensor):
            raise TypeError(
                f"explainer {self.label!r} returned {_type_name(maps)}, expected a torch.Tensor "
                f"of shape {shape}"
            )
        if maps.layout != torch.strided:
            raise TypeError(
                f"explainer {self.label!r} returned a {maps.layout} tensor, expected a dense "
                "(torch.strided) tensor"
            )
        if maps.is_complex() or maps.dtype == torch.bool:
            raise TypeError(
                f"explainer {self.label!r} returned a tensor of dtype {maps.dtype}, expected real "
                "numbers (a floating-point tensor)"
            )
        if tuple(maps.shape) != shape:
            raise RuntimeError(
                f"explainer {self.label!r} returned shape {tuple(maps.shape)}, expected {shape}"
            )
        return maps

    def _check_images(self, images: torch.Tensor) -> None:
        """Raise unless ``images`` is a valid batch (overridden to add model checks)."""
        check_images(images, name="images")

    @abc.abstractmethod
    def explain(
        self, images: torch.Tensor, targets: torch.Tensor, item_ids: tuple[str, ...]
    ) -> torch.Tensor:
        """Return ``[B, S, S]`` maps; inputs are validated, ``targets`` long on their device."""


class ModelExplainer(Explainer):
    """An explainer that runs a classifier returning logits ``[B, num_classes]``.

    Args:
        model: the classifier; explained in eval mode, never moved or modified.
        options: an instance of ``options_type``.
        settings: how to run.
    """

    def __init__(self, model: nn.Module, *, options: object, settings: ExplainerSettings) -> None:
        super().__init__(options=options, settings=settings)
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model

    def __call__(
        self, images: torch.Tensor, targets: torch.Tensor, item_ids: Sequence[str]
    ) -> torch.Tensor:
        """Explain in eval mode; every submodule's training flag is restored afterwards."""
        if isinstance(images, torch.Tensor):
            warn_if_slow_dtype(self.settings.dtype, images.device)
        with eval_mode(self.model):
            return super().__call__(images, targets, item_ids)

    def _check_images(self, images: torch.Tensor) -> None:
        check_model_inputs(self.model, images, dtype=self.settings.dtype)

    def _watched_model(self) -> nn.Module:
        return self.model

    def _check_targets(self, targets: torch.Tensor, logits: torch.Tensor) -> None:
        """Raise unless ``logits`` is ``[B, num_classes]`` and every target one of its classes."""
        check_logits(logits, batch=targets.shape[0])
        resolve_target(targets, logits)

    def _logits(self, images: torch.Tensor) -> torch.Tensor:
        """Forward the clean images (inference mode, autocast for a reduced dtype)."""
        with forward_context(images.device, self.settings.dtype):
            return self.model(images)

    def _masked_forward(
        self,
        images: torch.Tensor,
        masks: MaskSource,
        transform: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> list[torch.Tensor]:
        """Run :func:`sidu.masked_forward` with this explainer's settings.

        The backend is resolved here (the model is in eval mode) and kept as
        :attr:`backend_used`. The images were checked by the call (not scanned again).
        """
        self.backend_used = resolve_backend(
            self.model,
            images,
            self.settings.backend,
            dtype=self.settings.dtype,
            channels_last=self.settings.channels_last,
        )
        return masked_forward(
            self.model,
            images,
            masks,
            transform=transform,
            batch_size=self.settings.batch_size,
            memory_budget=self.settings.memory_budget,
            dtype=self.settings.dtype,
            channels_last=self.settings.channels_last,
            backend=self.backend_used,
            precision=self.settings.precision,
            validate_args=False,
        )


class LayerExplainer(ModelExplainer):
    """An explainer of one layer of a classifier.

    Args:
        model: the classifier.
        layer: the explained layer, by name in ``model.named_modules()`` or as the module; it
            must output ``[B, K, h, w]`` (or be read so through ``reshape``) and run once per
            forward pass.
        options: an instance of ``options_type``.
        settings: how to run.
        reshape: how to read a layer that does not output ``[B, K, h, w]``: a token sequence
            (:class:`sidu.TokenGrid`), a channels-last grid (:class:`sidu.ChannelsLast`) or any
            callable that only selects and rearranges elements (:mod:`sidu.tokens`); the
            activations every method sees, and gradients with respect to them, are the grid's.
    """

    def __init__(
        self,
        model: nn.Module,
        layer: str | nn.Module,
        *,
        options: object,
        settings: ExplainerSettings,
        reshape: Reshape | None = None,
    ) -> None:
        super().__init__(model, options=options, settings=settings)
        self.layer_name, self.layer = resolve_layer(model, layer)
        self.reshape = check_reshape(reshape)

    def _forward_layer(
        self, images: torch.Tensor, *, gradient: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward the clean images once; return ``(logits, the layer's output [B, K, h, w])``.

        A forward hook captures the layer and is removed on return. Without ``gradient`` the
        pass runs as :meth:`_logits` (inference mode). With it, the images enter as a new leaf
        that requires grad and the pass records the autograd graph (autocast for a reduced
        dtype still applies), so that the output can be differentiated: call it within
        :func:`recording_gradients`. The layer must run once per forward pass.
        """
        capture = ActivationCapture(self.layer, self.layer_name, self.reshape)
        capture.attach()
        try:
            capture.arm()
            if gradient:
                inputs = images.detach().clone().requires_grad_(True)
                with autocast(images.device, self.settings.dtype):
                    logits = self.model(inputs)
            else:
                logits = self._logits(images)
            return logits, capture.take()
        finally:
            capture.detach()


def _changed(changes: list[str]) -> str:
    """``changed the model during its call: <what>`` for an error message."""
    return f"changed the model during its call: {'; '.join(changes)}"


def _type_name(value: object) -> str:
    """Name a returned value's type for a message: ``None``, ``list``, ``numpy.ndarray``."""
    if value is None:
        return "None"
    kind = type(value)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"
