"""Any ImageFolder tree (``<root>/<class>/**/<image>``): no regions, insertion/deletion only."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from sidu_bench.data._api import (
    NATURAL_IMAGES,
    FileDataset,
    Record,
    label_space_labels,
    missing_root,
    register_dataset,
)

if TYPE_CHECKING:
    import torch

    from sidu_bench.models import ModelSpec

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

    def __init__(self, root: Path | None, *, model_spec: ModelSpec) -> None:
        if root is None or not root.is_dir():
            raise missing_root(self.name, root, LAYOUT)
        try:
            classes, class_to_idx = find_classes(str(root))
            samples = make_dataset(str(root), class_to_idx, extensions=IMG_EXTENSIONS)
        except FileNotFoundError as error:
            raise missing_root(self.name, root, LAYOUT) from error
        label_space, labels = label_space_labels(
            classes, class_space=self.class_space, model_spec=model_spec
        )
        records = []
        for path, index in samples:
            category = classes[index]
            item_id = Path(path).relative_to(root).as_posix()
            records.append(Record(item_id, Path(path), category, labels[category]))
        super().__init__(
            records,
            model_spec=model_spec,
            tolerance=None,
            label_space=label_space,
        )

    def _region(self, record: Record, size: tuple[int, int]) -> torch.Tensor | None:
        return None

    def region_of(self, index: int) -> torch.Tensor | None:
        """Always ``None``: the tree has no localisation ground truth."""
        return None
