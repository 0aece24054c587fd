"""Checks of the arguments of SIDU, the masked-forward engine, the explainers and the metrics.

Every error names the argument and what was expected. One rule for images: a public entry point
that feeds images to a model (:func:`sidu.sidu`, :class:`sidu.SIDU`, :func:`sidu.masked_forward`,
an explainer's call, ``sidu_bench.metrics.insertion_deletion``) checks them once with
:func:`check_images`, which rejects NaN and infinite values (they would turn every output into
NaN without an error); the steps it calls then run unchecked (:func:`sidu.core.run_sidu`,
``masked_forward(..., validate_args=False)``). A function that only transforms images, such as
a blur, checks their shape with ``finite=False``: it skips the scan and lets non-finite values
through.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from itertools import chain

import torch
from torch import nn

from sidu.precision import REDUCED_DTYPES

__all__ = [
    "check_batch_size",
    "check_images",
    "check_logits",
    "check_model_device",
    "check_model_dtype",
    "check_model_inputs",
    "expected_channels",
    "resolve_layer",
    "resolve_target",
]


def check_images(
    images: object, *, name: str = "images", channels: int | None = None, finite: bool = True
) -> torch.Tensor:
    """Return ``images`` if it is a non-empty floating ``[B, C, H, W]`` tensor, else raise.

    Args:
        images: the value to check.
        name: the argument's name in the error messages.
        channels: the channel count ``C`` the model expects, if known.
        finite: also reject NaN and infinite values (one pass over the images).

    Raises:
        TypeError: not a floating tensor.
        ValueError: wrong shape, empty, other channels than ``channels``, or non-finite values.

    Example:
        >>> check_images(torch.zeros(1, 3, 2, 2)).shape
        torch.Size([1, 3, 2, 2])

    """
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [B, C, H, W], got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"{name} must be 4-D [B, C, H, W], got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got dtype {images.dtype}")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(images.shape)})")
    if images.shape[2] == 0 or images.shape[3] == 0:
        raise ValueError(f"{name} has an empty spatial size (shape {tuple(images.shape)})")
    if channels is not None and images.shape[1] != channels:
        raise ValueError(
            f"{name} has {images.shape[1]} channels but the model's first layer expects "
            f"{channels} (shape {tuple(images.shape)})"
        )
    if finite and not bool(torch.isfinite(images).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return images


def check_batch_size(batch_size: object) -> int | None:
    """Return ``batch_size`` if it is ``None`` (choose one) or an int >= 1, else raise."""
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
    return batch_size


def expected_channels(model: nn.Module) -> int | None:
    """Return the input channels of the model's first convolution, or ``None`` if it has none."""
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            return module.in_channels
    return None


def check_model_device(model: nn.Module, images: torch.Tensor) -> None:
    """Raise a ``ValueError`` unless the model's tensors are on the images' device."""
    first = next(chain(model.parameters(), model.buffers()), None)
    if first is not None and first.device != images.device:
        raise ValueError(
            f"model and images must be on the same device: the model is on {first.device} but "
            f"images are on {images.device}; move the images (or the model) to one device"
        )


def check_model_dtype(model: nn.Module, images: torch.Tensor, dtype: torch.dtype | None) -> None:
    """Raise a ``TypeError`` when full-precision images do not match the model's parameter dtype.

    Under autocast (``dtype`` bfloat16 or float16) any floating images are accepted.
    """
    parameter = next(model.parameters(), None)
    if parameter is None or dtype in REDUCED_DTYPES:
        return
    if parameter.dtype != images.dtype:
        raise TypeError(
            f"images are {images.dtype} but the model's parameters are {parameter.dtype}; "
            f"pass images.to({parameter.dtype}) or a model of the images' dtype"
        )


def check_model_inputs(
    model: nn.Module, images: object, *, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Return ``images`` if they are finite model inputs that fit ``model``, else raise.

    :func:`check_images` with the channels of the model's first convolution, then
    :func:`check_model_device` and :func:`check_model_dtype` (``dtype``: the forward dtype).
    """
    images = check_images(images, channels=expected_channels(model))
    check_model_device(model, images)
    check_model_dtype(model, images, dtype)
    return images


def check_logits(logits: object, *, batch: int, hint: str = "") -> torch.Tensor:
    """Return ``logits`` if it is a ``[batch, num_classes]`` tensor, else raise a ``ValueError``.

    Args:
        logits: what the model returned.
        batch: the number of images forwarded.
        hint: appended to the message (e.g. what to do instead).

    """
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != batch:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(
            f"model must return logits [N, num_classes] for N = {batch}, got {shape}{hint}"
        )
    return logits


def resolve_layer(model: nn.Module, layer: str | nn.Module) -> tuple[str, nn.Module]:
    """Return ``(name, module)`` for a layer given by its name in ``model`` or as a module."""
    modules = dict(model.named_modules())
    if isinstance(layer, nn.Module):
        for name, module in modules.items():
            if module is layer:
                return name, module
        raise ValueError("layer is a module that is not part of model")
    if not isinstance(layer, str):
        raise TypeError(
            f"layer must be a module name (str) or an nn.Module, got {type(layer).__name__}"
        )
    if layer in modules and layer != "":
        return layer, modules[layer]
    close = difflib.get_close_matches(layer, [n for n in modules if n], n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(f"layer {layer!r} is not a module of the model{hint}")


def resolve_target(
    target: int | Sequence[int] | torch.Tensor | None, scores: torch.Tensor
) -> torch.Tensor:
    """Return the explained class of each image as int64 ``[B]`` on the device of ``scores``.

    Args:
        target: ``None`` (the arg-max class of each row of ``scores``), one class for all
            images, or one class per image (a sequence or an integer tensor ``[B]``).
        scores: ``[B, num_classes]`` logits or probabilities of the clean images.

    Raises:
        TypeError: ``target`` is not integer (a bool, a float, a string, ...).
        ValueError: ``target`` has another length than ``B`` or a class outside
            ``[0, num_classes)``.

    Example:
        >>> scores = torch.tensor([[0.1, 0.9], [0.8, 0.2]])
        >>> resolve_target(None, scores).tolist(), resolve_target(1, scores).tolist()
        ([1, 0], [1, 1])

    """
    batch, num_classes = scores.shape
    if target is None:
        return scores.argmax(dim=1)
    expected = "target must be None, an int, a sequence of ints or a [B] integer tensor"
    if isinstance(target, bool | str | bytes):
        raise TypeError(f"{expected}, got {type(target).__name__}")
    try:
        classes = torch.as_tensor(target, device=scores.device)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(f"{expected}, got {type(target).__name__}") from error
    if classes.is_floating_point() or classes.is_complex() or classes.dtype == torch.bool:
        raise TypeError(f"target must hold integer class indices, got dtype {classes.dtype}")
    if classes.dim() == 0:
        classes = classes.repeat(batch)
    if classes.shape != (batch,):
        raise ValueError(
            f"target must be an int or hold one class per image ({batch}), "
            f"got shape {tuple(classes.shape)}"
        )
    outside = (classes < 0) | (classes >= num_classes)
    if bool(outside.any()):
        raise ValueError(
            f"target out of range: classes outside [0, {num_classes}) (the model's output "
            f"size): {classes[outside].tolist()}"
        )
    return classes.to(torch.int64)
