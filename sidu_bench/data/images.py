"""Image loading and model preprocessing: RGB uint8 in, squashed and normalised float out.

Every file data set decodes its images with :func:`load_rgb` (and reads their size with
:func:`image_size`), by one rule:

- only a regular file is opened (a FIFO named ``x.jpg`` would block the run);
- the header is read first (``Image.open`` does not decode) and an image of more than
  :data:`MAX_PIXELS` pixels, or of none, is refused before any pixel is decoded;
- 8-bit modes (every PIL mode of 1-bit or 8-bit samples: ``1``, ``L``, ``P``, ``RGB``,
  ``RGBA``, ``CMYK``, ``LA``, ``PA``, ``YCbCr``, ...) are converted with PIL's
  ``convert("RGB")``;
- 16-bit greyscale (modes ``I;16``, ``I;16L``, ``I;16B``, ``I;16N``, and mode ``I`` read from
  a PNG file: how some Pillow versions open 16-bit greyscale PNGs; Pillow 13 gives ``I;16``, and
  a PNG has at most 16 bits per sample) is scaled
  nominally: 8-bit value = round(value / 257), so that 65535 is 255; then grey to RGB (PIL opens
  a 16-bit RGB or RGBA PNG as 8-bit ``RGB``/``RGBA`` itself, keeping each value's high byte);
- any other mode (``F``: floating-point samples, ``I``: 32-bit integers other than a PNG's) is
  refused: its values have no stated range, and PIL's conversion would clip them.

A refused image raises :class:`ImageRefusedError` (a ``ValueError`` naming the file and why),
which a data set reports as an unreadable item.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageMode
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as tvf

from sidu_bench.data.files import not_regular

MAX_PIXELS = 64_000_000
"""The most pixels (width x height) an image may have: 64 megapixels (8000 x 8000).

Larger images are refused from their header, before decoding. Real data sets are far below it
(ImageNet, VOC and Caltech-101 images are under 1 megapixel); the bound is under PIL's own
decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``, about 89.5 megapixels by default), so
that PIL's ``DecompressionBombWarning``/``DecompressionBombError`` never come first (and when
they do, with a lower PIL limit, the image is refused the same way)."""

_EIGHT_BIT = ("|u1", "|b1")
_SIXTEEN_BIT = ("<u2", ">u2")
_PIL_PIXELS = re.compile(r"\((\d+) pixels\)")


class ImageRefusedError(ValueError):
    """An image file the decoder refuses: not a regular file, too large, or of a refused mode.

    Attributes:
        path: the image file.
        reason: why it is refused.
    """

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


def image_size(path: Path) -> tuple[int, int]:
    """Return ``(height, width)`` of an image file, reading only its header.

    Raises:
        ImageRefusedError: an image :func:`load_rgb` refuses for what its header says (not a
            regular file, more than :data:`MAX_PIXELS` pixels or none, a refused mode).
        OSError: the file cannot be read or is no image.
    """
    with _open(path) as img:
        width, height = img.size
    return height, width


def load_rgb(path: Path) -> torch.Tensor:
    """Load an image file as an RGB ``uint8`` tensor ``[3, H, W]``, by the module's rule.

    Greyscale, palette, CMYK and alpha images are converted to RGB (alpha is dropped), 16-bit
    greyscale is scaled to 8 bits (round(value / 257)). EXIF orientation is ignored on purpose:
    annotations refer to the stored pixel grid.

    Raises:
        ImageRefusedError: not a regular file, more than :data:`MAX_PIXELS` pixels (or none), or
            a mode other than 8-bit and 16-bit greyscale (e.g. ``F``).
        OSError: the file cannot be read, is no image or its data is corrupt.
    """
    with _open(path) as img:
        if _is_eight_bit(img.mode):
            rgb = np.asarray(img.convert("RGB"))
        else:
            grey = _sixteen_to_eight(np.asarray(img), path)
            rgb = np.repeat(grey[:, :, None], 3, axis=2)
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous()


@contextmanager
def _open(path: Path) -> Iterator[Image.Image]:
    """Open ``path`` with PIL after the checks that need only metadata and the header."""
    reason = not_regular(path)
    if reason is not None:
        raise ImageRefusedError(path, reason)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError as error:
        raise ImageRefusedError(path, _too_large(error)) from error
    with img:
        width, height = img.size
        if width * height > MAX_PIXELS:
            pixels = f"{width} x {height} = {width * height} pixels"
            raise ImageRefusedError(path, f"{pixels}, over the bound of {MAX_PIXELS} pixels")
        if width < 1 or height < 1:
            raise ImageRefusedError(path, f"no pixels ({width} x {height})")
        if not (_is_eight_bit(img.mode) or _is_sixteen_bit(img)):
            raise ImageRefusedError(path, _refused_mode(img.mode))
        try:
            yield img
        except Image.DecompressionBombError as error:
            raise ImageRefusedError(path, _too_large(error)) from error


def _too_large(error: Image.DecompressionBombError) -> str:
    """The refusal reason for PIL's decompression-bomb error (which gives the pixel count)."""
    found = _PIL_PIXELS.search(str(error))
    pixels = f"{found.group(1)} pixels" if found else f"too many pixels ({error})"
    return f"{pixels}, over the bound of {MAX_PIXELS} pixels"


def _typestr(mode: str) -> str | None:
    try:
        return ImageMode.getmode(mode).typestr
    except KeyError:
        return None


def _is_eight_bit(mode: str) -> bool:
    """Whether every band of ``mode`` has 1-bit or 8-bit samples."""
    return _typestr(mode) in _EIGHT_BIT


def _is_sixteen_bit(img: Image.Image) -> bool:
    """Whether ``img`` is 16-bit greyscale (``I;16*``, or ``I`` from a PNG file)."""
    return _typestr(img.mode) in _SIXTEEN_BIT or (img.mode == "I" and img.format == "PNG")


def _refused_mode(mode: str) -> str:
    samples = {"F": "32-bit floating-point", "I": "32-bit integer"}.get(mode, "unknown")
    return (
        f"image mode {mode!r} ({samples} samples) is refused: only 8-bit modes and 16-bit "
        "greyscale are decoded"
    )


def _sixteen_to_eight(grey: np.ndarray, path: Path) -> np.ndarray:
    """Scale 16-bit greyscale to ``uint8``: round(value / 257), exactly (no ties can occur)."""
    if grey.size and (int(grey.min()) < 0 or int(grey.max()) > 65535):
        raise ImageRefusedError(path, "16-bit greyscale values outside 0..65535")
    wide = grey.astype(np.uint32)
    return ((2 * wide + 257) // 514).astype(np.uint8)


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
