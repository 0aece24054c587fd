"""Pointing game, energy pointing game and region ROC-AUC: exactness against plain references,
hand-computed edge cases and input errors."""

import math

import numpy as np
import pytest
import torch
from reference_metrics import energy_one, pointing_one, region_auc_pairs, region_auc_ranks

from sidu_bench.metrics import energy_pointing_game, pointing_game, region_auc


def _random_region(generator: np.random.Generator, height: int, width: int) -> np.ndarray:
    kind = generator.integers(4)
    region = np.zeros((height, width), dtype=bool)
    if kind == 0:  # a rectangle, often touching the border
        top, left = generator.integers(-5, height), generator.integers(-5, width)
        bottom = top + generator.integers(1, height)
        right = left + generator.integers(1, width)
        region[max(top, 0) : bottom, max(left, 0) : right] = True
    elif kind == 1:  # a blob: thresholded smooth noise
        rows, cols = np.mgrid[0:height, 0:width]
        centre = generator.uniform(0, height), generator.uniform(0, width)
        radius = generator.uniform(2, max(height, width) / 2)
        region = (rows - centre[0]) ** 2 + ((cols - centre[1]) * 0.7) ** 2 < radius**2
    elif kind == 2:  # a few scattered pixels
        count = generator.integers(1, 6)
        region[generator.integers(0, height, count), generator.integers(0, width, count)] = True
    # kind 3: empty
    return region


def _random_items(seed: int, count: int, quantise: bool = False):
    generator = np.random.default_rng(seed)
    maps = generator.random((count, 7, 11))
    if quantise:
        maps = np.round(maps * 4) / 4
    regions = []
    for _ in range(count):
        height, width = generator.integers(12, 48, size=2)
        regions.append(_random_region(generator, int(height), int(width)))
    return maps, regions


def _as_torch(maps: np.ndarray, regions: list[np.ndarray]):
    return torch.from_numpy(maps), [torch.from_numpy(region) for region in regions]


@pytest.mark.parametrize("tolerance", [1.0, 4.0, 15.0])
def test_pointing_game_matches_reference(tolerance):
    maps, regions = _random_items(seed=1, count=60)
    hits, valid = pointing_game(*_as_torch(maps, regions), tolerance=tolerance)
    expected = [pointing_one(m, r, tolerance) for m, r in zip(maps, regions, strict=True)]
    assert hits.tolist() == [hit for hit, _ in expected]
    assert valid.tolist() == [ok for _, ok in expected]
    # Discriminating data: hits, misses and skipped items all occur.
    assert 0 < hits.sum() < valid.sum() < len(maps)


@pytest.mark.parametrize("quantise", [False, True], ids=["continuous", "with-ties"])
def test_energy_and_region_auc_match_references(quantise):
    maps, regions = _random_items(seed=2, count=40, quantise=quantise)
    regions[0] = np.ones_like(regions[0])  # a full region: AUC undefined, energy 1
    energy, energy_valid = energy_pointing_game(*_as_torch(maps, regions))
    auc, auc_valid = region_auc(*_as_torch(maps, regions))
    for index, (saliency, region) in enumerate(zip(maps, regions, strict=True)):
        expected_energy, expected_energy_valid = energy_one(saliency, region)
        assert energy_valid[index].item() == expected_energy_valid
        if expected_energy_valid:
            assert energy[index].item() == pytest.approx(expected_energy, abs=1e-9)
        else:
            assert math.isnan(energy[index].item())
        expected_auc, expected_auc_valid = region_auc_pairs(saliency, region)
        assert auc_valid[index].item() == expected_auc_valid
        if expected_auc_valid:
            assert auc[index].item() == pytest.approx(expected_auc, abs=1e-9)
            assert auc[index].item() == pytest.approx(
                region_auc_ranks(saliency, region)[0], abs=1e-9
            )
        else:
            assert math.isnan(auc[index].item())
    assert energy[0].item() == 1.0
    assert not auc_valid[0]
    assert 0 < auc_valid.sum() < len(maps)


def test_batched_regions_equal_the_sequence_form():
    generator = np.random.default_rng(3)
    maps = torch.from_numpy(generator.random((6, 5, 5)))
    regions = torch.stack([torch.from_numpy(_random_region(generator, 20, 30)) for _ in range(6)])
    for function, options in (
        (pointing_game, {"tolerance": 3.0}),
        (energy_pointing_game, {}),
        (region_auc, {}),
    ):
        batched = function(maps, regions, **options)
        sequence = function(maps, list(regions), **options)
        for a, b in zip(batched, sequence, strict=True):
            assert torch.equal(a.nan_to_num(-1.0), b.nan_to_num(-1.0))


