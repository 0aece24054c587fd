"""A plainly written float64 SIDU, independent of the package: loops, numpy, one mask at a time.

It follows the authors' algorithm literally: skimage's ``resize(order=1, mode="reflect",
anti_aliasing=False)`` rule written out pixel by pixel, one forward pass per mask, the
similarity kernel written as the authors do (``sqrt(exp(-d^2 / sigma^2))``), uniqueness as a
double loop of Euclidean distances, and the weighted mask sum.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def mirror_index(index: int, size: int) -> int:
    """numpy's 'reflect' padding of an index: -1 -> 1, size -> size - 2."""
    if size == 1:
        return 0
    while index < 0 or index >= size:
        if index < 0:
            index = -index
        if index >= size:
            index = 2 * (size - 1) - index
    return index


def resize_bilinear_reflect(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resize sampled at pixel centres with a mirrored border, pixel by pixel."""
    in_h, in_w = image.shape
    out = np.zeros((out_h, out_w), dtype=np.float64)
    for i in range(out_h):
        y = (i + 0.5) * in_h / out_h - 0.5
        y0 = math.floor(y)
        fy = y - y0
        for j in range(out_w):
            x = (j + 0.5) * in_w / out_w - 0.5
            x0 = math.floor(x)
            fx = x - x0
            total = 0.0
            for dy, wy in ((0, 1.0 - fy), (1, fy)):
                for dx, wx in ((0, 1.0 - fx), (1, fx)):
                    yy = mirror_index(y0 + dy, in_h)
                    xx = mirror_index(x0 + dx, in_w)
                    total += wy * wx * image[yy, xx]
            out[i, j] = total
    return out


def layer_output(
    model: torch.nn.Module,
    module: torch.nn.Module,
    image: np.ndarray,
    tokens_prefix: int | None = None,
) -> np.ndarray:
    """Run ``model`` on one image (float64) and return ``module``'s output ``[K, h, w]``.

    With ``tokens_prefix`` the layer outputs tokens ``[N, K]``: the first ``tokens_prefix`` are
    dropped and patch token ``prefix + i * w + j`` becomes the grid cell ``(i, j)``, one by one.
    """
    captured = []
    handle = module.register_forward_hook(lambda _m, _i, out: captured.append(out))
    with torch.no_grad():
        model(torch.from_numpy(image)[None])
    handle.remove()
    output = captured[0][0].double().numpy()
    if tokens_prefix is None:
        return output
    tokens, channels = output.shape
    side = math.isqrt(tokens - tokens_prefix)
    grid = np.zeros((channels, side, side))
    for i in range(side):
        for j in range(side):
            for k in range(channels):
                grid[k, i, j] = output[tokens_prefix + i * side + j, k]
    return grid


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax of a 1-D array."""
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


def probabilities(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """Class probabilities of one image."""
    with torch.no_grad():
        logits = model(torch.from_numpy(image)[None])[0].double().numpy()
    return softmax(logits)


def pooled_unit_features(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """Global-average-pooled, L2-normalised backbone output of one image."""
    with torch.no_grad():
        maps = model(torch.from_numpy(image)[None])[0].double().numpy()
    pooled = maps.mean(axis=(1, 2))
    return pooled / max(np.linalg.norm(pooled), 1e-12)


def reference_sidu(
    model: torch.nn.Module,
    module: torch.nn.Module | None,
    image: np.ndarray,
    *,
    target: int | None = None,
    threshold: float = 0.1,
    kernel_width: float = 0.25,
    tokens_prefix: int | None = None,
) -> dict[str, np.ndarray]:
    """SIDU of one float64 image ``[C, H, W]``; ``module=None`` is the backbone (feature) form.

    ``tokens_prefix``: the layer outputs tokens, read as a square grid (:func:`layer_output`).
    """
    height, width = image.shape[1:]
    if module is None:
        activations = None
        with torch.no_grad():
            activations = model(torch.from_numpy(image)[None])[0].double().numpy()
        vector = pooled_unit_features
    else:
        activations = layer_output(model, module, image, tokens_prefix)
        vector = probabilities
    p0 = vector(model, image)
    if module is not None and target is None:
        target = int(np.argmax(p0))
    count = activations.shape[0]
    masks = []
    outputs = []
    for k in range(count):
        binary = (activations[k] > threshold).astype(np.float64)
        mask = resize_bilinear_reflect(binary, height, width)
        masks.append(mask)
        outputs.append(vector(model, image * mask[None]))
    similarity = np.zeros(count)
    for k in range(count):
        if module is None:
            distance_sq = float(np.sum((p0 - outputs[k]) ** 2))
        else:
            distance_sq = (p0[target] - outputs[k][target]) ** 2
        similarity[k] = math.sqrt(math.exp(-distance_sq / kernel_width**2))
    raw = np.zeros(count)
    for k in range(count):
        for j in range(count):
            raw[k] += math.sqrt(float(np.sum((outputs[k] - outputs[j]) ** 2)))
    uniqueness = (raw - raw.min()) / (raw.max() - raw.min() + 1e-13)
    saliency = np.zeros((height, width))
    for k in range(count):
        saliency += similarity[k] * uniqueness[k] * masks[k]
    saliency = saliency / count / 0.5
    return {
        "saliency": saliency,
        "similarity": similarity,
        "uniqueness": uniqueness,
        "activations": activations,
        "target": target,
    }
