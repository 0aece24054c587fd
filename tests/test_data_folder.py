"""ImageFolder trees: items without regions."""

from __future__ import annotations

import pytest
from fixtures_data import fake_spec, standard_folder

from sidu_bench.data import get_dataset


def test_items_have_no_region(tmp_path):
    tree = standard_folder(tmp_path)
    dataset = get_dataset("folder", tree, fake_spec())
    assert dataset.item_ids == ("cat/a.png", "cat/sub/b.jpg", "dog/c.png")
    assert dataset.categories == ("cat", "dog")
    assert dataset.tolerance is None
    item = dataset[2]
    assert item.region is None
    assert item.original_size == (6, 2)
    assert item.label == 1
    assert dataset.skipped.count == 0
    assert not dataset.label_space


def test_labels_follow_a_model_with_the_class_names(tmp_path):
    tree = standard_folder(tmp_path)
    dataset = get_dataset("folder", tree, fake_spec(class_names=("dog", "bird", "cat")))
    assert dataset.label_space
    assert [dataset[i].label for i in range(3)] == [2, 2, 0]


def test_missing_root_shows_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="ImageFolder"):
        get_dataset("folder", tmp_path / "absent", fake_spec())