def test_pointing_game_distance_is_strict_and_reaches_the_border():
    saliency = torch.zeros(1, 30, 30)
    saliency[0, 0, 0] = 1.0  # the point is the top-left corner

    def hit(row: int, col: int, tolerance: float = 15.0) -> bool:
        region = torch.zeros(1, 30, 30, dtype=torch.bool)
        region[0, row, col] = True
        hits, valid = pointing_game(saliency, region, tolerance=tolerance)
        assert valid.item()
        return hits.item()

    assert hit(0, 14)  # distance 14 < 15
    assert not hit(0, 15)  # distance 15 is not < 15
    assert hit(10, 11)  # sqrt(221) = 14.87
    assert not hit(11, 11)  # sqrt(242) = 15.56
    assert hit(0, 0, tolerance=0.5)  # inside the region: distance 0


def test_pointing_game_region_touching_the_border():
    saliency = torch.zeros(1, 8, 8)
    saliency[0, 7, 7] = 2.0  # bottom-right corner
    region = torch.zeros(40, 40, dtype=torch.bool)
    region[30:, 30:] = True  # touches the bottom and right borders
    hits, valid = pointing_game(saliency, [region], tolerance=0.5)
    assert hits.tolist() == [True]
    assert valid.tolist() == [True]
    far = torch.zeros(40, 40, dtype=torch.bool)
    far[0, :5] = True  # top-left, touching the top and left borders
    assert pointing_game(saliency, [far], tolerance=15.0)[0].tolist() == [False]


def test_resize_to_a_non_square_region_and_first_maximum_on_ties():
    # A 2 x 2 map resized to 10 x 20: every pixel with y >= 7 and x >= 15 takes the corner
    # value exactly (clamped bilinear), so the first maximum in row-major order is (7, 15).
    saliency = torch.tensor([[[0.0, 0.0], [0.0, 1.0]]])
    inside = torch.zeros(10, 20, dtype=torch.bool)
    inside[7, 15] = True
    beside = torch.zeros(10, 20, dtype=torch.bool)
    beside[7, 14] = True
    hits, valid = pointing_game(saliency.expand(2, 2, 2), [inside, beside], tolerance=1.0)
    assert hits.tolist() == [True, False]  # (7, 14) is at distance 1, not < 1
    assert valid.tolist() == [True, True]


def test_constant_map():
    saliency = torch.full((1, 6, 6), 0.3)
    region = torch.zeros(1, 12, 18, dtype=torch.bool)
    region[0, 4:8, 9:15] = True
    # All ties: the point is (0, 0), at distance sqrt(16 + 81) = 9.85 from (4, 9).
    assert pointing_game(saliency, region, tolerance=10.0)[0].tolist() == [True]
    assert pointing_game(saliency, region, tolerance=9.8)[0].tolist() == [False]
    assert region_auc(saliency, region)[0].item() == 0.5
    assert energy_pointing_game(saliency, region)[0].item() == pytest.approx(24 / 216, abs=1e-15)


def test_empty_and_missing_regions_are_skipped_and_flagged():
    saliency = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(4))
    full = torch.ones(8, 8, dtype=torch.bool)
    regions = [torch.zeros(8, 8, dtype=torch.bool), None, full]
    hits, valid = pointing_game(saliency, regions)
    assert hits.tolist() == [False, False, True]
    assert valid.tolist() == [False, False, True]
    energy, valid = energy_pointing_game(saliency, regions)
    assert valid.tolist() == [False, False, True]
    assert math.isnan(energy[0])
    assert math.isnan(energy[1])
    assert energy[2].item() == pytest.approx(1.0, abs=1e-15)
    auc, valid = region_auc(saliency, regions)
    assert valid.tolist() == [False, False, False]  # a full region has no outside pixel
    assert torch.isnan(auc).all()


def test_energy_counts_only_positive_mass_and_zero_maps_score_zero():
    saliency = torch.tensor(
        [
            [[3.0, -5.0], [1.0, 0.0]],
            [[0.0, 0.0], [0.0, 0.0]],
            [[-1.0, -2.0], [-3.0, -0.5]],
        ]
    )
    region = torch.tensor([[True, True], [False, False]]).expand(3, 2, 2)
    values, valid = energy_pointing_game(saliency, region)
    np.testing.assert_allclose(values.numpy(), [0.75, 0.0, 0.0], rtol=0, atol=1e-15)
    assert valid.tolist() == [True, True, True]


def test_region_auc_hand_computed_with_ties():
    saliency = torch.tensor([[[3.0, 1.0], [1.0, 0.0]], [[0.0, 1.0], [2.0, 3.0]]])
    region = torch.tensor([[True, True], [False, False]]).expand(2, 2, 2)
    values, valid = region_auc(saliency, region)
    # Inside {3, 1} vs outside {1, 0}: 3 > 1, 3 > 0, 1 = 1 (1/2), 1 > 0 -> 3.5 / 4.
    # Inside {0, 1} vs outside {2, 3}: no wins -> 0.
    assert values.tolist() == [0.875, 0.0]
    assert valid.tolist() == [True, True]


