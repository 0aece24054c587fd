"""Input checks shared by the metrics: each error names the argument and what was expected.

Images are checked by :func:`sidu.validation.check_images`.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real

import torch
from torch import Tensor


def check_saliency(saliency: object, *, batch: int | None = None) -> Tensor:
    """Return ``saliency`` if it is a finite real tensor ``[B, h, w]`` (B = ``batch`` if given)."""
    if not isinstance(saliency, Tensor):
        raise TypeError(f"saliency must be a torch.Tensor [B, h, w], got {type(saliency).__name__}")
    if saliency.ndim != 3:
        raise ValueError(f"saliency must be 3-D [B, h, w], got shape {tuple(saliency.shape)}")
    if saliency.is_complex() or saliency.dtype == torch.bool:
        raise TypeError(f"saliency must hold real numbers, got {saliency.dtype}")
    if batch is not None and saliency.shape[0] != batch:
        raise ValueError(
            f"saliency must hold one map per image: expected batch size {batch}, "
            f"got shape {tuple(saliency.shape)}"
        )
    if saliency.shape[0] == 0 or saliency.shape[1] == 0 or saliency.shape[2] == 0:
        raise ValueError(f"saliency must be non-empty, got shape {tuple(saliency.shape)}")
    if saliency.is_floating_point() and not bool(torch.isfinite(saliency).all()):
        raise ValueError("saliency must be finite: it contains NaN or inf")
    return saliency


def check_regions(regions: object, *, batch: int) -> list[Tensor | None]:
    """Return ``regions`` as a list of 2-D boolean masks (or None), one per image, else raise.

    ``regions`` is a boolean tensor ``[B, H, W]`` or a sequence of ``B`` entries, each a boolean
    tensor ``[H_i, W_i]`` or None.
    """
    if isinstance(regions, Tensor):
        if regions.dtype != torch.bool:
            raise TypeError(f"regions must be boolean masks, got dtype {regions.dtype}")
        if regions.ndim != 3 or regions.shape[0] != batch:
            raise ValueError(
                f"regions must be a boolean tensor [B, H, W] with B = {batch} (the number of "
                f"saliency maps), got shape {tuple(regions.shape)}"
            )
        return list(regions.unbind(0))
    if not isinstance(regions, Sequence) or isinstance(regions, str | bytes):
        raise TypeError(
            "regions must be a boolean tensor [B, H, W] or a sequence of boolean tensors [H, W] "
            f"(or None), got {type(regions).__name__}"
        )
    if len(regions) != batch:
        raise ValueError(
            f"regions must hold one entry per saliency map: expected {batch}, got {len(regions)}"
        )
    checked: list[Tensor | None] = []
    for i, region in enumerate(regions):
        if region is None:
            checked.append(None)
            continue
        if not isinstance(region, Tensor):
            raise TypeError(f"regions[{i}] must be a boolean tensor or None, got {type(region)}")
        if region.dtype != torch.bool:
            raise TypeError(f"regions[{i}] must be a boolean mask, got dtype {region.dtype}")
        if region.ndim != 2 or region.shape[0] == 0 or region.shape[1] == 0:
            raise ValueError(
                f"regions[{i}] must be a non-empty 2-D mask [H, W], got shape {tuple(region.shape)}"
            )
        checked.append(region)
    return checked


def check_positive_int(value: object, *, name: str) -> int:
    """Return ``value`` as an int if it is an integer >= 1, else raise."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value}")
    return int(value)


def check_tolerance(tolerance: object) -> float:
    """Return ``tolerance`` as a float if it is a finite real number > 0, else raise."""
    if isinstance(tolerance, bool) or not isinstance(tolerance, Real):
        raise TypeError(f"tolerance must be a real number > 0 (pixels), got {tolerance!r}")
    if not 0 < float(tolerance) < float("inf"):
        raise ValueError(f"tolerance must be a finite number > 0 (pixels), got {tolerance}")
    return float(tolerance)


