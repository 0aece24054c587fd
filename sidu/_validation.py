"""Input checks shared by the SIDU API and the engine: each error names the argument."""

from __future__ import annotations

import difflib

import torch
from torch import nn


def check_images(images: object, *, name: str = "images", channels: int | None = None) -> None:
    """Raise unless ``images`` is a finite, non-empty, floating ``[B, C, H, W]`` tensor."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [B, C, H, W], got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(
            f"{name} must be a 4-D tensor [B, C, H, W], got shape {tuple(images.shape)}"
        )
    if not images.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype, got {images.dtype}")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(images.shape)})")
    if images.shape[2] == 0 or images.shape[3] == 0:
        raise ValueError(f"{name} has an empty spatial size (shape {tuple(images.shape)})")
    if channels is not None and images.shape[1] != channels:
        raise ValueError(
            f"{name} has {images.shape[1]} channels but the model's first layer expects "
            f"{channels} (shape {tuple(images.shape)})"
        )
    if not bool(torch.isfinite(images).all()):
        raise ValueError(f"{name} contains NaN or infinite values")


def expected_channels(model: nn.Module) -> int | None:
    """Return the input channels of the model's first convolution, or ``None`` if it has none."""
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            return module.in_channels
    return None


def check_model_device(model: nn.Module, images: torch.Tensor) -> None:
    """Raise when the model's parameters are on another device than ``images``."""
    parameter = next(model.parameters(), None)
    if parameter is not None and parameter.device != images.device:
        raise ValueError(
            f"model is on {parameter.device} but images are on {images.device}; "
            "move the images (or the model) so that both are on one device"
        )


def check_model_dtype(model: nn.Module, images: torch.Tensor, dtype: torch.dtype | None) -> None:
    """Raise when full-precision inputs do not match the model's parameter dtype."""
    parameter = next(model.parameters(), None)
    if parameter is None or dtype in (torch.bfloat16, torch.float16):
        return
    if parameter.dtype != images.dtype:
        raise TypeError(
            f"images are {images.dtype} but the model's parameters are {parameter.dtype}; "
            f"pass images.to({parameter.dtype}) or a model of the images' dtype"
        )


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
    target: int | torch.Tensor | None, predicted: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """Return ``[B]`` classes: the prediction, one int for all, or one class per image."""
    batch = predicted.shape[0]
    if target is None:
        return predicted
    if isinstance(target, bool):
        raise TypeError("target must be None, an int or a [B] integer tensor, got a bool")
    if isinstance(target, int):
        classes = torch.full((batch,), target, dtype=torch.long, device=predicted.device)
    elif isinstance(target, torch.Tensor):
        if target.dtype.is_floating_point or target.dtype == torch.bool or target.is_complex():
            raise TypeError(f"target must be an integer tensor, got dtype {target.dtype}")
        if target.dim() == 0:
            target = target.expand(batch)
        if target.dim() != 1 or target.shape[0] != batch:
            raise ValueError(
                f"target must have one class per image ({batch}), got shape {tuple(target.shape)}"
            )
        classes = target.to(device=predicted.device, dtype=torch.long)
    else:
        raise TypeError(
            f"target must be None, an int or a [B] integer tensor, got {type(target).__name__}"
        )
    if bool(((classes < 0) | (classes >= num_classes)).any()):
        raise ValueError(
            f"target has classes outside [0, {num_classes}) (the model's output size): "
            f"{classes.tolist()}"
        )
    return classes
