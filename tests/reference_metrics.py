"""Plain reference implementations of the metrics, for the exactness tests.

Written independently of ``sidu_bench.metrics``: float64 numpy/scipy, one image at a time, an
explicit per-step loop as RISE's ``CausalMetric`` runs it. Only the model forward is torch.
Also the tiny seeded models the metric tests run on.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.ndimage
import scipy.stats
import sidu_models
import torch
from torch import nn

# --- tiny seeded models -------------------------------------------------------------------------


def tiny_cnn(seed: int, n_classes: int = 5) -> nn.Module:
    """The suite's seeded tiny CNN (``sidu_models.tiny_cnn``) in float32, in eval mode."""
    return sidu_models.tiny_cnn(seed=seed, channels=8, classes=n_classes, dtype=torch.float32)


class PixelSumModel(nn.Module):
    """Logits ``[sum(x) / scale, 0]``: the target-0 probability is ``sigmoid(sum(x) / scale)``."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = x.sum(dim=(1, 2, 3)) / self.scale
        return torch.stack([total, torch.zeros_like(total)], dim=1)


# --- resizing and the blur kernel ---------------------------------------------------------------


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres and clamped borders (align_corners=False).

    Each interpolation is ``v0 + t * (v1 - v0)``, first along rows then along columns, so that
    equal neighbours give exactly their value (ties survive the resize).
    """
    in_height, in_width = image.shape

    def positions(n_out: int, n_in: int) -> list[tuple[int, int, float]]:
        result = []
        for i in range(n_out):
            source = max((i + 0.5) * (n_in / n_out) - 0.5, 0.0)
            low = min(math.floor(source), n_in - 1)
            result.append((low, min(low + 1, n_in - 1), source - low))
        return result

    rows = np.empty((height, in_width))
    for y, (top, bottom, t) in enumerate(positions(height, in_height)):
        for x in range(in_width):
            rows[y, x] = image[top, x] + t * (image[bottom, x] - image[top, x])
    out = np.empty((height, width))
    for x, (left, right, t) in enumerate(positions(width, in_width)):
        for y in range(height):
            out[y, x] = rows[y, left] + t * (rows[y, right] - rows[y, left])
    return out


def rise_kernel(size: int = 11, sigma: float = 5.0, truncate: float = 4.0) -> np.ndarray:
    """RISE's kernel built by hand: a Gaussian-filtered delta with half-sample reflection.

    scipy's gaussian_filter uses 1-D weights ``exp(-k^2 / (2 sigma^2))`` for
    ``|k| <= int(truncate * sigma + 0.5)``, normalised, and mode 'reflect' (d c b a | a b c d).
    """
    radius = int(truncate * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * offsets.astype(float) ** 2 / sigma**2)
    weights /= weights.sum()
    centre = size // 2
    profile = np.zeros(size)
    for i in range(size):
        for offset, weight in zip(offsets, weights, strict=True):
            j = (i + offset) % (2 * size)
            if j >= size:
                j = 2 * size - 1 - j
            if j == centre:
                profile[i] += weight
    return np.outer(profile, profile)


def blur(image: np.ndarray) -> np.ndarray:
    """RISE's blur of ``[C, H, W]``: per channel, zero padding."""
    kernel = rise_kernel()
    return np.stack([scipy.ndimage.correlate(plane, kernel, mode="constant") for plane in image])


# --- insertion / deletion -----------------------------------------------------------------------


def _probabilities(model: nn.Module, image: np.ndarray, dtype: torch.dtype) -> np.ndarray:
    with torch.no_grad():
        logits = model(torch.from_numpy(image[None]).to(dtype))[0].double().numpy()
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


def _trapezoid(scores: list[float]) -> float:
    n_steps = len(scores) - 1
    return sum((scores[i] + scores[i + 1]) / 2 for i in range(n_steps)) / n_steps


