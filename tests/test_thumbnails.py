"""Per-item thumbnails and the stacked figure data (issue 24, item 1).

Every numeric routine is checked against a plain float64 loop: area downsampling, min-max
scaling to 8 bits, the jet colour map and the region outline.
"""

import itertools
import math
import zipfile

import numpy as np
import pytest
import torch

from sidu_bench.html_report.strips import jet, outline, strip_image, strip_tiles
from sidu_bench.runner.folder import RunFolder, delta_decode, delta_encode
from sidu_bench.runner.thumbnails import (
    THUMBNAIL_SIZE,
    image_thumbnails,
    map_thumbnails,
    scaled_map,
    shrink,
)


def area_reference(array: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Area downsampling of ``[H, W]`` by a plain loop: each output pixel averages the input
    pixels from floor(i H / h) to ceil((i + 1) H / h) (adaptive average pooling)."""
    height, width = array.shape
    result = np.zeros((out_h, out_w))
    for i in range(out_h):
        top, bottom = math.floor(i * height / out_h), math.ceil((i + 1) * height / out_h)
        for j in range(out_w):
            left, right = math.floor(j * width / out_w), math.ceil((j + 1) * width / out_w)
            total = 0.0
            for y in range(top, bottom):
                for x in range(left, right):
                    total += float(array[y, x])
            result[i, j] = total / ((bottom - top) * (right - left))
    return result


@pytest.mark.parametrize(("height", "width"), [(224, 224), (100, 150), (64, 64), (30, 20)])
def test_shrink_is_area_averaging(height, width):
    array = np.random.default_rng(height + width).random((height, width))
    shrunk = shrink(torch.from_numpy(array)[None], THUMBNAIL_SIZE)[0].numpy()
    factor = max(height, width) / THUMBNAIL_SIZE
    if factor <= 1:
        np.testing.assert_array_equal(shrunk, array)
        return
    expected_shape = (round(height / factor), round(width / factor))
    assert shrunk.shape == expected_shape
    assert max(shrunk.shape) == THUMBNAIL_SIZE
    np.testing.assert_allclose(shrunk, area_reference(array, *expected_shape), atol=1e-12)


def test_scaled_map_is_min_max_in_8_bits():
    saliency = np.random.default_rng(1).normal(size=(224, 224))
    small = area_reference(saliency, 64, 64)
    low, high = small.min(), small.max()
    expected = np.zeros((64, 64), dtype=np.uint8)
    for y in range(64):
        for x in range(64):
            expected[y, x] = math.floor((small[y, x] - low) / (high - low) * 255 + 0.5)
    got = scaled_map(torch.from_numpy(saliency), 64)
    assert got.dtype == np.uint8
    # float32 arithmetic against float64: a value at a .5 boundary may round the other way
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    assert (got == expected).mean() > 0.99
    assert got.min() == 0
    assert got.max() == 255
    assert scaled_map(torch.full((10, 10), 3.0), 64).tolist() == [[0] * 10] * 10


def test_image_thumbnails_undo_the_normalisation_and_keep_the_region():
    rng = np.random.default_rng(2)
    pixels = rng.random((3, 128, 96))
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    normalised = (pixels - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    region = np.zeros((128, 96), dtype=bool)
    region[20:70, 10:50] = True
    arrays = image_thumbnails(
        torch.from_numpy(normalised).float(), torch.from_numpy(region), mean, std
    )
    assert arrays["thumbnail"].shape == (64, 48, 3)
    assert arrays["thumbnail"].dtype == np.uint8
    for channel in range(3):
        expected = np.clip(area_reference(pixels[channel], 64, 48), 0, 1) * 255
        assert np.abs(arrays["thumbnail"][..., channel] - expected).max() <= 0.51
    coverage = area_reference(region.astype(float), 64, 48) * 255
    assert np.abs(arrays["thumbnail_region"].astype(float) - coverage).max() <= 0.51
    assert "thumbnail_region" not in image_thumbnails(torch.zeros(3, 8, 8), None, mean, std)


def test_map_thumbnails_only_from_full_size_float_maps():
    arrays = {
        "map@sidu": np.random.default_rng(3).random((224, 224)).astype(np.float16),
        "map@done": np.zeros((112, 112), dtype=np.uint8),
        "insertion@sidu": np.zeros(9),
    }
    thumbnails = map_thumbnails(arrays)
    assert list(thumbnails) == ["thumbnail@sidu"]
    assert thumbnails["thumbnail@sidu"].shape == (64, 64)


def jet_reference(value: float) -> tuple[float, float, float]:
    anchors = [
        (0.0, (0.0, 0.0, 0.5)),
        (0.125, (0.0, 0.0, 1.0)),
        (0.375, (0.0, 1.0, 1.0)),
        (0.625, (1.0, 1.0, 0.0)),
        (0.875, (1.0, 0.0, 0.0)),
        (1.0, (0.5, 0.0, 0.0)),
    ]
    for (x0, c0), (x1, c1) in itertools.pairwise(anchors):
        if x0 <= value <= x1:
            t = (value - x0) / (x1 - x0)
            return tuple(a + t * (b - a) for a, b in zip(c0, c1, strict=True))
    raise AssertionError(value)


def test_jet_against_the_piecewise_linear_definition():
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    colours = jet(values)
    for y in range(16):
        for x in range(16):
            np.testing.assert_allclose(colours[y, x], jet_reference(values[y, x] / 255), atol=1e-12)


def test_outline_against_a_loop():
    region = (np.random.default_rng(4).random((20, 24)) > 0.4).astype(np.uint8) * 255
    inside = region >= 128
    expected = np.zeros_like(inside)
    for y in range(20):
        for x in range(24):
            if not inside[y, x]:
                continue
            neighbours = [(y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)]
            expected[y, x] = any(
                not (0 <= ny < 20 and 0 <= nx < 24) or not inside[ny, nx] for ny, nx in neighbours
            )
    np.testing.assert_array_equal(outline(region), expected)


def test_strip_tiles_and_blend():
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    region = np.zeros((64, 64), dtype=np.uint8)
    region[10:30, 10:30] = 255
    saliency = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    arrays = {"thumbnail": image, "thumbnail_region": region, "thumbnail@a": saliency}
    tiles = strip_tiles(arrays, ["a", "b"])
    strip = strip_image(*tiles, ["a", "b"])
    assert strip.shape == (64, 64 * 3, 3)
    assert (strip[10, 10] == [0, 255, 0]).all()  # the outline
    np.testing.assert_array_equal(strip[40, 40], image[40, 40])  # outside it: the image
    expected = np.round((0.5 * image[5, 7] / 255 + 0.5 * jet(saliency[5:6, 7:8])[0, 0]) * 255)
    np.testing.assert_array_equal(strip[5, 64 + 7], expected)
    assert (strip[:, 128:] == 128).all()  # "b" has no map: a grey tile
    assert strip_tiles({"insertion@a": np.zeros(3)}, ["a"]) is None


def test_strip_tiles_of_a_run_made_before_thumbnails():
    """Its sample items kept 112-px overlay arrays: they are shrunk to thumbnails."""
    arrays = {
        "rgb": np.full((112, 112, 3), 200, dtype=np.uint8),
        "region": np.ones((224, 224), dtype=bool),
        "map@a": np.full((112, 112), 9, dtype=np.uint8),
    }
    image, region, maps = strip_tiles(arrays, ["a"])
    assert image.shape == (64, 64, 3)
    assert region.shape == (64, 64)
    assert (region == 255).all()
    assert maps["a"].shape == (64, 64)


def random_items(rng, count):
    items = {}
    for index in range(count):
        arrays = {
            "insertion@sidu": rng.random(9).astype(np.float16),
            "thumbnail": rng.integers(0, 256, (4, 5, 3), dtype=np.uint8),
        }
        if index % 2:
            arrays["rgb"] = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        if index % 3 == 0:  # shapes differ between items: kept per item
            arrays["odd"] = rng.random(index + 1)
        items[f"id,{index}|x/%"] = arrays
    return items


def test_figure_data_round_trips_stacked(tmp_path):
    folder = RunFolder(tmp_path)
    items = random_items(np.random.default_rng(6), 7)
    folder.write_figure_data(0, 1, items)
    back = folder.figure_data()
    assert list(back) == list(items)
    for item_id, arrays in items.items():
        assert sorted(back[item_id]) == sorted(arrays)
        for key, value in arrays.items():
            assert back[item_id][key].dtype == value.dtype
            np.testing.assert_array_equal(back[item_id][key], value)
    with zipfile.ZipFile(tmp_path / "figure_data.npz") as archive:
        entries = archive.namelist()
    # ids, keys, delta list, 3 stacked keys (one with positions), 3 per-item entries of "odd"
    assert len(entries) == 3 + 3 + 1 + 3


def test_delta_encoding_against_a_loop():
    stack = np.random.default_rng(7).integers(0, 256, (3, 5, 6, 3), dtype=np.uint8)
    expected = np.zeros_like(stack)
    for n in range(3):
        for y in range(5):
            for x in range(6):
                for c in range(3):

                    def at(yy, xx, n=n, c=c):
                        return int(stack[n, yy, xx, c]) if yy >= 0 and xx >= 0 else 0

                    value = at(y, x) - at(y - 1, x) - at(y, x - 1) + at(y - 1, x - 1)
                    expected[n, y, x, c] = value % 256
    encoded = delta_encode(stack)
    np.testing.assert_array_equal(encoded, expected)
    np.testing.assert_array_equal(delta_decode(encoded), stack)


def test_figure_data_of_the_per_item_layout_is_still_read(tmp_path):
    """Files written before stacking hold one entry per item and key."""
    curve = np.arange(5, dtype=np.float16)
    np.savez_compressed(tmp_path / "figure_data.npz", **{"a%2Fb|insertion@sidu": curve})
    back = RunFolder(tmp_path).figure_data()
    np.testing.assert_array_equal(back["a/b"]["insertion@sidu"], curve)


def test_figure_data_with_inconsistent_positions_is_named_corrupt(tmp_path):
    content = {
        "__ids__": np.array(["a", "b"]),
        "__keys__": np.array(["k"]),
        "k0": np.zeros((2, 3)),
        "k0.items": np.array([0], dtype=np.int32),
    }
    np.savez_compressed(tmp_path / "figure_data.npz", **content)
    with pytest.raises(ValueError, match=r"corrupt figure data .*figure_data\.npz"):
        RunFolder(tmp_path).figure_data()