def test_outputs_follow_the_maps_dtype_and_are_float64():
    saliency = torch.rand(2, 3, 3, dtype=torch.float32)
    region = torch.ones(2, 3, 3, dtype=torch.bool)
    region[:, 0, 0] = False
    assert pointing_game(saliency, region)[0].dtype == torch.bool
    assert energy_pointing_game(saliency, region)[0].dtype == torch.float64
    assert region_auc(saliency, region)[0].dtype == torch.float64


ALL = [pointing_game, energy_pointing_game, region_auc]


@pytest.mark.parametrize("function", ALL)
@pytest.mark.parametrize(
    ("saliency", "regions", "error", "message"),
    [
        (torch.rand(2, 4, 4), torch.zeros(2, 4, 4), TypeError, r"regions must be boolean masks"),
        (
            torch.rand(2, 4, 4),
            [torch.ones(4, 4, dtype=torch.bool), torch.ones(4, 4, dtype=torch.uint8)],
            TypeError,
            r"regions\[1\] must be a boolean mask",
        ),
        (
            torch.rand(2, 4, 4),
            [torch.ones(4, 4, dtype=torch.bool)],
            ValueError,
            r"regions must hold one entry per saliency map: expected 2, got 1",
        ),
        (
            torch.rand(2, 4, 4),
            torch.ones(3, 4, 4, dtype=torch.bool),
            ValueError,
            r"regions must be a boolean tensor \[B, H, W\] with B = 2",
        ),
        (
            torch.rand(1, 4, 4),
            [torch.ones(1, 4, 4, dtype=torch.bool)],
            ValueError,
            r"regions\[0\] must be a non-empty 2-D mask",
        ),
        (torch.rand(1, 4, 4), 3, TypeError, r"regions must be a boolean tensor \[B, H, W\] or a"),
        (
            torch.rand(4, 4),
            torch.ones(4, 4, 4, dtype=torch.bool),
            ValueError,
            r"saliency must be 3-D",
        ),
        (
            torch.tensor([[[0.0, math.nan]]]),
            torch.ones(1, 1, 2, dtype=torch.bool),
            ValueError,
            r"saliency must be finite",
        ),
        (
            torch.tensor([[[0.0, -math.inf]]]),
            torch.ones(1, 1, 2, dtype=torch.bool),
            ValueError,
            r"saliency must be finite",
        ),
    ],
)
def test_bad_input_raises_a_clear_error(function, saliency, regions, error, message):
    with pytest.raises(error, match=message):
        function(saliency, regions)


@pytest.mark.parametrize(
    ("tolerance", "error", "message"),
    [
        (0, ValueError, r"tolerance must be a finite number > 0"),
        (-3.0, ValueError, r"tolerance must be a finite number > 0"),
        (math.inf, ValueError, r"tolerance must be a finite number > 0"),
        ("15", TypeError, r"tolerance must be a real number > 0"),
    ],
)
def test_bad_tolerance_raises(tolerance, error, message):
    region = torch.ones(1, 4, 4, dtype=torch.bool)
    with pytest.raises(error, match=message):
        pointing_game(torch.rand(1, 4, 4), region, tolerance=tolerance)


def test_resize_is_torch_bilinear_and_keeps_plateaus_exact():
    from torch.nn.functional import interpolate

    from sidu.resize import resize

    generator = torch.Generator().manual_seed(5)
    maps = torch.rand(2, 5, 7, generator=generator, dtype=torch.float64)
    for size in ((16, 16), (13, 29), (3, 4), (40, 9)):
        expected = interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)
        np.testing.assert_allclose(
            resize(maps, size, rule="clamp").numpy(), expected[:, 0].numpy(), atol=1e-15
        )
    # A plateau of the maximum stays a plateau of exactly equal values: the arg-max is its
    # first pixel in row-major order, whatever the rounding of the interpolation weights.
    plateau = torch.tensor([[[0.1, 0.7, 0.7], [0.2, 0.7, 0.7], [0.0, 0.3, 0.1]]])
    resized = resize(plateau, (37, 41), rule="clamp")[0]
    top = resized == resized.max()
    assert top.sum() > 50
    first = int(torch.nonzero(top)[0, 0]) * 41 + int(torch.nonzero(top)[0, 1])
    region = torch.zeros(37, 41, dtype=torch.bool)
    region.view(-1)[first] = True
    assert pointing_game(plateau, [region], tolerance=0.5)[0].tolist() == [True]
