import numpy as np
import pytest
import torch
from reference_sidu import resize_bilinear_reflect

from sidu.upsample import interpolation_matrix, resize_reflect


@pytest.mark.parametrize(
    ("h", "w", "H", "W"),
    [(7, 7, 56, 56), (1, 5, 9, 13), (3, 4, 50, 37), (8, 8, 5, 6), (2, 2, 3, 3)],
)
def test_resize_matches_plain_loops(h, w, H, W):
    rng = np.random.default_rng(h * 100 + W)
    image = rng.random((h, w))
    ours = resize_reflect(torch.from_numpy(image), (H, W)).numpy()
    np.testing.assert_allclose(ours, resize_bilinear_reflect(image, H, W), rtol=0, atol=1e-14)


def test_resize_matches_skimage():
    skimage_transform = pytest.importorskip("skimage.transform")
    rng = np.random.default_rng(0)
    image = (rng.random((7, 7)) > 0.5).astype(np.float64)
    expected = skimage_transform.resize(
        image, (224, 224), order=1, mode="reflect", anti_aliasing=False
    )
    ours = resize_reflect(torch.from_numpy(image), (224, 224)).numpy()
    assert np.abs(ours - expected).max() <= 1e-14


def test_border_is_mirrored_not_clamped():
    # One active cell in the corner: torch's clamped interpolation keeps 1.0 at the corner pixel,
    # the mirrored border mixes in the neighbour (x[-1] = x[1] = 0): 0.75 * 0.75 * 1 = 0.5625 at 2x.
    image = torch.zeros(1, 4, 4, dtype=torch.float64)
    image[0, 0, 0] = 1.0
    ours = resize_reflect(image, (8, 8))
    clamped = torch.nn.functional.interpolate(
        image[None], size=(8, 8), mode="bilinear", align_corners=False
    )
    assert ours[0, 0, 0].item() == pytest.approx(0.5625, abs=1e-15)
    assert clamped[0, 0, 0, 0].item() == pytest.approx(1.0)
    # The interior agrees with torch's rule.
    torch.testing.assert_close(ours[0, 2:6, 2:6], clamped[0, 0, 2:6, 2:6], rtol=0, atol=1e-15)


def test_rows_sum_to_one_and_bad_sizes():
    matrix = interpolation_matrix(7, 224)
    torch.testing.assert_close(matrix.sum(dim=1), torch.ones(224, dtype=torch.float64))
    with pytest.raises(ValueError, match="sizes must be >= 1"):
        interpolation_matrix(0, 4)
    with pytest.raises(TypeError, match="floating"):
        resize_reflect(torch.ones(2, 2, dtype=torch.long), (4, 4))
