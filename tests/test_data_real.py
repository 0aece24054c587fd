"""The real Caltech-101 and ImageNet-val subsets in ../shared/data (skipped when absent)."""

from __future__ import annotations

import pytest
import torch
from fixtures_data import fake_spec, shared_data
from PIL import Image

from sidu_bench.data import get_dataset
from sidu_bench.data.caltech101 import read_outline

ROOT = shared_data()
pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(
        not (ROOT / "caltech101").is_dir() or not (ROOT / "imagenet-val").is_dir(),
        reason=f"real subsets not found at {ROOT} (set SIDU_BENCH_SHARED_DATA)",
    ),
]


def test_every_caltech_item_loads_with_a_region():
    dataset = get_dataset("caltech101", ROOT, fake_spec(input_size=32))
    assert len(dataset) == 240
    assert len(dataset.categories) == 24
    assert "airplanes" in dataset.categories
    assert "BACKGROUND_Google" not in dataset.categories
    greyscale = overshooting = 0
    for index, record in enumerate(dataset.records):
        with Image.open(record.path) as image:
            greyscale += image.mode == "L"
        item = dataset[index]
        assert item.image.shape == (3, 32, 32)
        assert torch.isfinite(item.image).all()
        height, width = item.original_size
        assert item.region.shape == (height, width)
        assert item.region.any(), item.id
        outline = read_outline(record.annotation)
        overshooting += bool(
            (outline[:, 0] > width - 1).any()
            or (outline[:, 1] > height - 1).any()
            or (outline < 0).any()
        )
    assert greyscale == 22
    assert overshooting == 26  # outlines reaching past the last pixel centre: clipped
    assert dataset.skipped.count == 0


def test_every_imagenet_item_loads_with_a_region():
    dataset = get_dataset("imagenet-val", ROOT, fake_spec(input_size=32))
    assert len(dataset) == 40
    assert len(dataset.categories) == 39
    assert len(dataset.descriptions) == 1000
    for index in range(len(dataset)):
        item = dataset[index]
        assert item.region.shape == item.original_size
        assert item.region.any(), item.id
        assert 0 <= item.label < 1000
    assert dataset.skipped.count == 0
