"""The synthetic shapes data set: determinism, exact masks, id ranges, item contract."""

from __future__ import annotations

import pytest
import torch
from fixtures_data import fake_spec

from sidu_bench.data import get_dataset
from sidu_bench.data.synthetic import HOLDOUT_START, TRAIN_START, render, render_batch
from sidu_bench.domains import SHAPES_CLASS_NAMES as CLASS_NAMES
from sidu_bench.domains import SHAPES_CLASS_SPACE as CLASS_SPACE


def test_render_is_deterministic_in_seed_and_index():
    a, b = render(7, seed=3), render(7, seed=3)
    assert torch.equal(a.image, b.image)
    assert torch.equal(a.mask, b.mask)
    assert not torch.equal(render(7, seed=4).image, a.image)
    assert not torch.equal(render(13, seed=3).image, a.image)


def test_label_cycles_with_the_index_and_batches_match_items():
    images, masks, labels = render_batch(range(12), seed=0)
    assert labels.tolist() == [i % len(CLASS_NAMES) for i in range(12)]
    assert torch.equal(images[5], render(5).image)
    assert torch.equal(masks[5], render(5).mask)


@pytest.mark.parametrize("index", range(6))
def test_mask_is_exactly_the_object(index):
    sample = render(index, seed=1)
    assert sample.image.shape == (3, 64, 64)
    assert float(sample.image.min()) >= 0
    assert float(sample.image.max()) <= 1
    area = int(sample.mask.sum())
    assert 60 <= area <= 700
    rows, cols = sample.mask.nonzero(as_tuple=True)
    assert rows.min() > 0
    assert cols.min() > 0
    assert rows.max() < 63
    assert cols.max() < 63
    inside = sample.image[:, sample.mask]
    if CLASS_NAMES[sample.label] == "checker":
        # Two complementary colours: every object pixel is one of them.
        first = inside[:, :1]
        assert bool(
            ((inside - first).abs().amax(0) < 1e-6)
            .logical_or((inside + first - 1).abs().amax(0) < 1e-6)
            .all()
        )
    else:
        assert bool((inside == inside[:, :1]).all())


def test_id_ranges_are_disjoint_and_items_match_renders():
    dataset = get_dataset("synthetic", None, fake_spec(input_size=64), num_items=12, seed=2)
    assert len(dataset) == 12 < TRAIN_START < HOLDOUT_START
    item = dataset[4]
    sample = render(4, seed=2)
    assert item.id == "synthetic/0000004"
    assert torch.equal(item.region, sample.mask)
    assert torch.allclose(item.image, (sample.image - 0.5) / 0.25)
    assert item.category == CLASS_NAMES[4]
    assert item.original_size == (64, 64)
    assert dataset.tolerance == pytest.approx(15 * 64 / 224)
    assert dataset.skipped.count == 0
    assert not dataset.label_space
    assert item.label == 4


def test_label_space_with_the_synthetic_model_space():
    spec = fake_spec(class_names=CLASS_NAMES, class_space=CLASS_SPACE, input_size=32)
    dataset = get_dataset("synthetic", None, spec, num_items=6)
    assert dataset.label_space
    item = dataset[3]
    assert item.label == 3
    assert item.image.shape == (3, 32, 32)


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="num_items"):
        get_dataset("synthetic", None, fake_spec(), num_items=0)
    with pytest.raises(IndexError):
        get_dataset("synthetic", None, fake_spec(), num_items=3)[3]
