"""Hostile data files: the data layer refuses what it cannot read right, and never hangs.

Issue 21 ("Nothing silently wrong"): 16-bit and float images, images whose header claims more
pixels than the bound, non-finite and duplicate ImageNet boxes, a non-UTF-8 solution file,
symlink loops, a FIFO named like an image and class folders without images.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import struct
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures_data import (
    fake_spec,
    standard_caltech,
    standard_folder,
    standard_imagenet,
    standard_voc,
    write_image,
)
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from sidu_bench.cli import main
from sidu_bench.data import DataNotFoundError, Unreadable, UnreadableItemError, get_dataset
from sidu_bench.data.imagenet_val import read_solution, read_synsets
from sidu_bench.data.images import MAX_PIXELS, ImageRefusedError, image_size, load_rgb
from sidu_bench.data.regions import boxes_mask

FIFO_REASON = "unreadable image: not a regular file but a FIFO (named pipe)"
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
needs_symlinks = pytest.mark.skipif(os.name == "nt", reason="needs POSIX symlinks")


def grey16(height: int = 6, width: int = 7) -> np.ndarray:
    """16-bit grey values covering both ends, the rounding edges (128, 129) and random ones."""
    values = np.random.default_rng(0).integers(0, 65536, size=height * width).astype(np.uint16)
    values[:4] = [0, 128, 129, 65535]
    return values.reshape(height, width)


def nominal_rgb(values: np.ndarray) -> torch.Tensor:
    """The stated rule: round(value / 257) as uint8, grey repeated on three channels."""
    grey = torch.from_numpy(np.rint(values / 257.0).astype(np.uint8))
    return grey.expand(3, *grey.shape).contiguous()


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A real 1 x 1 PNG whose IHDR is patched to claim ``width x height`` (CRC fixed)."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    assert data[12:16] == b"IHDR"
    struct.pack_into(">II", data, 16, width, height)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))
    return path


def finishes(call, fifos: list[Path], timeout: float = 60.0):
    """Run ``call()`` in a thread; fail (not hang) when it blocks, e.g. on opening a FIFO.

    A blocked open of a FIFO is released by opening it for writing, so no thread is left behind.
    """
    outcome: dict[str, object] = {}

    def target():
        try:
            outcome["value"] = call()
        except BaseException as error:  # re-raised in the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        for fifo in fifos:
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(5)
        pytest.fail(f"still running after {timeout} s: a FIFO was opened")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


# 1. One image decoder -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["png", "tiff-big-endian"])
def test_16_bit_greyscale_is_scaled_nominally(tmp_path, fmt):
    values = grey16()
    if fmt == "png":
        path = tmp_path / "deep.png"
        Image.fromarray(values).save(path)  # mode I;16
    else:
        path = tmp_path / "deep.tif"
        height, width = values.shape
        Image.frombytes("I;16B", (width, height), values.astype(">u2").tobytes()).save(path)
    expected = nominal_rgb(values)
    assert torch.equal(load_rgb(path), expected)
    # Its 8-bit copy decodes to the same pixels (before the fix the PNG's mean was far off).
    copy = tmp_path / "copy.png"
    Image.fromarray(expected[0].numpy()).save(copy)
    assert torch.equal(load_rgb(copy), expected)
    assert image_size(path) == (6, 7)


def test_16_bit_rgb_png_is_what_pil_gives_an_8_bit_mode(tmp_path):
    # PIL opens a 16-bit RGB PNG as 8-bit RGB (each value's high byte); it is decoded as RGB.
    path = tmp_path / "rgb16.png"
    raw = np.array([[[65535, 0, 257], [1000, 2000, 3000]]], dtype=">u2")
    scanlines = b"".join(b"\x00" + row.tobytes() for row in raw)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", 2, 1, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(scanlines))
        + chunk(b"IEND", b"")
    )
    expected = torch.tensor([[[255, 3]], [[0, 7]], [[1, 11]]], dtype=torch.uint8)
    assert torch.equal(load_rgb(path), expected)


@pytest.mark.parametrize(
    ("array", "mode"),
    [
        (np.array([[0.5, 1.0], [0.25, 0.0]], dtype=np.float32), "'F' (32-bit floating-point"),
        (np.array([[70000, 1], [2, 3]], dtype=np.int32), "'I' (32-bit integer"),
    ],
)
def test_float_and_32_bit_integer_images_are_refused(tmp_path, array, mode):
    path = tmp_path / "scan.tif"
    Image.fromarray(array).save(path)
    for read in (load_rgb, image_size):
        with pytest.raises(ImageRefusedError) as caught:
            read(path)
        assert caught.value.reason.startswith(f"image mode {mode} samples) is refused")


def test_a_refused_image_is_an_unreadable_item_naming_file_and_mode(tmp_path):
    tree = standard_folder(tmp_path)
    scan = tree / "cat" / "scan.tif"
    Image.fromarray(np.ones((3, 4), dtype=np.float32)).save(scan)
    dataset = get_dataset("folder", tree, fake_spec())
    assert dataset.item_ids == ("cat/a.png", "cat/scan.tif", "cat/sub/b.jpg", "dog/c.png")
    with pytest.raises(UnreadableItemError) as caught:
        dataset[1]
    assert (caught.value.item_id, caught.value.file) == ("cat/scan.tif", str(scan))
    assert caught.value.reason == (
        f"unreadable image: {scan}: image mode 'F' (32-bit floating-point samples) is refused: "
        "only 8-bit modes and 16-bit greyscale are decoded"
    )


@pytest.mark.parametrize(
    ("width", "height", "pixels"),
    [
        (20000, 20000, "400000000 pixels"),  # PIL itself raises DecompressionBombError
        (10000, 9000, "10000 x 9000 = 90000000 pixels"),  # PIL itself warns
        (8001, 8000, "8001 x 8000 = 64008000 pixels"),  # under PIL's limit, over the bound
    ],
)
def test_an_image_over_the_pixel_bound_is_refused_from_its_header(tmp_path, width, height, pixels):
    path = png_claiming(tmp_path / "bomb.png", width, height)
    assert path.stat().st_size < 100
    reason = f"{pixels}, over the bound of {MAX_PIXELS} pixels"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's DecompressionBombWarning must not escape either
        for read in (load_rgb, image_size):
            with pytest.raises(ImageRefusedError) as caught:
                read(path)
            assert caught.value.reason == reason


def test_the_pixel_bound_applies_where_a_region_is_read_without_decoding(tmp_path):
    root = standard_imagenet(tmp_path)
    image = root / "imagenet-val/ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_00000002.JPEG"
    png_claiming(image, 20000, 20000)
    dataset = get_dataset("imagenet-val", root, fake_spec())
    with pytest.raises(UnreadableItemError, match="400000000 pixels, over the bound"):
        dataset.region_of(1)
    assert dataset.skipped.ids == ("ILSVRC2012_val_00000003",)


# 2. ImageNet boxes --------------------------------------------------------------------------


def imagenet_with_row(root: Path, row: str, *, replace: bool = True) -> Path:
    """The standard ImageNet fixture with line 2 (item 1's row) replaced, or ``row`` appended."""
    standard_imagenet(root)
    solution = root / "imagenet-val" / "LOC_val_solution.csv"
    lines = solution.read_text(encoding="utf-8").splitlines()
    if replace:
        lines[1] = row
    else:
        lines.append(row)
    solution.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return solution


@pytest.mark.parametrize(
    "boxes",
    ["n00000002 -inf -inf inf inf", "n00000002 nan 0 2 1", "n00000002 0 0 2 1 n00000001 0 inf 1 1"],
)
def test_a_non_finite_box_makes_its_row_corrupt(tmp_path, boxes):
    solution = imagenet_with_row(tmp_path, f"ILSVRC2012_val_00000001,{boxes}")
    dataset = get_dataset("imagenet-val", tmp_path, fake_spec())
    assert dataset.item_ids == ("ILSVRC2012_val_00000002", "ILSVRC2012_val_00000003")
    assert dataset.unreadable == (
        Unreadable(
            "ILSVRC2012_val_00000001",
            str(solution),
            f"corrupt solution file {solution}, line 2: non-finite box coordinates: {boxes!r}",
        ),
    )


def test_a_non_finite_box_never_reaches_a_region():
    with pytest.raises(ValueError, match="box coordinates must be finite"):
        boxes_mask([[float("-inf"), float("-inf"), float("inf"), float("inf")]], (3, 3))


def test_a_duplicate_image_id_leaves_the_image_out_naming_both_lines(tmp_path):
    solution = imagenet_with_row(
        tmp_path, "ILSVRC2012_val_00000001,n00000001 0 0 1 1", replace=False
    )
    dataset = get_dataset("imagenet-val", tmp_path, fake_spec())
    assert dataset.item_ids == ("ILSVRC2012_val_00000002", "ILSVRC2012_val_00000003")
    reason = (
        f"solution file {solution}: image id ILSVRC2012_val_00000001 is on several rows "
        "(lines 2 and 6)"
    )
    assert dataset.unreadable == (Unreadable("ILSVRC2012_val_00000001", str(solution), reason),)
    synsets = read_synsets(tmp_path / "imagenet-val" / "LOC_synset_mapping.txt")
    with pytest.raises(ValueError, match=r"is on several rows \(lines 2 and 6\)"):
        read_solution(solution, synsets)


def test_a_solution_file_that_is_not_utf8_is_named(tmp_path):
    standard_imagenet(tmp_path)
    solution = tmp_path / "imagenet-val" / "LOC_val_solution.csv"
    solution.write_bytes(solution.read_bytes() + b"ILSVRC2012_val_00000004,n00000001 \xff\xfe\n")
    with pytest.raises(ValueError, match="not UTF-8") as caught:
        get_dataset("imagenet-val", tmp_path, fake_spec())
    assert str(caught.value).startswith(f"corrupt solution file {solution}: not UTF-8 text")


def test_a_non_finite_voc_box_is_a_corrupt_annotation(tmp_path):
    root = standard_voc(tmp_path)
    annotation = root / "VOCdevkit/VOC2007/Annotations/000002.xml"
    annotation.write_text(
        annotation.read_text(encoding="utf-8").replace("<xmax>1</xmax>", "<xmax>inf</xmax>"),
        encoding="utf-8",
    )
    dataset = get_dataset("voc2007", root, fake_spec())
    assert dataset.item_ids == ("000001/dog", "000001/person")
    (unreadable,) = dataset.unreadable
    assert unreadable.reason == (
        f"corrupt annotation: corrupt VOC annotation {annotation}: non-finite bndbox of 'person'"
    )


# 3. The data-tree walk ----------------------------------------------------------------------


def listed(root: Path) -> list[str]:
    """What torchvision's ImageFolder lists (the ids the folder data set must keep)."""
    _, class_to_idx = find_classes(str(root))
    samples = make_dataset(str(root), class_to_idx, extensions=IMG_EXTENSIONS)
    return [Path(path).relative_to(root).as_posix() for path, _ in samples]


def test_an_ordinary_tree_keeps_torchvisions_ids_order_and_labels(tmp_path):
    tree = standard_folder(tmp_path)
    for name in ("cat/sub-x/d.PNG", "cat/sub/deeper/e.jpeg", "cat/Z.webp", "dog/b b/f.tif"):
        write_image(tree / name, 2, 2)
    (tree / "cat" / "g.gif").write_bytes(b"GIF89a")
    # Folders in path order ("sub" < "sub-x" < "sub/deeper"), names sorted within each folder.
    expected = [
        "cat/Z.webp",
        "cat/a.png",
        "cat/sub/b.jpg",
        "cat/sub-x/d.PNG",
        "cat/sub/deeper/e.jpeg",
        "dog/c.png",
        "dog/b b/f.tif",
    ]
    assert listed(tree) == expected
    dataset = get_dataset("folder", tree, fake_spec())
    assert list(dataset.item_ids) == expected
    assert [r.label for r in dataset.records] == [0] * 5 + [1] * 2
    assert dataset.unreadable == ()


@needs_symlinks
def test_the_walk_follows_no_directory_twice(tmp_path):
    tree = standard_folder(tmp_path)
    outside = tmp_path / "outside"
    write_image(outside / "e.png", 2, 2)
    (tree / "cat" / "loop").symlink_to("..")  # the root: before the fix, 82 items, 461-char ids
    (tree / "cat" / "sub" / "self").symlink_to(".")
    (tree / "cat" / "to_dog").symlink_to("../dog")  # another class: listed under dog only
    (tree / "cat" / "more").symlink_to(outside)  # outside the tree: followed once
    (tree / "dog" / "again").symlink_to(outside)
    (tree / "zz_root").symlink_to(".")  # class folders that are the root or another class:
    (tree / "zz_cat").symlink_to("cat")  # they keep their labels (2 and 3) but are not walked
    dataset = get_dataset("folder", tree, fake_spec())
    assert dataset.item_ids == ("cat/a.png", "cat/more/e.png", "cat/sub/b.jpg", "dog/c.png")
    assert [dataset[i].label for i in range(4)] == [0, 0, 0, 1]
    assert dataset.unreadable == ()


@needs_fifo
def test_a_fifo_named_like_an_image_is_never_opened(tmp_path):
    tree = standard_folder(tmp_path)
    fifo = tree / "dog" / "image_0002.jpg"
    os.mkfifo(fifo)
    dataset = finishes(lambda: get_dataset("folder", tree, fake_spec()), [fifo])
    assert dataset.item_ids == ("cat/a.png", "cat/sub/b.jpg", "dog/c.png")
    assert dataset.unreadable == (Unreadable("dog/image_0002.jpg", str(fifo), FIFO_REASON),)
    with pytest.raises(ImageRefusedError, match="not a regular file but a FIFO"):
        finishes(lambda: load_rgb(fifo), [fifo])


@needs_fifo
@pytest.mark.parametrize(
    ("name", "write", "image", "item_id", "left"),
    [
        (
            "caltech101",
            standard_caltech,
            "caltech101/101_ObjectCategories/ant/image_0002.jpg",
            "ant/image_0002",
            3,
        ),
        (
            "imagenet-val",
            standard_imagenet,
            "imagenet-val/ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_00000002.JPEG",
            "ILSVRC2012_val_00000002",
            2,
        ),
    ],
)
def test_other_data_sets_list_a_fifo_as_unreadable_without_opening_it(
    tmp_path, name, write, image, item_id, left
):
    root = write(tmp_path)
    fifo = root / image
    fifo.unlink()
    os.mkfifo(fifo)
    dataset = finishes(lambda: get_dataset(name, root, fake_spec()), [fifo])
    assert item_id not in dataset.item_ids
    assert len(dataset) == left
    assert dataset.unreadable == (Unreadable(item_id, str(fifo), FIFO_REASON),)


def test_a_class_folder_without_images_does_not_hide_the_others(tmp_path, caplog):
    tree = standard_folder(tmp_path)
    (tree / "bird").mkdir()
    (tree / "bird" / "only.gif").write_bytes(b"GIF89a")
    (tree / "empty").mkdir()
    with caplog.at_level(logging.WARNING, logger="sidu_bench.data.folder"):
        dataset = get_dataset("folder", tree, fake_spec(class_names=("x",)))
    assert dataset.item_ids == ("cat/a.png", "cat/sub/b.jpg", "dog/c.png")
    # Labels index every class folder, as torchvision's class list: bird 0, cat 1, dog 2, empty 3.
    assert [r.label for r in dataset.records] == [1, 1, 2]
    assert "class folder(s) bird, empty hold no image" in caplog.text


def test_a_tree_is_not_found_only_when_no_class_holds_an_image(tmp_path):
    tree = tmp_path / "tree"
    (tree / "bird").mkdir(parents=True)
    (tree / "bird" / "only.gif").write_bytes(b"GIF89a")
    with pytest.raises(DataNotFoundError, match="does not hold <class>/<image>"):
        get_dataset("folder", tree, fake_spec())


# The real command -----------------------------------------------------------------------------


@needs_fifo
@needs_symlinks
def test_a_hostile_tree_runs_to_the_end_and_lists_what_it_skipped(tmp_path):
    tree = tmp_path / "tree"
    write_image(tree / "cat" / "a.png", 12, 10)
    png_claiming(tree / "cat" / "bomb.png", 20000, 20000)
    (tree / "dog").mkdir()
    Image.fromarray(np.ones((5, 5), dtype=np.float32)).save(tree / "dog" / "scan.tif")
    fifo = tree / "dog" / "image_0002.jpg"
    os.mkfifo(fifo)
    (tree / "cat" / "loop").symlink_to("..")
    (tree / "bird").mkdir()
    (tree / "bird" / "only.gif").write_bytes(b"GIF89a")
    out = tmp_path / "runs"
    command = [
        "evaluate", "--dataset", "folder", "--root", str(tree), "--model", "synthetic_cnn",
        "--allow-model-mismatch", "--explainers", "center", "--metrics", "insertion_deletion",
        "--steps", "4", "--device", "cpu", "--backend", "torch", "--out", str(out),
    ]  # fmt: skip
    run_dir = out / "folder-synthetic_cnn"
    expected = [
        ["dog/image_0002.jpg", str(fifo), FIFO_REASON],
        [
            "cat/bomb.png",
            str(tree / "cat" / "bomb.png"),
            f"unreadable image: {tree / 'cat' / 'bomb.png'}: 400000000 pixels, over the bound "
            f"of {MAX_PIXELS} pixels",
        ],
        [
            "dog/scan.tif",
            str(tree / "dog" / "scan.tif"),
            f"unreadable image: {tree / 'dog' / 'scan.tif'}: image mode 'F' (32-bit "
            "floating-point samples) is refused: only 8-bit modes and 16-bit greyscale are decoded",
        ],
    ]
    for _ in range(2):  # the second run resumes the folder: it must finish the same way
        assert finishes(lambda: main(command), [fifo]) == 0
        skipped = pd.read_csv(run_dir / "skipped.csv", dtype=str)
        assert sorted(skipped.values.tolist()) == sorted(expected)
        records = pd.read_csv(run_dir / "records.csv")
        assert records["id"].tolist() == ["cat/a.png"]
