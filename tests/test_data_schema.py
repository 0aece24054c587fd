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

from sidu_bench.data import Item, ItemDataset, Preprocessing, Skipped, get_dataset, list_datasets
from sidu_bench.data.images import preprocess

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


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_a_data_set_takes_a_transform_and_class_names_without_a_model(tmp_path, name):
    """Any transform and class list will do: no ModelSpec is needed to build a data set."""

    def transform(image):
        small = torch.nn.functional.interpolate(image[None].float(), size=(5, 7), mode="area")
        return small[0] * 2.0

    preparation = Preprocessing(transform, class_names=("x", "y"))
    root = BUILDERS[name](tmp_path)
    dataset = get_dataset(name, root, preparation, **OPTIONS.get(name, {}))
    reference = get_dataset(name, root, fake_spec(input_size=12), **OPTIONS.get(name, {}))
    assert dataset.item_ids == reference.item_ids
    assert not dataset.label_space
    item = dataset[0]
    assert item.image.shape == (3, 5, 7)
    assert item.label == reference[0].label


def test_preprocessing_for_a_model_is_the_models_squash_and_normalisation():
    spec = fake_spec(input_size=9)
    generator = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 20, 31), dtype=torch.uint8, generator=generator)
    transform = Preprocessing.for_model(spec).transform
    expected = preprocess(image, size=9, mean=spec.mean, std=spec.std, interpolation="bilinear")
    assert torch.equal(transform(image), expected)
    assert Preprocessing.for_model(spec).class_names == spec.class_names


@pytest.mark.parametrize(
    ("model_classes", "model_space", "classes", "space", "expected"),
    [
        (("a", "b", "c"), "abc", ("p", "q", "r"), "abc", (True, {"p": 0, "q": 1, "r": 2})),
        (("a", "b", "c"), "abc", ("p", "q"), "abc", (False, {"p": 0, "q": 1})),
        (("a", "b", "c"), None, ("c", "a"), None, (True, {"c": 2, "a": 0})),
        (("a", "b", "c"), None, ("c", "d"), "other", (False, {"c": 0, "d": 1})),
        (("a", "b"), "xy", (), "xy", (False, {})),
    ],
)
def test_labels_are_the_models_when_spaces_or_names_agree(
    model_classes, model_space, classes, space, expected
):
    preparation = Preprocessing(lambda image: image, model_classes, model_space)
    assert preparation.labels(classes, class_space=space) == expected
