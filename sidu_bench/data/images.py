"""Image loading and model preprocessing: RGB uint8 in, squashed and normalised float out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as tvf


def image_size(path: Path) -> tuple[int, int]:
    """Return ``(height, width)`` of an image file, reading only its header."""
    with Image.open(path) as img:
        width, height = img.size
    return height, width


def load_rgb(path: Path) -> torch.Tensor:
    """Load an image file as an RGB ``uint8`` tensor ``[3, H, W]``.

    Greyscale, palette, CMYK and alpha images are converted to RGB (alpha is dropped). EXIF
    orientation is ignored on purpose: annotations refer to the stored pixel grid.
    """
    with Image.open(path) as img:
        rgb = np.asarray(img.convert("RGB"))
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous()


def preprocess(
    image: torch.Tensor,
    *,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: str = "bilinear",
) -> torch.Tensor:
    """Squash an image to ``size x size`` (never crop) and normalise it as the model expects.

    Args:
        image: RGB ``uint8`` tensor ``[3, H, W]`` (or float in ``[0, 1]``).
        size: the model's square input size S.
        mean: per-channel mean of the model's normalisation (on ``[0, 1]`` values).
        std: per-channel standard deviation of the model's normalisation.
        interpolation: ``"bilinear"`` or ``"bicubic"`` (antialiased, as torchvision's presets).

    Returns:
        ``float32`` tensor ``[3, S, S]`` equal to ``(resize(image) / 255 - mean) / std``.
    """
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must have shape [3, H, W], got {tuple(image.shape)}")
    mode = InterpolationMode(interpolation)
    resized = tvf.resize(image, [size, size], interpolation=mode, antialias=True)
    if resized.dtype == torch.uint8:
        resized = resized.to(torch.float32) / 255.0
    return tvf.normalize(resized.to(torch.float32), mean=list(mean), std=list(std))
