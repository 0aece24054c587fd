"""Tiny data set fixtures written in the real on-disk formats, and a fake model spec."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.io
import torch
from PIL import Image
from torch import nn

from sidu_bench.models import ModelSpec


def shared_data() -> Path:
    """The read-only real subsets (``../shared/data``), overridable by SIDU_BENCH_SHARED_DATA."""
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    return Path(os.environ.get("SIDU_BENCH_SHARED_DATA", default))


def fake_spec(
    *,
    class_names: Sequence[str] = ("a", "b", "c"),
    class_space: str | None = None,
    input_size: int = 16,
) -> ModelSpec:
    """A tiny model spec: enough for data sets to preprocess items."""
    module = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, len(class_names)),
    )
    return ModelSpec(
        module=module.eval(),
        name="fake",
        input_size=input_size,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        class_names=tuple(class_names),
        default_layer="0",
        class_space=class_space,
    )


def write_image(path: Path, height: int, width: int, *, mode: str = "RGB", seed: int = 0) -> None:
    """Write a random image of ``mode`` (RGB, L, CMYK, ...); the suffix sets the format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    channels = len(Image.new(mode, (1, 1)).getbands())
    pixels = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    Image.frombytes(mode, (width, height), pixels.tobytes()).save(path)


def write_caltech_annotation(
    path: Path, box_coord: Sequence[int], contour: Sequence[Sequence[float]]
) -> None:
    """Write a Caltech-101 .mat: ``box_coord`` [y1, y2, x1, x2] (1-based), ``obj_contour`` 2 x N."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(
        path,
        {
            "box_coord": np.asarray([box_coord], dtype=np.uint16),
            "obj_contour": np.asarray(contour, dtype=np.float64),
        },
    )


def write_caltech(
    root: Path,
    items: dict[str, list[tuple[tuple[int, int], Sequence[int], Sequence[Sequence[float]], str]]],
) -> None:
    """Write ``<root>/caltech101`` with ``{category: [((H, W), box_coord, contour, mode)]}``.

    Annotation folders follow Caltech's renames; a ``BACKGROUND_Google`` image is added.
    """
    from sidu_bench.data.caltech101 import ANNOTATION_FOLDERS

    base = root / "caltech101"
    for category, entries in items.items():
        for number, ((height, width), box, contour, mode) in enumerate(entries, start=1):
            write_image(
                base / "101_ObjectCategories" / category / f"image_{number:04d}.jpg",
                height,
                width,
                mode=mode,
            )
            folder = ANNOTATION_FOLDERS.get(category, category)
            write_caltech_annotation(
                base / "Annotations" / folder / f"annotation_{number:04d}.mat", box, contour
            )
    write_image(base / "101_ObjectCategories" / "BACKGROUND_Google" / "image_0001.jpg", 5, 5)


def write_imagenet(
    root: Path,
    synsets: Sequence[str],
    items: dict[str, tuple[tuple[int, int], str]],
) -> None:
    """Write ``<root>/imagenet-val``: ``{image id: ((H, W), prediction string)}`` + synsets."""
    base = root / "imagenet-val"
    for image_id, ((height, width), _) in items.items():
        write_image(
            base / "ILSVRC/Data/CLS-LOC/val" / f"{image_id}.JPEG", height, width, mode="RGB"
        )
    lines = ["ImageId,PredictionString"] + [f"{k},{v}" for k, (_, v) in items.items()]
    (base / "LOC_val_solution.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    mapping = "".join(f"{wnid} description of {wnid}, other name\n" for wnid in synsets)
    (base / "LOC_synset_mapping.txt").write_text(mapping, encoding="utf-8")


def write_voc(
    root: Path,
    items: dict[str, tuple[tuple[int, int], list[tuple[str, int, Sequence[int]]]]],
    *,
    split: str = "test",
) -> None:
    """Write ``<root>/VOCdevkit/VOC2007``: ``{image id: ((H, W), [(class, difficult, box)])}``."""
    base = root / "VOCdevkit" / "VOC2007"
    for image_id, ((height, width), objects) in items.items():
        write_image(base / "JPEGImages" / f"{image_id}.jpg", height, width)
        annotation = ElementTree.Element("annotation")
        ElementTree.SubElement(annotation, "filename").text = f"{image_id}.jpg"
        size = ElementTree.SubElement(annotation, "size")
        for key, value in (("width", width), ("height", height), ("depth", 3)):
            ElementTree.SubElement(size, key).text = str(value)
        for name, difficult, box in objects:
            node = ElementTree.SubElement(annotation, "object")
            ElementTree.SubElement(node, "name").text = name
            ElementTree.SubElement(node, "pose").text = "Unspecified"
            ElementTree.SubElement(node, "truncated").text = "0"
            ElementTree.SubElement(node, "difficult").text = str(difficult)
            bndbox = ElementTree.SubElement(node, "bndbox")
            for key, value in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True):
                ElementTree.SubElement(bndbox, key).text = str(value)
        (base / "Annotations").mkdir(parents=True, exist_ok=True)
        ElementTree.ElementTree(annotation).write(base / "Annotations" / f"{image_id}.xml")
    listing = base / "ImageSets" / "Main" / f"{split}.txt"
    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text("".join(f"{k}\n" for k in items), encoding="utf-8")


def write_folder(root: Path, items: dict[str, list[tuple[str, tuple[int, int]]]]) -> None:
    """Write an ImageFolder tree: ``{class: [(relative file name, (H, W))]}``."""
    for category, files in items.items():
        for name, (height, width) in files:
            write_image(root / category / name, height, width)


def mask_from_rows(rows: Sequence[str]) -> torch.Tensor:
    """A boolean mask from strings of ``#`` (True) and ``.`` (False), one per row."""
    return torch.tensor([[c == "#" for c in row] for row in rows], dtype=torch.bool)


