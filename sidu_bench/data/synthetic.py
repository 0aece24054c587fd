"""Synthetic shapes with exact object masks: the offline default data set.

Each image (64 x 64 by default) is generated from ``(seed, index)`` alone:

- a cluttered background: a mid-grey base colour with smooth colour variations at two scales and
  pixel noise;
- 2-4 distractors that carry no class information: thin bars and small dots, in the same vivid
  colours as the objects, anywhere in the image (the object is drawn over them);
- one class-defining object: a shape (disc, square, triangle, cross, star) or a texture (a
  checkerboard square), vivid colour, random rotation, circumradius 8-14 px, fully inside the
  image at a uniformly random position.

The region is exactly the object's pixels. The class is ``index % 6``; evaluation items use indices
``[0, num_items)``, training items start at ``TRAIN_START`` and held-out accuracy checks at
``HOLDOUT_START``, so they never overlap.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn import functional

from sidu_bench.data.items import REAL_DATA_TOLERANCE, Item, ItemDataset, Preprocessing
from sidu_bench.data.regions import polygon_mask
from sidu_bench.data.registry import register_dataset
from sidu_bench.domains import (
    SHAPES_CLASS_NAMES,
    SHAPES_CLASS_SPACE,
    SHAPES_IMAGE_SIZE,
    SYNTHETIC_SHAPES,
)

DEFAULT_ITEMS = 48
TRAIN_START = 1_000_000
HOLDOUT_START = 2_000_000

_RADIUS = (8.0, 14.0)
_REFERENCE_SIZE = 224


@dataclass(frozen=True)
class Sample:
    """A rendered synthetic image: ``image`` float ``[3, S, S]`` in ``[0, 1]``, exact ``mask``."""

    image: torch.Tensor
    mask: torch.Tensor
    label: int


def item_generator(seed: int, index: int) -> torch.Generator:
    """A torch generator seeded from ``(seed, index)`` through SHA-256 (stable across runs)."""
    digest = hashlib.sha256(f"sidu-bench/synthetic/{seed}/{index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g, dtype=torch.float64))


def _vivid(g: torch.Generator) -> torch.Tensor:
    """A colour whose channels are each near 0 or near 1: far from the mid-grey background."""
    high = torch.rand(3, generator=g) < 0.5
    return torch.where(
        high, 0.85 + 0.15 * torch.rand(3, generator=g), 0.15 * torch.rand(3, generator=g)
    )


def _background(g: torch.Generator, size: int) -> torch.Tensor:
    base = 0.3 + 0.4 * torch.rand(3, 1, 1, generator=g)
    coarse = functional.interpolate(
        0.12 * torch.randn(1, 3, 4, 4, generator=g), size=(size, size), mode="bilinear"
    )
    fine = functional.interpolate(
        0.06 * torch.randn(1, 3, 12, 12, generator=g), size=(size, size), mode="bilinear"
    )
    noise = 0.03 * torch.randn(3, size, size, generator=g)
    return (base + coarse[0] + fine[0] + noise).clamp(0.15, 0.85)


def _regular(cx: float, cy: float, radii: Sequence[float], angle: float) -> torch.Tensor:
    """Polygon with vertices at equal angular steps and the given radii, ``[N, 2]`` as (x, y)."""
    steps = torch.arange(len(radii), dtype=torch.float64) * (2 * math.pi / len(radii)) + angle
    r = torch.tensor(radii, dtype=torch.float64)
    return torch.stack([cx + r * torch.cos(steps), cy + r * torch.sin(steps)], dim=1)


def _rotated(
    cx: float, cy: float, corners: Sequence[Sequence[float]], angle: float
) -> torch.Tensor:
    """Polygon ``corners`` (relative, unrotated) rotated by ``angle`` and moved to ``(cx, cy)``."""
    c = torch.tensor(corners, dtype=torch.float64)
    cos, sin = math.cos(angle), math.sin(angle)
    x = cx + c[:, 0] * cos - c[:, 1] * sin
    y = cy + c[:, 0] * sin + c[:, 1] * cos
    return torch.stack([x, y], dim=1)


def _shape_mask(
    label: int, cx: float, cy: float, r: float, angle: float, size: int
) -> torch.Tensor:
    if label == 0:
        coords = torch.arange(size, dtype=torch.float64)
        return (coords[None, :] - cx) ** 2 + (coords[:, None] - cy) ** 2 <= (0.85 * r) ** 2
    if label in (1, 5):
        h = r / math.sqrt(2)
        return polygon_mask(
            _rotated(cx, cy, [[-h, -h], [h, -h], [h, h], [-h, h]], angle), (size, size)
        )
    if label == 2:
        return polygon_mask(_regular(cx, cy, [r] * 3, angle), (size, size))
    if label == 3:
        a, t = 0.95 * r, 0.32 * r
        arms = [[t, -a], [t, -t], [a, -t], [a, t], [t, t], [t, a]]
        corners = arms + [[-x, -y] for x, y in arms]
        return polygon_mask(_rotated(cx, cy, corners, angle), (size, size))
    return polygon_mask(_regular(cx, cy, [r, 0.45 * r] * 5, angle), (size, size))


def _checker(cx: float, cy: float, r: float, angle: float, size: int) -> torch.Tensor:
    """Parity of the 3 x 3 checkerboard cells of the rotated square, per pixel."""
    coords = torch.arange(size, dtype=torch.float64)
    dx, dy = coords[None, :] - cx, coords[:, None] - cy
    u = dx * math.cos(angle) + dy * math.sin(angle)
    v = -dx * math.sin(angle) + dy * math.cos(angle)
    cell = 2 * r / math.sqrt(2) / 3
    # floor(a) as -ceil(-a): torch's float64 floor is ~500x slower than ceil on CPU.
    return (torch.ceil(-u / cell - 1.5) + torch.ceil(-v / cell - 1.5)) % 2 == 0


def _distractor(g: torch.Generator, size: int) -> torch.Tensor:
    """A thin bar (half-length 4-9 px) or a small dot (radius 1.5-3.5 px) at 64 px, scaled."""
    scale = size / SHAPES_IMAGE_SIZE
    cx, cy = _uniform(g, 0, size - 1), _uniform(g, 0, size - 1)
    angle = _uniform(g, 0, math.pi)
    if torch.rand((), generator=g) < 0.5:
        length, width = _uniform(g, 4.0, 9.0) * scale, _uniform(g, 0.75, 1.5) * scale
        corners = [[-length, -width], [length, -width], [length, width], [-length, width]]
        return polygon_mask(_rotated(cx, cy, corners, angle), (size, size))
    return _shape_mask(0, cx, cy, _uniform(g, 1.5, 3.5) * scale / 0.85, angle, size)


def render(index: int, *, seed: int = 0, size: int = SHAPES_IMAGE_SIZE) -> Sample:
    """Render synthetic item ``index`` deterministically from ``(seed, index)``.

    Example:
        >>> sample = render(3, seed=0)
        >>> sample.image.shape, sample.mask.dtype, SHAPES_CLASS_NAMES[sample.label]
        (torch.Size([3, 64, 64]), torch.bool, 'cross')
    """
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    g = item_generator(seed, index)
    label = index % len(SHAPES_CLASS_NAMES)
    image = _background(g, size)
    for _ in range(int(torch.randint(2, 5, (), generator=g))):
        image[:, _distractor(g, size)] = _vivid(g)[:, None]
    scale = size / SHAPES_IMAGE_SIZE
    r = _uniform(g, _RADIUS[0] * scale, _RADIUS[1] * scale)
    cx, cy = _uniform(g, r, size - 1 - r), _uniform(g, r, size - 1 - r)
    angle = _uniform(g, 0, 2 * math.pi)
    colour = _vivid(g)
    mask = _shape_mask(label, cx, cy, r, angle, size)
    if label == 5:
        paint = torch.where(
            _checker(cx, cy, r, angle, size), colour[:, None, None], 1 - colour[:, None, None]
        )
        image = torch.where(mask, paint.to(image.dtype), image)
    else:
        image[:, mask] = colour[:, None]
    return Sample(image=image, mask=mask, label=label)


def render_batch(
    indices: Sequence[int], *, seed: int = 0, size: int = SHAPES_IMAGE_SIZE
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Render several items: images ``[B, 3, S, S]``, masks ``[B, S, S]``, labels ``[B]``."""
    samples = [render(i, seed=seed, size=size) for i in indices]
    return (
        torch.stack([s.image for s in samples]),
        torch.stack([s.mask for s in samples]),
        torch.tensor([s.label for s in samples]),
    )


