"""VOC 2007 test on fixtures in the real format: 1-based boxes, difficult as TorchRay, pairs."""

from __future__ import annotations

import re

import pytest
import torch
from fixtures_data import VOC_REGIONS, fake_spec, mask_from_rows, standard_voc

from sidu_bench.data import get_dataset
from sidu_bench.data.voc2007 import VOC_CLASSES, read_objects


@pytest.fixture
def root(tmp_path):
    return standard_voc(tmp_path)


def test_one_item_per_image_and_class(root):
    dataset = get_dataset("voc2007", root, fake_spec())
    assert dataset.item_ids == tuple(VOC_REGIONS)
    assert dataset.categories == ("dog", "person")
    for index, item_id in enumerate(dataset.item_ids):
        item = dataset[index]
        assert torch.equal(item.region, mask_from_rows(VOC_REGIONS[item_id])), item_id
        assert item.category == item_id.split("/")[1]
        assert item.label == VOC_CLASSES.index(item.category)
    assert dataset.skipped.count == 0
    assert not dataset.label_space


def test_label_space_for_a_voc_model(root):
    spec = fake_spec(class_names=VOC_CLASSES, class_space="voc2007")
    assert get_dataset("voc2007", root, spec).label_space


def test_corrupt_xml_leaves_the_image_out_and_names_the_file(root):
    path = root / "VOCdevkit/VOC2007/Annotations/000002.xml"
    path.write_text("<annotation><object>", encoding="utf-8")
    dataset = get_dataset("voc2007", root, fake_spec())
    assert dataset.item_ids == ("000001/dog", "000001/person")
    (unreadable,) = dataset.unreadable
    assert (unreadable.item_id, unreadable.file) == ("000002", str(path))
    assert re.search(r"corrupt annotation: corrupt VOC annotation .*000002\.xml", unreadable.reason)
    with pytest.raises(ValueError, match=r"corrupt VOC annotation .*000002\.xml"):
        read_objects(path)


def test_unknown_class_names_the_file(root):
    path = root / "VOCdevkit/VOC2007/Annotations/000002.xml"
    path.write_text(path.read_text(encoding="utf-8").replace("person", "alien"), encoding="utf-8")
    (unreadable,) = get_dataset("voc2007", root, fake_spec()).unreadable
    assert re.search(r"000002\.xml.*alien", unreadable.reason)


def test_missing_split_shows_the_layout(root):
    with pytest.raises(FileNotFoundError, match=r"ImageSets/Main/val\.txt"):
        get_dataset("voc2007", root, fake_spec(), split="val")
