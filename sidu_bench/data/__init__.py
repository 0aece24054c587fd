"""Data sets with ground-truth regions, behind a registry.

``get_dataset(name, root, model_spec, **config)`` returns an :class:`ItemDataset` whose items are
:class:`Item` (fields ``id``, ``image``, ``label``, ``category``, ``region``, ``original_size``).
A data set is built with a :class:`Preprocessing` (the image transform and the model's classes),
which ``get_dataset`` makes from the model spec; data sets never import models.
Registered: ``caltech101``, ``imagenet-val``, ``voc2007``, ``folder``, ``synthetic``.
"""

from sidu_bench.data import caltech101, folder, imagenet_val, synthetic, voc2007
from sidu_bench.data.items import (
    FileDataset,
    Item,
    ItemDataset,
    Preprocessing,
    Record,
    Skipped,
    Transform,
    Unreadable,
    UnreadableItemError,
)
from sidu_bench.data.registry import (
    DATA_ENV,
    DataNotFoundError,
    DatasetInfo,
    dataset_info,
    get_dataset,
    list_datasets,
    register_dataset,
)

__all__ = [
    "DATA_ENV",
    "DataNotFoundError",
    "DatasetInfo",
    "FileDataset",
    "Item",
    "ItemDataset",
    "Preprocessing",
    "Record",
    "Skipped",
    "Transform",
    "Unreadable",
    "UnreadableItemError",
    "caltech101",
    "dataset_info",
    "folder",
    "get_dataset",
    "imagenet_val",
    "list_datasets",
    "register_dataset",
    "synthetic",
    "voc2007",
]
