"""The explainer interface: ``explainer(images, targets, item_ids) -> maps [B, S, S]``.

:class:`Explainer` validates the call and checks the result; a method overrides
:meth:`Explainer.explain` only. :class:`ModelExplainer` adds the classifier (explained in eval
mode, every submodule's flag restored afterwards; never moved or modified) and
:class:`LayerExplainer` a layer of it.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from sidu._validation import (
    check_images,
    check_model_device,
    check_model_dtype,
    expected_channels,
    resolve_layer,
    resolve_target,
)
from sidu.backends import ForwardBackend, check_backend, resolve_backend
from sidu.capability import warn_if_slow_dtype
from sidu.capture import ActivationCapture
from sidu.engine import MaskSource, forward_context, masked_forward
from sidu.modes import eval_mode
from sidu.precision import PRECISIONS, fp32_precision
from sidu_bench.explainers.options import NoOptions, canonical_label, check_option_types

__all__ = ["Explainer", "ExplainerSettings", "LayerExplainer", "ModelExplainer"]

_DTYPES = (None, torch.float32, torch.float64, torch.bfloat16, torch.float16)


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
        if self.dtype not in _DTYPES:
            raise ValueError(
                "dtype must be None, torch.float32, torch.float64, torch.bfloat16 or "
                f"torch.float16, got {self.dtype!r}"
            )
        if self.batch_size is not None and (
            not isinstance(self.batch_size, int) or self.batch_size < 1
        ):
            raise ValueError(f"batch_size must be a positive int or None, got {self.batch_size!r}")
        check_backend(self.backend)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")


class Explainer(abc.ABC):
    """A saliency method: ``maps = explainer(images, targets, item_ids)``.

    Subclasses set ``options_type`` (a frozen dataclass of typed options with defaults) and
    implement :meth:`explain`; :func:`~sidu_bench.explainers.register_explainer` sets ``name``.

    Args:
        options: an instance of ``options_type``.
        settings: how to run (seed, dtype, chunking, backend, precision).
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
        self._backend_used: ForwardBackend | None = None

    @property
    def backend_used(self) -> ForwardBackend | None:
        """The engine of the latest call's perturbation forwards (``None``: it ran none)."""
        return self._backend_used

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
        self._backend_used = None
        with fp32_precision(self.settings.precision):
            maps = self.explain(images, targets.to(device=images.device, dtype=torch.long), ids)
        if tuple(maps.shape) != (batch, *size):
            raise RuntimeError(
                f"explainer {self.label!r} returned shape {tuple(maps.shape)}, expected "
                f"{(batch, *size)}"
            )
        return maps.to(device=images.device, dtype=torch.float32)

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
        check_images(images, name="images", channels=expected_channels(self.model))
        check_model_device(self.model, images)
        check_model_dtype(self.model, images, self.settings.dtype)

    def _check_targets(self, targets: torch.Tensor, logits: torch.Tensor) -> None:
        """Raise unless every target is a class of ``logits`` ``[B, num_classes]``."""
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits)
            raise ValueError(f"model must return logits [B, num_classes], got {shape}")
        resolve_target(targets, logits.argmax(dim=1), logits.shape[1])

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
        :attr:`backend_used`.
        """
        self._backend_used = resolve_backend(
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
            backend=self._backend_used,
            precision=self.settings.precision,
        )


class LayerExplainer(ModelExplainer):
    """An explainer of one layer of a classifier.

    Args:
        model: the classifier.
        layer: the explained layer, by name in ``model.named_modules()`` or as the module; it
            must output ``[B, K, h, w]`` and run once per forward pass.
        options: an instance of ``options_type``.
        settings: how to run.
    """

    def __init__(
        self,
        model: nn.Module,
        layer: str | nn.Module,
        *,
        options: object,
        settings: ExplainerSettings,
    ) -> None:
        super().__init__(model, options=options, settings=settings)
        self.layer_name, self.layer = resolve_layer(model, layer)

    @contextlib.contextmanager
    def _capture(self) -> Iterator[ActivationCapture]:
        """A forward hook on the layer, removed on exit."""
        capture = ActivationCapture(self.layer, self.layer_name)
        capture.attach()
        try:
            yield capture
        finally:
            capture.detach()