def check_substrate(substrate: object, *, images: Tensor, name: str) -> Tensor:
    """Return ``substrate`` expanded to the shape of ``images`` (no copy), else raise."""
    if not isinstance(substrate, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(substrate).__name__}")
    if not substrate.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got {substrate.dtype}")
    try:
        broadcasts = torch.broadcast_shapes(substrate.shape, images.shape) == images.shape
    except RuntimeError:
        broadcasts = False
    if not broadcasts:
        raise ValueError(
            f"{name} must broadcast to the images' shape {tuple(images.shape)}, "
            f"got shape {tuple(substrate.shape)}"
        )
    return substrate.to(device=images.device, dtype=images.dtype).expand(images.shape)


def check_flags(flags: object, *, name: str, length: int) -> Tensor:
    """Return ``flags`` if it is a 1-D boolean tensor of ``length`` entries, else raise."""
    if not isinstance(flags, Tensor):
        raise TypeError(f"{name} must be a boolean torch.Tensor [N], got {type(flags).__name__}")
    if flags.dtype != torch.bool:
        raise TypeError(f"{name} must be a boolean tensor, got dtype {flags.dtype}")
    if flags.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},), got {tuple(flags.shape)}")
    return flags


def check_categories(categories: object, *, length: int) -> Tensor:
    """Return ``categories`` as an int64 tensor ``[N]`` if it holds integer ids, else raise."""
    if isinstance(categories, Tensor):
        tensor = categories
    elif isinstance(categories, Sequence) and not isinstance(categories, str | bytes):
        tensor = torch.as_tensor(list(categories))
    else:
        raise TypeError(
            f"categories must be a tensor or sequence of integer ids, got {type(categories)}"
        )
    if tensor.numel() == 0 and length == 0:
        return tensor.reshape(0).to(torch.int64)
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise TypeError(f"categories must hold integer class ids, got dtype {tensor.dtype}")
    if tensor.shape != (length,):
        raise ValueError(f"categories must have shape ({length},), got {tuple(tensor.shape)}")
    return tensor.to(torch.int64)


def check_localisation_batch(
    values: object, valid: object, *, categories: object, subset: object | None
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """Check one batch of localisation values; return them on the CPU."""
    if not isinstance(values, Tensor) or values.ndim != 1:
        shape = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
        raise ValueError(f"values must be a 1-D tensor [N], got {shape}")
    n_items = len(values)
    valid = check_flags(valid, name="valid", length=n_items).detach().cpu()
    categories = check_categories(categories, length=n_items).detach().cpu()
    if subset is not None:
        subset = check_flags(subset, name="subset", length=n_items).detach().cpu()
    return values.detach().cpu(), valid, categories, subset


def check_curves(
    insertion_auc: object, deletion_auc: object, insertion_curve: object, deletion_curve: object
) -> int:
    """Check the shapes of one batch of insertion/deletion results; return the batch size."""
    for name, value, ndim in (
        ("insertion_auc", insertion_auc, 1),
        ("deletion_auc", deletion_auc, 1),
        ("insertion_curve", insertion_curve, 2),
        ("deletion_curve", deletion_curve, 2),
    ):
        if not isinstance(value, Tensor) or value.ndim != ndim:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"{name} must be a {ndim}-D tensor, got {shape}")
    n_items = len(insertion_auc)
    if (
        deletion_auc.shape != (n_items,)
        or insertion_curve.shape[0] != n_items
        or deletion_curve.shape != insertion_curve.shape
    ):
        raise ValueError(
            "insertion_auc, deletion_auc [N] and insertion_curve, deletion_curve [N, n_steps + 1] "
            f"must agree, got {tuple(insertion_auc.shape)}, {tuple(deletion_auc.shape)}, "
            f"{tuple(insertion_curve.shape)}, {tuple(deletion_curve.shape)}"
        )
    return n_items
