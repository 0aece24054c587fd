"""sidu.resize: each of the four rules against a plain loop reference and the library it copies."""

import math

import numpy as np
import pytest
import torch
from reference_metrics import resize_bilinear as clamp_reference
from reference_sidu import resize_bilinear_reflect

from sidu.resize import RESIZE_RULES, interpolation_matrix, resize, resize_reflect

SIZES = [(7, 7, 56, 56), (1, 5, 9, 13), (3, 4, 50, 37), (8, 8, 5, 6), (2, 2, 3, 3), (5, 3, 5, 3)]


def bilinear_reference(image: np.ndarray, height: int, width: int, *, corners: bool) -> np.ndarray:
    """Bilinear resize with a clamped border, written pixel by pixel in float64.

    ``corners=False``: samples at pixel centres, ``src = (dst + 0.5) * n_in / n_out - 0.5``
    (below 0 clamped to 0); ``corners=True``: ``src = dst * (n_in - 1) / (n_out - 1)``.
    """

    def source(i: int, n_in: int, n_out: int) -> tuple[int, int, float]:
        if corners:
            position = i * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        else:
            position = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        low = min(math.floor(position), n_in - 1)
        return low, min(low + 1, n_in - 1), position - low

    in_height, in_width = image.shape
    out = np.zeros((height, width))
    for y in range(height):
        top, bottom, ty = source(y, in_height, height)
        for x in range(width):
            left, right, tx = source(x, in_width, width)
            upper = (1 - tx) * image[top, left] + tx * image[top, right]
            lower = (1 - tx) * image[bottom, left] + tx * image[bottom, right]
            out[y, x] = (1 - ty) * upper + ty * lower
    return out


@pytest.mark.parametrize(("h", "w", "H", "W"), SIZES)
def test_reflect_matches_plain_loops(h, w, H, W):
    rng = np.random.default_rng(h * 100 + W)
    image = rng.random((h, w))
    ours = resize(torch.from_numpy(image), (H, W), rule="reflect")
    np.testing.assert_allclose(ours.numpy(), resize_bilinear_reflect(image, H, W), atol=1e-14)
    assert torch.equal(ours, resize_reflect(torch.from_numpy(image), (H, W)))


def test_reflect_matches_skimage():
    skimage_transform = pytest.importorskip("skimage.transform")
    rng = np.random.default_rng(0)
    image = (rng.random((7, 7)) > 0.5).astype(np.float64)
    expected = skimage_transform.resize(
        image, (224, 224), order=1, mode="reflect", anti_aliasing=False
    )
    ours = resize_reflect(torch.from_numpy(image), (224, 224)).numpy()
    assert np.abs(ours - expected).max() <= 1e-14


def test_reflect_border_is_mirrored_not_clamped():
    # One active cell in the corner: the clamped rule keeps 1.0 at the corner pixel, the
    # mirrored border mixes in the neighbour (x[-1] = x[1] = 0): 0.75 * 0.75 * 1 = 0.5625 at 2x.
    image = torch.zeros(1, 4, 4, dtype=torch.float64)
    image[0, 0, 0] = 1.0
    ours = resize(image, (8, 8), rule="reflect")
    clamped = resize(image, (8, 8), rule="interpolate")
    assert ours[0, 0, 0].item() == pytest.approx(0.5625, abs=1e-15)
    assert clamped[0, 0, 0].item() == pytest.approx(1.0, abs=1e-15)
    # The interior agrees with the clamped rule.
    torch.testing.assert_close(ours[0, 2:6, 2:6], clamped[0, 2:6, 2:6], rtol=0, atol=1e-15)


def test_interpolation_matrix_rows_sum_to_one_and_bad_sizes():
    matrix = interpolation_matrix(7, 224)
    torch.testing.assert_close(matrix.sum(dim=1), torch.ones(224, dtype=torch.float64))
    with pytest.raises(ValueError, match="sizes must be >= 1"):
        interpolation_matrix(0, 4)
    with pytest.raises(TypeError, match="floating"):
        resize_reflect(torch.ones(2, 2, dtype=torch.long), (4, 4))