def _item_id(index: int) -> str:
    return f"synthetic/{index:07d}"


@register_dataset("synthetic")
class SyntheticShapes(ItemDataset):
    """The synthetic shapes data set (items ``0 .. num_items - 1``); needs no files.

    Its pointing-game tolerance is 15 px scaled from 224 px to the image size (about 4.3 px at
    64 px).
    """

    name = "synthetic"
    class_space = SHAPES_CLASS_SPACE
    domain = SYNTHETIC_SHAPES
    default_model = "synthetic_cnn"
    needs_root = False

    def __init__(
        self,
        root: Path | None = None,
        *,
        preprocessing: Preprocessing,
        num_items: int = DEFAULT_ITEMS,
        seed: int = 0,
        size: int = SHAPES_IMAGE_SIZE,
    ) -> None:
        if not 0 < num_items <= TRAIN_START:
            raise ValueError(f"num_items must be in 1..{TRAIN_START}, got {num_items}")
        if size < SHAPES_IMAGE_SIZE // 2:
            raise ValueError(f"size must be >= {SHAPES_IMAGE_SIZE // 2}, got {size}")
        label_space, labels = preprocessing.labels(SHAPES_CLASS_NAMES, class_space=self.class_space)
        super().__init__(
            preprocessing=preprocessing,
            item_ids=[_item_id(i) for i in range(num_items)],
            item_categories=[
                SHAPES_CLASS_NAMES[i % len(SHAPES_CLASS_NAMES)] for i in range(num_items)
            ],
            tolerance=REAL_DATA_TOLERANCE * size / _REFERENCE_SIZE,
            label_space=label_space,
        )
        self.num_items = num_items
        self.seed = seed
        self.size = size
        self.labels = labels

    def region_of(self, index: int) -> torch.Tensor:
        """The exact object mask of item ``index``."""
        return render(self._check(index), seed=self.seed, size=self.size).mask

    def __getitem__(self, index: int) -> Item:
        """Render item ``index`` and preprocess it for the model."""
        sample = render(self._check(index), seed=self.seed, size=self.size)
        category = SHAPES_CLASS_NAMES[sample.label]
        return Item(
            id=_item_id(index),
            image=self.preprocessing.transform(sample.image),
            label=self.labels[category],
            category=category,
            region=sample.mask,
            original_size=(self.size, self.size),
        )

    def _check(self, index: int) -> int:
        if not 0 <= index < self.num_items:
            raise IndexError(f"index {index} out of range for {self.num_items} items")
        return index
