"""PASCAL VOC 2007 test: one item per (image, class present), region = that class's boxes.

Layout (torchvision's VOCDetection): ``<root>/VOCdevkit/VOC2007/ImageSets/Main/<split>.txt``,
``Annotations/<image id>.xml`` and ``JPEGImages/<image id>.jpg``. Boxes are 1-based inclusive
pixel coordinates. ``difficult`` is handled as TorchRay's pointing-game benchmark does: an
(image, class) pair whose boxes are all difficult is left out; otherwise the region is the union of
all the class's boxes, difficult ones included.
"""

from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import torch
import torchvision

from sidu_bench.data.files import not_regular
from sidu_bench.data.items import (
    REAL_DATA_TOLERANCE,
    FileDataset,
    Preprocessing,
    Record,
    Unreadable,
)
from sidu_bench.data.regions import boxes_mask
from sidu_bench.data.registry import register_dataset
from sidu_bench.domains import NATURAL_IMAGES

logger = logging.getLogger(__name__)

LAYOUT = (
    "VOCdevkit/VOC2007/ImageSets/Main/<split>.txt, VOCdevkit/VOC2007/Annotations/<id>.xml and "
    "VOCdevkit/VOC2007/JPEGImages/<id>.jpg"
)
CLASS_SPACE = "voc2007"
VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip


def read_objects(path: Path) -> list[tuple[str, bool, list[float]]]:
    """Read a VOC annotation XML as ``[(class, difficult, [xmin, ymin, xmax, ymax])]`` (1-based).

    Raises:
        ValueError: the file is not valid XML or an object lacks a known class or a full box of
            finite coordinates.
    """
    irregular = not_regular(path)
    if irregular is not None:
        raise ValueError(f"unreadable VOC annotation {path}: {irregular}")
    try:
        tree = ElementTree.parse(path)
    except (ElementTree.ParseError, OSError) as error:
        raise ValueError(f"corrupt VOC annotation {path}: {error}") from error
    objects = []
    for node in tree.getroot().iter("object"):
        name = (node.findtext("name") or "").strip()
        box = node.find("bndbox")
        try:
            coords = [float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
        except (AttributeError, TypeError, ValueError) as error:
            raise ValueError(f"corrupt VOC annotation {path}: bad bndbox of {name!r}") from error
        if not all(math.isfinite(c) for c in coords):
            raise ValueError(f"corrupt VOC annotation {path}: non-finite bndbox of {name!r}")
        if name not in VOC_CLASSES:
            raise ValueError(f"corrupt VOC annotation {path}: unknown class {name!r}")
        difficult = (node.findtext("difficult") or "0").strip() == "1"
        objects.append((name, difficult, coords))
    return objects


@register_dataset("voc2007")
class VOC2007(FileDataset):
    """PASCAL VOC 2007 (``split="test"`` by default); item id ``<image id>/<class>``."""

    name = "voc2007"
    class_space = CLASS_SPACE
    domain = NATURAL_IMAGES
    default_model = "efficientnet_lite0"
    layout = LAYOUT.replace("<split>", "test")
    supports_download = True

    def __init__(
        self,
        root: Path | None,
        *,
        preprocessing: Preprocessing,
        split: str = "test",
        download: bool = False,
        tolerance: float = REAL_DATA_TOLERANCE,
    ) -> None:
        layout = LAYOUT.replace("<split>", split)
        if root is None:
            raise self.missing(root, layout)
        if download:
            logger.info("downloading VOC 2007 %s into %s", split, root)
            torchvision.datasets.VOCDetection(
                str(root), year="2007", image_set=split, download=True
            )
        base = root / "VOCdevkit" / "VOC2007"
        listing = base / "ImageSets" / "Main" / f"{split}.txt"
        if not listing.is_file():
            raise self.missing(root, layout)
        label_space, labels = preprocessing.labels(VOC_CLASSES, class_space=self.class_space)
        records = []
        unreadable = []
        try:
            image_ids = listing.read_text(encoding="utf-8").split()
        except UnicodeDecodeError as error:
            raise ValueError(f"corrupt image list {listing}: not UTF-8 text ({error})") from error
        for image_id in image_ids:
            annotation = base / "Annotations" / f"{image_id}.xml"
            try:
                objects = read_objects(annotation)
            except ValueError as error:
                reason = f"corrupt annotation: {error}"
                unreadable.append(Unreadable(image_id, str(annotation), reason))
                continue
            image = base / "JPEGImages" / f"{image_id}.jpg"
            for name in sorted({name for name, _, _ in objects}):
                if all(difficult for n, difficult, _ in objects if n == name):
                    continue
                boxes = torch.tensor([c for n, _, c in objects if n == name], dtype=torch.float64)
                records.append(Record(f"{image_id}/{name}", image, name, labels[name], boxes))
        super().__init__(
            records, preprocessing=preprocessing, tolerance=tolerance, label_space=label_space
        )
        self.unreadable = tuple(unreadable)

    def _region(self, record: Record, size: tuple[int, int]) -> torch.Tensor:
        return boxes_mask(record.annotation, size, one_based=True)