def insertion_deletion_one(
    model: nn.Module,
    image: torch.Tensor,
    saliency: np.ndarray,
    *,
    target: int | None = None,
    steps: int = 224,
    step: int | None = None,
    deletion_substrate: np.ndarray | None = None,
    insertion_substrate: np.ndarray | None = None,
) -> dict[str, object]:
    """RISE's insertion and deletion for one image ``[C, H, W]``, one forward per step."""
    dtype = image.dtype
    original = image.detach().double().numpy()
    channels, height, width = original.shape
    n_pixels = height * width
    if saliency.shape != (height, width):
        saliency = resize_bilinear(saliency, height, width)
    order = np.argsort(-saliency.reshape(-1), kind="stable")
    if step is None:
        bounds = [(i * n_pixels // steps, (i + 1) * n_pixels // steps) for i in range(steps)]
    else:
        n_steps = math.ceil(n_pixels / step)
        bounds = [(i * step, min((i + 1) * step, n_pixels)) for i in range(n_steps)]
    if target is None:
        target = int(np.argmax(_probabilities(model, original, dtype)))
    if deletion_substrate is None:
        deletion_substrate = np.zeros_like(original)
    if insertion_substrate is None:
        insertion_substrate = blur(original)

    curves = {}
    for name, start, finish in (
        ("deletion", original, deletion_substrate),
        ("insertion", insertion_substrate, original),
    ):
        current = np.array(start, dtype=np.float64).reshape(channels, n_pixels)
        final = np.broadcast_to(finish, original.shape).reshape(channels, n_pixels)
        scores = []
        for i in range(len(bounds) + 1):
            probabilities = _probabilities(model, current.reshape(channels, height, width), dtype)
            scores.append(float(probabilities[target]))
            if i < len(bounds):
                low, high = bounds[i]
                pixels = order[low:high]
                current[:, pixels] = final[:, pixels]
        curves[name] = scores
    return {
        "target": target,
        "deletion_curve": np.array(curves["deletion"]),
        "insertion_curve": np.array(curves["insertion"]),
        "deletion_auc": _trapezoid(curves["deletion"]),
        "insertion_auc": _trapezoid(curves["insertion"]),
    }


# --- localisation -------------------------------------------------------------------------------


def pointing_one(saliency: np.ndarray, region: np.ndarray, tolerance: float) -> tuple[bool, bool]:
    """(hit, valid) for one map and its region: distance transform at the arg-max point."""
    if not region.any():
        return False, False
    resized = resize_bilinear(saliency, *region.shape)
    point = np.unravel_index(int(np.argmax(resized)), resized.shape)
    distance = scipy.ndimage.distance_transform_edt(~region)[point]
    return bool(distance < tolerance), True


def energy_one(saliency: np.ndarray, region: np.ndarray) -> tuple[float, bool]:
    """(share of positive mass inside the region, valid) for one map."""
    if not region.any():
        return math.nan, False
    positive = np.maximum(resize_bilinear(saliency, *region.shape), 0.0)
    total = positive.sum()
    inside = positive[region].sum()
    return (inside / total if total > 0 else 0.0), True


def region_auc_pairs(saliency: np.ndarray, region: np.ndarray) -> tuple[float, bool]:
    """(ROC-AUC by counting all inside/outside pairs, ties 1/2, valid) for one map."""
    if not region.any() or region.all():
        return math.nan, False
    resized = resize_bilinear(saliency, *region.shape)
    inside = resized[region]
    outside = resized[~region]
    wins = (inside[:, None] > outside[None, :]).sum() + 0.5 * (
        inside[:, None] == outside[None, :]
    ).sum()
    return float(wins / (inside.size * outside.size)), True


def region_auc_ranks(saliency: np.ndarray, region: np.ndarray) -> tuple[float, bool]:
    """(ROC-AUC from scipy's midranks, Mann-Whitney U, valid) for one map."""
    if not region.any() or region.all():
        return math.nan, False
    resized = resize_bilinear(saliency, *region.shape)
    ranks = scipy.stats.rankdata(resized.reshape(-1))
    inside = region.reshape(-1)
    n_in = inside.sum()
    n_out = inside.size - n_in
    return float((ranks[inside].sum() - n_in * (n_in + 1) / 2) / (n_in * n_out)), True