# The standard fixtures below come with hand-computed regions (rows of '#' inside, '.' outside).

CALTECH_ITEMS = {
    "ant": [
        # Box top-left (x1, y1) = (3, 2), 1-based: outline = contour + (2, 1) in 0-based pixels.
        ((6, 8), (2, 5, 3, 7), ((0, 3, 3, 0), (0, 0, 2, 2)), "RGB"),
        # Greyscale; a triangle whose hypotenuse passes through pixel centres (they count).
        ((5, 5), (1, 4, 1, 4), ((0, 4, 0), (0, 0, 4)), "L"),
    ],
    "airplanes": [
        # CMYK; the outline overshoots the right and bottom edges and is clipped.
        ((4, 6), (2, 4, 4, 6), ((0, 5, 5, 0), (0, 0, 5, 5)), "CMYK"),
        # Zero-height outline between pixel rows: empty region, skipped and counted.
        ((5, 5), (3, 3, 1, 5), ((0, 2, 4), (0.5, 0.5, 0.5)), "RGB"),
    ],
}
CALTECH_REGIONS = {
    "ant/image_0001": ["........", "..####..", "..####..", "..####..", "........", "........"],
    "ant/image_0002": ["#####", "####.", "###..", "##...", "#...."],
    "airplanes/image_0001": ["......", "...###", "...###", "...###"],
    "airplanes/image_0002": ["....."] * 5,
}

IMAGENET_SYNSETS = ("n00000001", "n00000002", "n00000003")
IMAGENET_ITEMS = {
    # Two boxes of the class, 0-based inclusive; the second one is clipped to one pixel.
    "ILSVRC2012_val_00000001": ((4, 5), "n00000002 0 0 2 1 n00000002 4 3 9 9"),
    # A box of another class is not part of the region.
    "ILSVRC2012_val_00000002": ((3, 4), "n00000001 1 1 2 1 n00000003 0 0 3 2"),
    # A box entirely outside the image: empty region, skipped.
    "ILSVRC2012_val_00000003": ((3, 3), "n00000003 5 5 8 8"),
}
IMAGENET_REGIONS = {
    "ILSVRC2012_val_00000001": ["###..", "###..", ".....", "....#"],
    "ILSVRC2012_val_00000002": ["....", ".##.", "...."],
    "ILSVRC2012_val_00000003": ["...", "...", "..."],
}

VOC_ITEMS = {
    "000001": (
        (5, 6),
        [
            ("dog", 0, (1, 1, 3, 2)),
            ("dog", 1, (5, 4, 6, 5)),
            ("cat", 1, (2, 2, 3, 3)),
            ("person", 0, (6, 5, 9, 9)),
        ],
    ),
    "000002": ((4, 4), [("person", 0, (1, 1, 1, 1))]),
}
VOC_REGIONS = {
    # 1-based boxes; a difficult box of a class with a non-difficult one is kept (TorchRay);
    # "cat" has only difficult boxes, so (000001, cat) is no item.
    "000001/dog": ["###...", "###...", "......", "....##", "....##"],
    "000001/person": ["......", "......", "......", "......", ".....#"],
    "000002/person": ["#...", "....", "....", "...."],
}

FOLDER_ITEMS = {
    "cat": [("a.png", (4, 5)), ("sub/b.jpg", (3, 3))],
    "dog": [("c.png", (6, 2))],
}


def standard_caltech(root: Path) -> Path:
    """Write the standard Caltech-101 fixture under ``root``; return ``root``."""
    write_caltech(root, CALTECH_ITEMS)
    return root


def standard_imagenet(root: Path) -> Path:
    """Write the standard ImageNet-val fixture (plus a CSV row for an absent image)."""
    items = dict(IMAGENET_ITEMS)
    write_imagenet(root, IMAGENET_SYNSETS, items)
    solution = root / "imagenet-val" / "LOC_val_solution.csv"
    with solution.open("a", encoding="utf-8") as rows:
        rows.write("ILSVRC2012_val_00000099,n00000001 0 0 1 1\n")
    return root


def standard_voc(root: Path) -> Path:
    """Write the standard VOC 2007 test fixture under ``root``; return ``root``."""
    write_voc(root, VOC_ITEMS)
    return root


def standard_folder(root: Path) -> Path:
    """Write the standard ImageFolder fixture (plus a non-image file); return the tree."""
    tree = root / "tree"
    write_folder(tree, FOLDER_ITEMS)
    (tree / "dog" / "notes.txt").write_text("not an image", encoding="utf-8")
    return tree
