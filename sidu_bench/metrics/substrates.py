"""Perturbation substrates of the RISE insertion/deletion protocol (Petsiuk et al., BMVC 2018)."""

from __future__ import annotations

import functools

import numpy as np
import scipy.ndimage
import torch
from torch import Tensor
from torch.nn.functional import conv2d

from sidu.validation import check_images

KERNEL_SIZE = 11
KERNEL_SIGMA = 5.0


@functools.cache
def _rise_kernel_array() -> np.ndarray:
    delta = np.zeros((KERNEL_SIZE, KERNEL_SIZE))
    delta[KERNEL_SIZE // 2, KERNEL_SIZE // 2] = 1.0
    kernel = scipy.ndimage.gaussian_filter(delta, KERNEL_SIGMA)
    kernel.setflags(write=False)
    return kernel


def rise_blur_kernel(
    *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> Tensor:
    """Return RISE's 11 x 11 blur kernel: ``scipy.ndimage.gaussian_filter(delta, sigma=5)``.

    ``delta`` is an 11 x 11 array holding a single 1 at its centre; scipy's defaults apply (mode
    'reflect', truncate 4), so the kernel is much flatter than a normalised Gaussian: centre
    0.00883, corner 0.00774, sum 1 (Petsiuk et al., "RISE", BMVC 2018, ``evaluation.py``).

    Example:
        >>> kernel = rise_blur_kernel()
        >>> [round(kernel[5, 5].item(), 5), round(kernel[0, 0].item(), 5)]
        [0.00883, 0.00774]
        >>> round(kernel.sum().item(), 12)
        1.0

    """
    return torch.tensor(_rise_kernel_array(), dtype=dtype, device=device)


def rise_blur_description() -> str:
    """The insertion substrate as the protocol object names it, from this module's constants.

    Example:
        >>> rise_blur_description()
        'RISE blur: gaussian_filter(delta 11x11, sigma=5), pad 5'

    """
    return (
        f"RISE blur: gaussian_filter(delta {KERNEL_SIZE}x{KERNEL_SIZE}, sigma={KERNEL_SIGMA:g}), "
        f"pad {KERNEL_SIZE // 2}"
    )


def rise_blur(images: Tensor) -> Tensor:
    """Blur ``images`` ``[B, C, H, W]`` with RISE's kernel, per channel, zero padding 5.

    ``out[b, c] = conv2d(images[b, c], rise_blur_kernel(), padding=5)``: the insertion substrate
    of RISE (Petsiuk et al., BMVC 2018). Computed in the images' dtype on their device.

    Example:
        >>> out = rise_blur(torch.ones(1, 3, 32, 32))
        >>> round(out[0, 0, 16, 16].item(), 6), round(out[0, 0, 0, 0].item(), 4)
        (1.0, 0.2992)

    """
    images = check_images(images, finite=False)
    batch, channels, height, width = images.shape
    kernel = rise_blur_kernel(dtype=images.dtype, device=images.device)[None, None]
    planes = images.reshape(batch * channels, 1, height, width)
    return conv2d(planes, kernel, padding=KERNEL_SIZE // 2).reshape(images.shape)
