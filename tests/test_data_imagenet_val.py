"""ImageNet-val on fixtures in the ILSVRC localisation layout: 0-based inclusive boxes, clipping."""

from __future__ import annotations

import re

import pytest
import torch
from fixtures_data import (
    IMAGENET_REGIONS,
    IMAGENET_SYNSETS,
    fake_spec,
    mask_from_rows,
    standard_imagenet,
)

from sidu_bench.data import get_dataset
from sidu_bench.data.imagenet_val import read_solution, read_synsets


@pytest.fixture
def root(tmp_path):
    return standard_imagenet(tmp_path)


def test_items_regions_and_labels(root):
    dataset = get_dataset("imagenet-val", root, fake_spec())
    assert dataset.item_ids == tuple(IMAGENET_REGIONS)
    assert dataset.categories == IMAGENET_SYNSETS
    expected_labels = [1, 0, 2]
    for index, item_id in enumerate(dataset.item_ids):
        item = dataset[index]
        assert torch.equal(item.region, mask_from_rows(IMAGENET_REGIONS[item_id])), item_id
        assert item.label == expected_labels[index]
        assert item.category == IMAGENET_SYNSETS[expected_labels[index]]
    assert dataset.skipped.ids == ("ILSVRC2012_val_00000003",)
    assert dataset.descriptions["n00000001"] == "description of n00000001, other name"
    assert not dataset.label_space


def test_label_space_needs_an_imagenet_model(root):
    spec = fake_spec(class_names=("a", "b", "c"), class_space="imagenet-1k")
    assert get_dataset("imagenet-val", root, spec).label_space


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("ILSVRC2012_val_00000001,n00000002 0 0 2", "line 2"),
        ("ILSVRC2012_val_00000001,n00000002 0 0 x 1", "line 2"),
        ("ILSVRC2012_val_00000001,n09999999 0 0 2 1", "unknown wnid"),
    ],
)
def test_corrupt_solution_row_leaves_its_image_out_and_names_the_file(root, row, message):
    solution = root / "imagenet-val" / "LOC_val_solution.csv"
    lines = solution.read_text(encoding="utf-8").splitlines()
    lines[1] = row
    solution.write_text("\n".join(lines) + "\n", encoding="utf-8")
    dataset = get_dataset("imagenet-val", root, fake_spec())
    assert "ILSVRC2012_val_00000001" not in dataset.item_ids
    assert len(dataset) == 2
    (unreadable,) = dataset.unreadable
    assert unreadable.item_id == "ILSVRC2012_val_00000001"
    assert unreadable.file == str(solution)
    assert re.search(rf"LOC_val_solution\.csv.*{message}", unreadable.reason)
    synsets = read_synsets(root / "imagenet-val" / "LOC_synset_mapping.txt")
    with pytest.raises(ValueError, match=rf"LOC_val_solution\.csv.*{message}"):
        read_solution(solution, synsets)


def test_image_without_row_is_left_out_and_named(root):
    solution = root / "imagenet-val" / "LOC_val_solution.csv"
    lines = solution.read_text(encoding="utf-8").splitlines()
    solution.write_text("\n".join(lines[:1] + lines[2:]) + "\n", encoding="utf-8")
    dataset = get_dataset("imagenet-val", root, fake_spec())
    (unreadable,) = dataset.unreadable
    assert unreadable.item_id == "ILSVRC2012_val_00000001"
    assert unreadable.reason == "no row for ILSVRC2012_val_00000001.JPEG"


def test_missing_root_shows_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="imagenet-val/ILSVRC/Data/CLS-LOC/val"):
        get_dataset("imagenet-val", tmp_path, fake_spec())
