"""Any ImageFolder tree (``<root>/<class>/**/<image>``): no regions, insertion/deletion only.

The tree is listed as torchvision's ``ImageFolder`` lists it (the same classes, files, order and
extensions) with three differences that keep a run from hanging or reading a file twice: an entry
that is not a regular file (a FIFO named ``x.jpg``, a broken link) is never opened but left out as
unreadable; no directory is walked twice (a link back up the tree is not followed, and a
directory reached by two links is listed once, under its own class or the first path found);
and a class folder without images does not make the tree "not found" (it keeps its label and
has no items; the tree is not found only when no class folder holds an image).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from sidu_bench.data.files import IMAGE_EXTENSIONS, DirectoryId, directory_id, walk_files
from sidu_bench.data.items import FileDataset, Preprocessing, Record, Unreadable
from sidu_bench.data.registry import register_dataset
from sidu_bench.domains import NATURAL_IMAGES

logger = logging.getLogger(__name__)

LAYOUT = "<class>/<image> (torchvision's ImageFolder; root is the tree itself)"


def class_folders(root: Path) -> list[str]:
    """The class folders of an ImageFolder tree: its sub-directories (links followed), sorted."""
    with os.scandir(root) as entries:
        return sorted(entry.name for entry in entries if entry.is_dir())


@register_dataset("folder")
class ImageFolderItems(FileDataset):
    """Images of an ImageFolder tree; category = class folder, region ``None``, no tolerance.

    Labels are the model's class indices when every class folder is named after a model class,
    else indices into the sorted class folders (every class folder, with images or not).
    Item ids are paths relative to the root (``cat/sub/b.jpg``).
    """

    name = "folder"
    class_space = None
    domain = NATURAL_IMAGES
    default_model = "efficientnet_lite0"
    layout = LAYOUT
    search_root = False

    def __init__(self, root: Path | None, *, preprocessing: Preprocessing) -> None:
        if root is None or not root.is_dir():
            raise self.missing(root)
        classes = class_folders(root)
        label_space, labels = preprocessing.labels(classes, class_space=self.class_space)
        # No walk enters the root or another class's folder; a class folder that is the root or
        # an earlier class's folder (a link) is not walked: its images are listed once.
        walked = {identity for identity in [directory_id(root)] if identity is not None}
        owner: dict[DirectoryId, str] = {}
        for category in classes:
            identity = directory_id(root / category)
            if identity is not None and identity not in walked:
                owner.setdefault(identity, category)
        walked |= set(owner)
        records, unreadable, empty, not_walked = [], [], [], []
        for category in classes:
            folder = root / category
            identity = directory_id(folder)
            if identity is None or owner.get(identity) != category:
                not_walked.append((folder, "the data root or an earlier class folder"))
                empty.append(category)
                continue
            listing = walk_files(folder, IMAGE_EXTENSIONS, walked=walked)
            for path in listing.files:
                records.append(Record(_item_id(path, root), path, category, labels[category]))
            for path, reason in listing.other:
                unreadable.append(
                    Unreadable(_item_id(path, root), str(path), f"unreadable image: {reason}")
                )
            not_walked += listing.not_walked
            if not listing.files:
                empty.append(category)
        if not records and not unreadable:
            raise self.missing(root)
        _warn(root, empty, not_walked)
        super().__init__(
            records, preprocessing=preprocessing, tolerance=None, label_space=label_space
        )
        self.unreadable = tuple(unreadable)

    def _region(self, record: Record, size: tuple[int, int]) -> torch.Tensor | None:
        return None

    def region_of(self, index: int) -> torch.Tensor | None:
        """Always ``None``: the tree has no localisation ground truth."""
        return None


def _item_id(path: Path, root: Path) -> str:
    """An item's id: its path relative to the root, with ``/`` separators."""
    return path.relative_to(root).as_posix()


def _warn(root: Path, empty: list[str], not_walked: list[tuple[Path, str]]) -> None:
    """Log the class folders without images and the directories not walked."""
    if empty:
        logger.warning(
            "folder %s: class folder(s) %s hold no image (%s); they keep their label but have "
            "no items",
            root,
            ", ".join(empty),
            " ".join(IMAGE_EXTENSIONS),
        )
    for folder, reason in not_walked:
        logger.warning("folder %s: directory %s not walked: %s", root, folder, reason)
