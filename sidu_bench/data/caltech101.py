"""Caltech-101 with its object outlines as regions (torchvision's on-disk layout).

Layout: ``<root>/caltech101/101_ObjectCategories/<category>/image_NNNN.jpg`` and
``<root>/caltech101/Annotations/<annotation folder>/annotation_NNNN.mat``. Each .mat holds
``box_coord`` = ``[y1, y2, x1, x2]`` (1-based) and ``obj_contour`` (2 x N: x row, y row) relative to
the box's top-left corner; the outline in 0-based pixel coordinates is contour + (x1, y1) - 1.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import scipy.io
import torch
import torchvision

from sidu_bench.data.files import not_regular, split_regular
from sidu_bench.data.items import (
    REAL_DATA_TOLERANCE,
    FileDataset,
    Preprocessing,
    Record,
    Unreadable,
)
from sidu_bench.data.regions import polygon_mask
from sidu_bench.data.registry import register_dataset
from sidu_bench.domains import NATURAL_IMAGES

logger = logging.getLogger(__name__)

LAYOUT = (
    "caltech101/101_ObjectCategories/<category>/image_NNNN.jpg and "
    "caltech101/Annotations/<category>/annotation_NNNN.mat"
)
BACKGROUND = "BACKGROUND_Google"
ANNOTATION_FOLDERS = {
    "Faces": "Faces_2",
    "Faces_easy": "Faces_3",
    "Motorbikes": "Motorbikes_16",
    "airplanes": "Airplanes_Side_2",
}
"""Categories whose annotation folder has another name."""

_IMAGE_NAME = re.compile(r"image_\d+\.jpg")


def read_outline(path: Path) -> torch.Tensor:
    """Read a Caltech-101 annotation file as an outline ``[N, 2]`` of 0-based ``(x, y)`` vertices.

    Raises:
        ValueError: the file is unreadable or lacks a valid ``box_coord`` / ``obj_contour``.
    """
    irregular = not_regular(path)
    if irregular is not None:
        raise ValueError(f"unreadable Caltech-101 annotation {path}: {irregular}")
    try:
        content = scipy.io.loadmat(path)
    except Exception as error:  # scipy raises many types (IndexError, MatReadError...) on bad bytes
        raise ValueError(f"corrupt Caltech-101 annotation {path}: {error}") from error
    try:
        box = np.asarray(content["box_coord"], dtype=np.float64).reshape(-1)
        contour = np.asarray(content["obj_contour"], dtype=np.float64)
    except (KeyError, ValueError, TypeError) as error:
        raise ValueError(f"corrupt Caltech-101 annotation {path}: {error!r}") from error
    if box.shape != (4,) or contour.ndim != 2 or contour.shape[0] != 2 or contour.shape[1] == 0:
        raise ValueError(
            f"corrupt Caltech-101 annotation {path}: expected box_coord of 4 values and "
            f"obj_contour of shape 2 x N, got {box.shape} and {contour.shape}"
        )
    if not (np.isfinite(box).all() and np.isfinite(contour).all()):
        raise ValueError(f"corrupt Caltech-101 annotation {path}: non-finite coordinates")
    y1, x1 = box[0], box[2]
    outline = torch.from_numpy(contour.T.copy())
    return outline + torch.tensor([x1 - 1.0, y1 - 1.0], dtype=torch.float64)


def _annotated_images(
    folder: Path, notes_dir: Path, category: str
) -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """``(image, annotation)`` pairs of one category, and its image entries that are no files.

    An entry named like an image that is not a regular file (a FIFO, a broken link) is returned
    with why instead, never opened; a missing annotation file of an image is an error.
    """
    notes = notes_dir / ANNOTATION_FOLDERS.get(category, category)
    named = [image for image in sorted(folder.iterdir()) if _IMAGE_NAME.fullmatch(image.name)]
    images, others = split_regular(named)
    pairs = []
    for image in images:
        annotation = notes / f"annotation_{image.stem.removeprefix('image_')}.mat"
        if not annotation.is_file():
            raise FileNotFoundError(f"Caltech-101 annotation {annotation} is missing")
        pairs.append((image, annotation))
    return pairs, others


@register_dataset("caltech101")
class Caltech101(FileDataset):
    """Caltech-101: one item per image, region = the annotated object outline.

    ``categories`` are the category folders present (``BACKGROUND_Google`` excluded); the label of
    a category is its index among them unless the model's classes include the category names.
    """

    name = "caltech101"
    class_space = "caltech101"
    domain = NATURAL_IMAGES
    default_model = "efficientnet_lite0"
    layout = LAYOUT
    supports_download = True

    def __init__(
        self,
        root: Path | None,
        *,
        preprocessing: Preprocessing,
        download: bool = False,
        tolerance: float = REAL_DATA_TOLERANCE,
    ) -> None:
        if root is None:
            raise self.missing(root)
        if download:
            logger.info("downloading Caltech-101 into %s", root)
            torchvision.datasets.Caltech101(str(root), target_type="annotation", download=True)
        images_dir = root / "caltech101" / "101_ObjectCategories"
        notes_dir = root / "caltech101" / "Annotations"
        categories = []
        if images_dir.is_dir():
            categories = sorted(
                p.name for p in images_dir.iterdir() if p.is_dir() and p.name != BACKGROUND
            )
        if not categories or not notes_dir.is_dir():
            raise self.missing(root)
        label_space, labels = preprocessing.labels(categories, class_space=self.class_space)
        records, unreadable = [], []
        for category in categories:
            pairs, others = _annotated_images(images_dir / category, notes_dir, category)
            for image, annotation in pairs:
                item_id = f"{category}/{image.stem}"
                records.append(Record(item_id, image, category, labels[category], annotation))
            for image, reason in others:
                item_id = f"{category}/{image.stem}"
                unreadable.append(Unreadable(item_id, str(image), f"unreadable image: {reason}"))
        super().__init__(
            records, preprocessing=preprocessing, tolerance=tolerance, label_space=label_space
        )
        self.unreadable = tuple(unreadable)

    def _region(self, record: Record, size: tuple[int, int]) -> torch.Tensor:
        return polygon_mask(read_outline(record.annotation), size)
