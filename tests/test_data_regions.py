"""Polygon and box rasterisation against hand-computed masks and a brute-force reference."""

from __future__ import annotations

import math

import pytest
import torch
from fixtures_data import mask_from_rows

from sidu_bench.data.regions import box_mask, boxes_mask, polygon_mask


def reference_polygon_mask(
    vertices: list[tuple[float, float]], height: int, width: int
) -> torch.Tensor:
    """Pixel by pixel: non-zero winding number (Sunday) or distance to an edge <= 1e-9."""
    n = len(vertices)
    mask = torch.zeros(height, width, dtype=torch.bool)
    for row in range(height):
        for col in range(width):
            winding, on_edge = 0, False
            for i in range(n):
                (x0, y0), (x1, y1) = vertices[i], vertices[(i + 1) % n]
                dx, dy = x1 - x0, y1 - y0
                length2 = dx * dx + dy * dy
                t = (
                    0.0
                    if length2 == 0
                    else max(0.0, min(1.0, ((col - x0) * dx + (row - y0) * dy) / length2))
                )
                if math.hypot(x0 + t * dx - col, y0 + t * dy - row) <= 1e-9:
                    on_edge = True
                cross = dx * (row - y0) - (col - x0) * dy
                if y0 <= row < y1 and cross > 0:
                    winding += 1
                elif y1 <= row < y0 and cross < 0:
                    winding -= 1
            mask[row, col] = on_edge or winding != 0
    return mask


def test_rectangle_includes_boundary_centres():
    mask = polygon_mask([[1, 1], [4, 1], [4, 3], [1, 3]], (5, 6))
    expected = mask_from_rows(
        [
            "......",
            ".####.",
            ".####.",
            ".####.",
            "......",
        ]
    )
    assert torch.equal(mask, expected)


def test_triangle_with_hypotenuse_through_centres():
    # x + y <= 4 with x, y >= 0: the hypotenuse passes through pixel centres, which count.
    mask = polygon_mask([[0, 0], [4, 0], [0, 4]], (6, 6))
    expected = mask_from_rows(
        [
            "#####.",
            "####..",
            "###...",
            "##....",
            "#.....",
            "......",
        ]
    )
    assert torch.equal(mask, expected)


def test_fractional_polygon_covers_only_inside_centres():
    mask = polygon_mask([[0.5, 0.5], [3.5, 0.5], [3.5, 2.4], [0.5, 2.4]], (4, 5))
    expected = mask_from_rows(
        [
            ".....",
            ".###.",
            ".###.",
            ".....",
        ]
    )
    assert torch.equal(mask, expected)


def test_polygon_past_the_edge_is_clipped():
    mask = polygon_mask([[-3, -2], [2, -2], [2, 1], [-3, 1]], (3, 4))
    expected = mask_from_rows(
        [
            "###.",
            "###.",
            "....",
        ]
    )
    assert torch.equal(mask, expected)


def test_polygon_fully_outside_or_degenerate_is_empty():
    assert not polygon_mask([[10, 10], [12, 10], [12, 12]], (5, 5)).any()
    assert not polygon_mask([[0, 2.5], [4, 2.5], [2, 2.5]], (5, 5)).any()


def test_degenerate_polygon_on_a_row_of_centres_keeps_its_boundary():
    mask = polygon_mask([[1, 2], [3, 2]], (4, 5))
    assert torch.equal(mask, mask_from_rows([".....", ".....", ".###.", "....."]))


def test_self_intersecting_polygon_uses_non_zero_winding():
    # A pentagram: even-odd would leave the central pentagon empty, non-zero winding fills it.
    star = [
        (5 + 5 * math.sin(4 * math.pi * k / 5), 5 - 5 * math.cos(4 * math.pi * k / 5))
        for k in range(5)
    ]
    mask = polygon_mask(star, (11, 11))
    assert mask[5, 5]
    assert torch.equal(mask, reference_polygon_mask(star, 11, 11))


@pytest.mark.parametrize("seed", range(12))
def test_random_polygons_match_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(3, 9, (), generator=g))
    if seed % 2:
        points = torch.randint(-2, 13, (n, 2), generator=g).double()
    else:
        points = torch.rand(n, 2, generator=g, dtype=torch.float64) * 14 - 2
    vertices = [(float(x), float(y)) for x, y in points]
    assert torch.equal(polygon_mask(vertices, (10, 11)), reference_polygon_mask(vertices, 10, 11))


def test_box_is_inclusive_and_clipped():
    expected = mask_from_rows(
        [
            ".##.",
            ".##.",
            "....",
        ]
    )
    assert torch.equal(box_mask([1, 0, 2, 1], (3, 4)), expected)
    assert torch.equal(box_mask([2, 1, 3, 2], (3, 4), one_based=True), expected)
    assert torch.equal(box_mask([1, -5, 2, 1], (3, 4)), expected)
    clipped = box_mask([2, 1, 9, 9], (3, 4))
    assert torch.equal(clipped, mask_from_rows(["....", "..##", "..##"]))


def test_degenerate_and_outside_boxes_are_empty():
    assert not box_mask([5, 0, 8, 2], (3, 4)).any()
    assert not box_mask([1.2, 0, 1.8, 2], (3, 4)).any()
    assert box_mask([1, 2, 1, 2], (3, 4)).sum() == 1


def test_boxes_union():
    mask = boxes_mask([[0, 0, 0, 0], [3, 2, 3, 2]], (3, 4))
    assert torch.equal(mask, mask_from_rows(["#...", "....", "...#"]))


def test_bad_arguments_name_the_problem():
    with pytest.raises(ValueError, match="vertices must have shape"):
        polygon_mask([1, 2, 3], (3, 3))
    with pytest.raises(ValueError, match="size must be"):
        polygon_mask([[0, 0], [1, 1], [0, 1]], (3,))