@pytest.mark.parametrize(("h", "w", "H", "W"), SIZES)
@pytest.mark.parametrize("rule", ["interpolate", "align_corners"])
def test_torch_rules_match_plain_loops(rule, h, w, H, W):
    rng = np.random.default_rng(h * 10 + w)
    image = rng.standard_normal((h, w))
    expected = bilinear_reference(image, H, W, corners=rule == "align_corners")
    for maps in (torch.from_numpy(image)[None], torch.from_numpy(image)[None, None]):
        ours = resize(maps, (H, W), rule=rule)
        assert ours.shape == (*maps.shape[:-2], H, W)
        assert ours.dtype == torch.float64
        np.testing.assert_allclose(ours.reshape(H, W).numpy(), expected, rtol=0, atol=1e-13)


def test_interpolate_is_cv2_inter_linear():
    # pytorch-grad-cam resizes float32 CAMs with cv2.resize (float32 weights inside cv2)
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(3)
    for h, w, H, W in SIZES:
        image = rng.random((h, w)).astype(np.float32)
        expected = cv2.resize(image, (W, H), interpolation=cv2.INTER_LINEAR)
        ours = resize(torch.from_numpy(image)[None], (H, W), rule="interpolate")[0].numpy()
        np.testing.assert_allclose(ours, expected.reshape(H, W), rtol=0, atol=1e-6)


@pytest.mark.parametrize(("h", "w", "H", "W"), SIZES)
def test_clamp_matches_plain_loops_and_torch(h, w, H, W):
    rng = np.random.default_rng(h + 7 * W)
    image = rng.random((h, w))
    ours = resize(torch.from_numpy(image).float()[None], (H, W), rule="clamp")
    assert ours.dtype == torch.float64
    reference = clamp_reference(image.astype(np.float32).astype(np.float64), H, W)
    np.testing.assert_allclose(ours[0].numpy(), reference, rtol=0, atol=1e-15)
    torch_rule = resize(torch.from_numpy(image)[None], (H, W), rule="interpolate")
    np.testing.assert_allclose(
        resize(torch.from_numpy(image)[None], (H, W), rule="clamp").numpy(),
        torch_rule.numpy(),
        rtol=0,
        atol=1e-15,
    )


def test_clamp_keeps_plateaus_exact_and_integer_maps():
    # A plateau of the maximum stays a plateau of exactly equal values (so ranking and arg-max
    # can break its ties by pixel index); the torch rule rounds some of it away.
    plateau = torch.tensor([[0.1, 0.7, 0.7], [0.2, 0.7, 0.7], [0.0, 0.3, 0.1]], dtype=torch.float64)
    resized = resize(plateau, (37, 41), rule="clamp")
    top = resized == 0.7
    assert top.sum() > 50
    assert bool((resized[top] == resized.max()).all())
    assert torch.equal(resize(plateau, (3, 3), rule="clamp"), plateau)
    counts = torch.tensor([[0, 2], [4, 6]])
    torch.testing.assert_close(
        resize(counts, (1, 4), rule="clamp"),
        torch.tensor([[2.0, 2.5, 3.5, 4.0]], dtype=torch.float64),
        rtol=0,
        atol=0,
    )


@pytest.mark.parametrize("rule", RESIZE_RULES)
def test_batch_axes_are_independent(rule):
    generator = torch.Generator().manual_seed(1)
    maps = torch.rand(2, 3, 5, 4, generator=generator, dtype=torch.float64)
    together = resize(maps, (9, 7), rule=rule)
    assert together.shape == (2, 3, 9, 7)
    for b in range(2):
        for c in range(3):
            alone = resize(maps[b, c], (9, 7), rule=rule)
            torch.testing.assert_close(together[b, c], alone, rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    ("maps", "size", "rule", "error", "message"),
    [
        (torch.rand(3, 3), (4, 4), "nearest", ValueError, "rule must be one of reflect, "),
        (torch.rand(3), (4, 4), "clamp", ValueError, r"maps must be a tensor \[..., h, w\]"),
        ([[1.0]], (4, 4), "reflect", ValueError, r"maps must be a tensor \[..., h, w\], got list"),
        (torch.ones(3, 3, dtype=torch.long), (4, 4), "interpolate", TypeError, "floating"),
        (torch.rand(3, 3), (0, 4), "align_corners", ValueError, "size must be >= 1"),
    ],
)
def test_bad_arguments(maps, size, rule, error, message):
    with pytest.raises(error, match=message):
        resize(maps, size, rule=rule)
