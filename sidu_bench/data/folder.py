"""Any ImageFolder tree (``<root>/<class>/**/<image>``): no regions, insertion/deletion only."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from sidu_bench.data.items import FileDataset, Preprocessing, Record
from sidu_bench.data.registry import register_dataset
from sidu_bench.domains import NATURAL_IMAGES

LAYOUT = "<class>/<image> (torchvision's ImageFolder; root is the tree itself)"


@register_dataset("folder")
class ImageFolderItems(FileDataset):
    """Images of an ImageFolder tree; category = class folder, region ``None``, no tolerance.

    Labels are the model's class indices when every class folder is named after a model class,
    else indices into the sorted class folders.
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
        try:
            classes, class_to_idx = find_classes(str(root))
            samples = make_dataset(str(root), class_to_idx, extensions=IMG_EXTENSIONS)
        except FileNotFoundError as error:
            raise self.missing(root) from error
        label_space, labels = preprocessing.labels(classes, class_space=self.class_space)
        records = []
        for path, index in samples:
            category = classes[index]
            item_id = Path(path).relative_to(root).as_posix()
            records.append(Record(item_id, Path(path), category, labels[category]))
        super().__init__(
            records, preprocessing=preprocessing, tolerance=None, label_space=label_space
        )

    def _region(self, record: Record, size: tuple[int, int]) -> torch.Tensor | None:
        return None

    def region_of(self, index: int) -> torch.Tensor | None:
        """Always ``None``: the tree has no localisation ground truth."""
        return None
