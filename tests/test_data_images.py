"""Image loading (greyscale/CMYK/alpha to RGB) and squash-resize preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures_data import write_image
from PIL import Image

from sidu_bench.data.images import image_size, load_rgb, preprocess


@pytest.mark.parametrize(
    ("mode", "suffix"), [("L", ".jpg"), ("CMYK", ".jpg"), ("RGBA", ".png"), ("RGB", ".png")]
)
def test_load_rgb_converts_every_mode(tmp_path, mode, suffix):
    path = tmp_path / f"image{suffix}"
    write_image(path, 5, 7, mode=mode)
    image = load_rgb(path)
    assert image.shape == (3, 5, 7)
    assert image.dtype == torch.uint8
    assert image_size(path) == (5, 7)
    with Image.open(path) as original:
        expected = np.array(original.convert("RGB"))
    assert torch.equal(image, torch.from_numpy(expected).permute(2, 0, 1))


def test_greyscale_becomes_three_equal_channels(tmp_path):
    path = tmp_path / "grey.png"
    write_image(path, 4, 4, mode="L")
    image = load_rgb(path)
    assert torch.equal(image[0], image[1])
    assert torch.equal(image[1], image[2])


def test_preprocess_normalises_exactly():
    image = torch.full((3, 6, 6), 255, dtype=torch.uint8)
    out = preprocess(image, size=6, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 2.0))
    assert out.dtype == torch.float32
    assert torch.allclose(out[:, 0, 0], torch.tensor([1.0, 3.0, 0.5]))


def test_preprocess_squashes_and_never_crops():
    # Left third black, right third white, 10 x 30: a centre crop would lose both ends.
    image = torch.full((3, 10, 30), 128, dtype=torch.uint8)
    image[:, :, :10] = 0
    image[:, :, 20:] = 255
    out = preprocess(image, size=9, mean=(0, 0, 0), std=(1, 1, 1))
    assert out.shape == (3, 9, 9)
    assert torch.allclose(out[:, :, :2], torch.zeros(3, 9, 2), atol=1e-6)
    assert torch.allclose(out[:, :, -2:], torch.ones(3, 9, 2), atol=1e-6)


def test_preprocess_rejects_non_rgb():
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        preprocess(torch.zeros(1, 4, 4), size=4, mean=(0, 0, 0), std=(1, 1, 1))
