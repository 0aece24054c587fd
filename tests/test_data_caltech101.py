"""Caltech-101 on fixtures in the real format: .mat outlines, renamed folders, clipping, skips."""

from __future__ import annotations

import pytest
import torch
from fixtures_data import (
    CALTECH_REGIONS,
    fake_spec,
    mask_from_rows,
    standard_caltech,
    write_caltech_annotation,
)

from sidu_bench.data import get_dataset
from sidu_bench.data.caltech101 import read_outline


@pytest.fixture
def root(tmp_path):
    return standard_caltech(tmp_path)


def test_items_regions_and_conventions(root):
    dataset = get_dataset("caltech101", root, fake_spec())
    assert dataset.categories == ("airplanes", "ant")
    assert set(dataset.item_ids) == set(CALTECH_REGIONS)
    for index, item_id in enumerate(dataset.item_ids):
        item = dataset[index]
        expected = mask_from_rows(CALTECH_REGIONS[item_id])
        assert item.id == item_id
        assert item.original_size == tuple(expected.shape)
        assert torch.equal(item.region, expected), item_id
        assert torch.equal(dataset.region_of(index), expected)
        assert item.image.shape == (3, 16, 16)
        assert item.image.dtype == torch.float32
        assert item.category == item_id.split("/")[0]
        assert item.label == dataset.categories.index(item.category)
    assert dataset.skipped.ids == ("airplanes/image_0002",)
    assert dataset.skipped.count == 1
    assert not dataset.label_space
    assert dataset.tolerance == 15


def test_outline_is_contour_plus_box_corner_minus_one(tmp_path):
    path = tmp_path / "annotation_0001.mat"
    write_caltech_annotation(path, (10, 20, 30, 40), ((0.0, 2.5), (1.0, 4.0)))
    outline = read_outline(path)
    assert torch.equal(outline, torch.tensor([[29.0, 10.0], [31.5, 13.0]], dtype=torch.float64))


def test_labels_follow_a_model_with_the_category_names(root):
    spec = fake_spec(class_names=("x", "ant", "airplanes"))
    dataset = get_dataset("caltech101", root, spec)
    assert dataset.label_space
    assert [dataset[i].label for i in range(len(dataset))] == [2, 2, 1, 1]


def test_background_folder_is_not_a_category(root):
    dataset = get_dataset("caltech101", root, fake_spec())
    assert not any(i.startswith("BACKGROUND_Google") for i in dataset.item_ids)


def test_corrupt_annotation_names_the_file(root):
    bad = root / "caltech101" / "Annotations" / "Airplanes_Side_2" / "annotation_0001.mat"
    bad.write_bytes(b"not a mat file at all")
    dataset = get_dataset("caltech101", root, fake_spec())
    with pytest.raises(ValueError, match=r"corrupt Caltech-101 annotation .*annotation_0001\.mat"):
        dataset[dataset.item_ids.index("airplanes/image_0001")]


def test_annotation_without_contour_names_the_file(tmp_path):
    import scipy.io

    path = tmp_path / "annotation_0001.mat"
    scipy.io.savemat(path, {"box_coord": [[1, 2, 3, 4]]})
    with pytest.raises(ValueError, match=str(path)):
        read_outline(path)


def test_missing_annotation_names_the_file(root):
    (root / "caltech101" / "Annotations" / "ant" / "annotation_0002.mat").unlink()
    with pytest.raises(FileNotFoundError, match=r"annotation_0002\.mat"):
        get_dataset("caltech101", root, fake_spec())


def test_missing_root_shows_the_layout(tmp_path, monkeypatch):
    monkeypatch.delenv("SIDU_BENCH_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"caltech101/101_ObjectCategories"):
        get_dataset("caltech101", tmp_path, fake_spec())
    with pytest.raises(FileNotFoundError, match="was not found; tried"):
        get_dataset("caltech101", None, fake_spec())
