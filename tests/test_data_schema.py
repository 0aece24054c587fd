"""Every registered data set honours the item contract (walks the whole registry)."""

from __future__ import annotations

import pytest
import torch
from fixtures_data import (
    fake_spec,
    standard_caltech,
    standard_folder,
    standard_imagenet,
    standard_voc,
)

from sidu_bench.data import Item, ItemDataset, Skipped, get_dataset, list_datasets

BUILDERS = {
    "caltech101": standard_caltech,
    "imagenet-val": standard_imagenet,
    "voc2007": standard_voc,
    "folder": standard_folder,
    "synthetic": lambda _root: None,
}
OPTIONS = {"synthetic": {"num_items": 7}}


def test_every_registered_data_set_has_a_fixture():
    assert sorted(BUILDERS) == list_datasets()


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_item_contract(tmp_path, name):
    spec = fake_spec(input_size=12)
    dataset = get_dataset(name, BUILDERS[name](tmp_path), spec, **OPTIONS.get(name, {}))
    assert isinstance(dataset, ItemDataset)
    assert dataset.name == name
    assert len(dataset) == len(dataset.item_ids) == len(dataset.item_categories) > 0
    assert len(set(dataset.item_ids)) == len(dataset)
    assert dataset.categories == tuple(sorted(set(dataset.item_categories)))
    assert isinstance(dataset.label_space, bool)
    assert dataset.tolerance is None or dataset.tolerance > 0
    assert isinstance(dataset.skipped, Skipped)
    assert set(dataset.skipped.ids) <= set(dataset.item_ids)
    assert sorted(dataset.order()) == list(range(len(dataset)))
    for index in range(len(dataset)):
        item = dataset[index]
        assert isinstance(item, Item)
        assert item.id == dataset.item_ids[index]
        assert item.category == dataset.item_categories[index]
        assert item.image.shape == (3, 12, 12)
        assert item.image.dtype == torch.float32
        assert isinstance(item.label, int)
        assert item.label >= -1
        h0, w0 = item.original_size
        if item.region is None:
            assert dataset.tolerance is None
        else:
            assert item.region.dtype == torch.bool
            assert item.region.shape == (h0, w0)
            assert bool(item.region.any()) == (item.id not in dataset.skipped.ids)


def test_unknown_data_set_lists_close_names():
    with pytest.raises(ValueError, match=r"unknown data set 'caltech'.*caltech101"):
        get_dataset("caltech", None, fake_spec())
    with pytest.raises(ValueError, match=r"imagenet-val"):
        get_dataset("imagenet_val", None, fake_spec())
