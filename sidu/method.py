"""SIDU on a classifier: the public :class:`SIDU` explainer and the :func:`sidu` function.

Muddamsetty et al., "Visual explanation of black-box model: Similarity Difference and Uniqueness
(SIDU) method", Pattern Recognition 127 (2022) 108604, and the authors' code.
"""

from __future__ import annotations

import torch
from torch import nn

from sidu.backends import ForwardBackend, check_backend
from sidu.capture import ActivationCapture
from sidu.core import SIDUOptions, SIDUResult, run_sidu
from sidu.engine import forward_context
from sidu.features import sidu_features
from sidu.modes import eval_mode
from sidu.precision import fp32_precision
from sidu.scores import class_probabilities
from sidu.tokens import Reshape
from sidu.validation import check_logits, check_model_inputs, resolve_layer, resolve_target

__all__ = ["SIDU", "sidu"]


class SIDU:
    """A reusable SIDU explainer for one classifier and one layer.

    ``S_c = sum_k SD_k,c U_k M_k / K / 0.5`` where ``M_k`` are the binarised (``> threshold``)
    feature maps of ``layer`` resized to the image with a mirrored border, ``SD_k,c =
    exp(-(P_0,c - P_k,c)^2 / (2 kernel_width^2))`` compares the class-``c`` probability of the
    image with that of the image masked by ``M_k``, and ``U_k`` is the min-max-normalised sum of
    the L2 distances between the probability vector of mask ``k`` and those of all masks.

    The forward hook on ``layer`` lives while the explainer is used as a context manager (or for
    the duration of one call otherwise). The model is explained in eval mode and every
    submodule's mode is restored afterwards; it is never moved or modified.

    Args:
        model: a classifier returning logits ``[B, num_classes]``.
        layer: the explained layer, by name in ``model.named_modules()`` (e.g. ``"layer4"``) or
            as the module itself; it must output ``[B, K, h, w]``.
        threshold: binarisation threshold of the activations (authors' latest code: 0.1).
        kernel_width: ``sigma`` of the similarity-difference kernel (paper: 0.25).
        batch_size: masked images per forward pass; ``None`` sizes chunks by ``memory_budget``.
        dtype: ``None`` (the images' dtype), or ``torch.bfloat16``/``torch.float16`` to run the
            forward passes under autocast. The arithmetic after them is float64 either way.
        deduplicate: forward each distinct binary mask once (exact; on by default).
        channels_last: feed masked images in channels-last memory format (opt-in speed-up on
            CUDA and CPU; the model itself is not converted; reduction order changes slightly).
        memory_budget: bytes per chunk of masked images when ``batch_size`` is ``None``.
        backend: engine of the masked forwards: ``"torch"`` (default), ``"onnxruntime"`` or
            ``"auto"`` (ONNX Runtime when it runs the call exactly, else torch; see
            :func:`sidu.backends.resolve_backend`). The clean forward that captures the layer
            always runs in torch. :attr:`backend_used` tells which engine ran, and why.
        precision: float32 CUDA arithmetic during a call, ``"ieee"`` (default) or ``"tf32"``
            (:func:`sidu.precision.fp32_precision`); the caller's settings are restored after.
        reshape: how to read a layer that does not output ``[B, K, h, w]``:
            :class:`sidu.TokenGrid` for a token sequence ``[B, N, C]`` (a Vision Transformer's
            block; its class and register tokens never enter a mask), :class:`sidu.ChannelsLast`
            for ``[B, h, w, C]``, or any callable that only selects and rearranges elements
            (a pytorch-grad-cam ``reshape_transform``). See :mod:`sidu.tokens`.

    Attributes:
        backend_used: the :class:`~sidu.backends.ForwardBackend` of the latest call (``None``
            before the first).

    Example:
        >>> net = torch.nn.Sequential(
        ...     torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
        ...     torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
        >>> with SIDU(net, "1") as explainer:
        ...     maps = explainer(torch.rand(2, 3, 8, 8))
        >>> tuple(maps.shape)
        (2, 8, 8)

    """

    def __init__(
        self,
        model: nn.Module,
        layer: str | nn.Module,
        *,
        threshold: float = 0.1,
        kernel_width: float = 0.25,
        batch_size: int | None = None,
        dtype: torch.dtype | None = None,
        deduplicate: bool = True,
        channels_last: bool = False,
        memory_budget: int | None = None,
        backend: str = "torch",
        precision: str = "ieee",
        reshape: Reshape | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.layer_name, module = resolve_layer(model, layer)
        self.options = SIDUOptions(
            threshold=threshold,
            kernel_width=kernel_width,
            batch_size=batch_size,
            dtype=dtype,
            deduplicate=deduplicate,
            channels_last=channels_last,
            memory_budget=memory_budget,
            backend=backend,
            precision=precision,
        )
        self._capture = ActivationCapture(module, self.layer_name, reshape)
        self.backend_used: ForwardBackend | None = None

    def __enter__(self) -> SIDU:
        self._capture.attach()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._capture.detach()

    def __call__(
        self, images: torch.Tensor, target: int | torch.Tensor | None = None
    ) -> torch.Tensor:
        """Return the saliency maps ``[B, H, W]`` of ``images`` for ``target``."""
        return self.explain(images, target).saliency

    def explain(self, images: torch.Tensor, target: int | torch.Tensor | None = None) -> SIDUResult:
        """Explain ``images`` and return the maps with every intermediate quantity.

        Args:
            images: ``[B, C, H, W]`` model inputs (float32, or float64 with a float64 model).
            target: ``None`` (the arg-max class of each image), one class for all, or a ``[B]``
                integer tensor.

        Returns:
            A :class:`~sidu.SIDUResult`.

        """
        check_model_inputs(self.model, images, dtype=self.options.dtype)
        attached_here = not self._capture.attached
        self._capture.attach()
        try:
            with fp32_precision(self.options.precision), eval_mode(self.model):
                result = run_sidu(
                    self.model,
                    images,
                    clean_forward=lambda: self._clean_forward(images),
                    output_vectors=class_probabilities,
                    targets=lambda probabilities: resolve_target(target, probabilities),
                    options=self.options,
                )
        finally:
            if attached_here:
                self._capture.detach()
        self.backend_used = result.backend
        return result

    def _clean_forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward the clean images; return the layer's feature maps and class probabilities."""
        self._capture.arm()
        with forward_context(images.device, self.options.dtype):
            logits = self.model(images)
        features = self._capture.take()
        check_logits(
            logits,
            batch=images.shape[0],
            hint="; for a backbone without a classifier head use sidu.sidu(backbone, images) "
            "(feature-space form)",
        )
        return features, class_probabilities(logits)


def sidu(
    model: nn.Module,
    layer: str | nn.Module | torch.Tensor,
    images: torch.Tensor | None = None,
    *,
    target: int | torch.Tensor | None = None,
    threshold: float = 0.1,
    kernel_width: float = 0.25,
    batch_size: int | None = None,
    dtype: torch.dtype | None = None,
    backend: str = "torch",
    precision: str = "ieee",
    reshape: Reshape | None = None,
) -> torch.Tensor:
    """Return SIDU saliency maps ``[B, H, W]`` (see :class:`SIDU` for the method).

    ``sidu(model, "layer4", images)`` explains a classifier at a layer. The seed package's form
    ``sidu(backbone, images)``, with a tensor as second argument, explains a backbone without a
    classifier head in feature space: see :func:`sidu.sidu_features`.

    Args:
        model: a classifier returning logits (or a backbone, in the two-argument form).
        layer: the explained layer (name or module), or the images in the two-argument form.
        images: ``[B, C, H, W]`` inputs.
        target: ``None`` (arg-max class), an int, or a ``[B]`` integer tensor.
        threshold: activation binarisation threshold.
        kernel_width: ``sigma`` of the similarity-difference kernel.
        batch_size: masked images per forward pass (``None``: from a memory budget).
        dtype: ``None``, or ``torch.bfloat16``/``torch.float16`` for autocast forward passes.
        backend: engine of the masked forwards, ``"torch"``, ``"onnxruntime"`` or ``"auto"``
            (see :class:`SIDU`). The feature-space form runs on torch: it accepts ``"torch"``
            and ``"auto"`` and rejects ``"onnxruntime"``.
        precision: float32 CUDA arithmetic during the call, ``"ieee"`` or ``"tf32"``.
        reshape: how to read a layer that does not output ``[B, K, h, w]`` (a Vision
            Transformer's token sequence: ``sidu.TokenGrid(prefix=1)``; see :class:`SIDU`).

    Returns:
        Maps on the images' device; float32, or float64 for float64 images.

    """
    check_backend(backend)
    method = {
        "threshold": threshold,
        "kernel_width": kernel_width,
        "batch_size": batch_size,
        "dtype": dtype,
    }
    if isinstance(layer, torch.Tensor):
        if images is not None:
            raise TypeError(
                "sidu(model, layer, images): layer must be a module name or module, got a tensor"
            )
        if target is not None:
            raise ValueError("target is not used by the feature-space form sidu(backbone, images)")
        if reshape is not None:
            raise ValueError(
                "reshape is not used by the feature-space form sidu(backbone, images): its "
                "backbone must output [B, K, h, w]"
            )
        if backend == "onnxruntime":
            raise ValueError(
                "backend='onnxruntime' is not available for the feature-space form "
                "sidu(backbone, images), which runs on torch; use backend='torch' or 'auto'"
            )
        with fp32_precision(precision):
            return sidu_features(model, layer, **method).saliency
    if images is None:
        raise TypeError("sidu() missing the images: call sidu(model, layer, images)")
    explainer = SIDU(model, layer, **method, backend=backend, precision=precision, reshape=reshape)
    return explainer(images, target)
