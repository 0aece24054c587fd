"""The data set registry and the item contract shared by every data set."""

from __future__ import annotations

import abc
import difflib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch.utils.data import Dataset

from sidu_bench.data.images import image_size, load_rgb, preprocess
from sidu_bench.data.order import limit_order

if TYPE_CHECKING:
    from sidu_bench.models import ModelSpec

REAL_DATA_TOLERANCE = 15.0
"""Pointing-game tolerance in pixels for real images of ~224-500 px (Zhang et al., TorchRay)."""

EMPTY_REGION = "region empty after clipping"


def unknown_name_message(kind: str, name: str, known: Iterable[str]) -> str:
    """Build the error message for an unknown name, with the closest known names."""
    known = sorted(set(known))
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
    lowered = [k for k in known if name.lower() and name.lower() in k.lower() and k not in close]
    suggestions = (close + lowered)[:8]
    hint = f"; did you mean: {', '.join(suggestions)}?" if suggestions else ""
    return f"unknown {kind} {name!r}{hint} ({len(known)} known)"


@dataclass(frozen=True)
class Item:
    """One image with one explained region.

    Attributes:
        id: stable identifier, unique within the data set (used for seeding and records).
        image: ``float32 [3, S, S]``, squashed to the model's input size and normalised.
        label: class index in the model's class space when the data set's ``label_space`` is
            true, else in the data set's own class list; ``-1`` when unknown.
        category: the data set's ground-truth category, used for per-class grouping.
        region: ``bool [H0, W0]`` ground-truth region at the original size (possibly empty), or
            ``None`` when the data set has no localisation ground truth.
        original_size: ``(H0, W0)`` of the image as stored.
    """

    id: str
    image: torch.Tensor
    label: int
    category: str
    region: torch.Tensor | None
    original_size: tuple[int, int]


@dataclass(frozen=True)
class Skipped:
    """Items the localisation metrics skip, with the reason (they stay in insertion/deletion)."""

    ids: tuple[str, ...]
    reason: str = EMPTY_REGION

    @property
    def count(self) -> int:
        """Number of skipped items."""
        return len(self.ids)


@dataclass(frozen=True)
class Record:
    """Where one item of a file-based data set lives (``annotation`` is data-set specific)."""

    id: str
    path: Path
    category: str
    label: int
    annotation: Any = None


def label_space_labels(
    class_names: Sequence[str], *, class_space: str | None, model_spec: ModelSpec
) -> tuple[bool, dict[str, int]]:
    """Decide whether the data set's classes are the model's, and map class name -> label.

    The labels are in the model's class space when the model declares the data set's
    ``class_space`` with as many classes, or when every data set class name is one of the model's
    class names (mapped by name). Otherwise labels index the data set's own class list.

    Returns:
        ``(label_space, labels)``.
    """
    if (
        class_space is not None
        and model_spec.class_space == class_space
        and model_spec.num_classes == len(class_names)
    ):
        return True, {name: i for i, name in enumerate(class_names)}
    model_index = {name: i for i, name in enumerate(model_spec.class_names)}
    if class_names and all(name in model_index for name in class_names):
        return True, {name: model_index[name] for name in class_names}
    return False, {name: i for i, name in enumerate(class_names)}


def missing_root(name: str, root: Path | None, layout: str) -> FileNotFoundError:
    """Build the error for a data root that is absent or lacks the expected layout."""
    where = "no root was given" if root is None else f"{root} does not hold it"
    return FileNotFoundError(f"data set {name!r} expects this layout under root: {layout}; {where}")


class ItemDataset(Dataset[Item], abc.ABC):
    """Base of every data set: a torch Dataset of :class:`Item` with its metadata.

    Attributes:
        name: registry name.
        item_ids: stable id of every item, in index order.
        item_categories: ground-truth category of every item, in index order.
        categories: sorted ground-truth categories present.
        tolerance: declared pointing-game tolerance in original-image pixels (``None`` without
            regions).
        label_space: whether ``Item.label`` is in the model's class space, so that explaining the
            label (``--target label``) is valid.
        model_spec: the model whose preprocessing the items get.
    """

    name: str = ""

    def __init__(
        self,
        *,
        model_spec: ModelSpec,
        item_ids: Sequence[str],
        item_categories: Sequence[str],
        tolerance: float | None,
        label_space: bool,
    ) -> None:
        if len(item_ids) != len(item_categories):
            raise ValueError("item_ids and item_categories differ in length")
        if len(set(item_ids)) != len(item_ids):
            raise ValueError(f"data set {self.name!r} has duplicate item ids")
        self.model_spec = model_spec
        self.item_ids = tuple(item_ids)
        self.item_categories = tuple(item_categories)
        self.categories = tuple(sorted(set(item_categories)))
        self.tolerance = tolerance
        self.label_space = label_space

    @abc.abstractmethod
    def __getitem__(self, index: int) -> Item:
        """Load item ``index``."""

    @abc.abstractmethod
    def region_of(self, index: int) -> torch.Tensor | None:
        """Ground-truth region of item ``index`` at original size, without decoding pixels."""

    def __len__(self) -> int:
        """Number of items."""
        return len(self.item_ids)

    @cached_property
    def skipped(self) -> Skipped:
        """Items whose region is empty after clipping (scans every annotation once)."""
        return self.skipped_among(range(len(self)))

    def skipped_among(self, indices: Iterable[int]) -> Skipped:
        """Items among ``indices`` whose region is empty after clipping (e.g. a ``--limit`` run)."""
        ids = []
        for index in indices:
            region = self.region_of(index)
            if region is not None and not bool(region.any()):
                ids.append(self.item_ids[index])
        return Skipped(tuple(ids))

    def order(self, *, limit: int | None = None, seed: int = 0) -> list[int]:
        """Indices of the first ``limit`` items of the seeded category-cycling order."""
        return limit_order(self.item_ids, self.item_categories, limit=limit, seed=seed)

    def _preprocess(self, image: torch.Tensor) -> torch.Tensor:
        spec = self.model_spec
        return preprocess(
            image,
            size=spec.input_size,
            mean=spec.mean,
            std=spec.std,
            interpolation=spec.interpolation,
        )


class FileDataset(ItemDataset):
    """A data set of image files listed as :class:`Record` entries."""

    def __init__(
        self,
        records: Sequence[Record],
        *,
        model_spec: ModelSpec,
        tolerance: float | None,
        label_space: bool,
    ) -> None:
        super().__init__(
            model_spec=model_spec,
            item_ids=[r.id for r in records],
            item_categories=[r.category for r in records],
            tolerance=tolerance,
            label_space=label_space,
        )
        self.records = tuple(records)

    @abc.abstractmethod
    def _region(self, record: Record, size: tuple[int, int]) -> torch.Tensor | None:
        """Rasterise the record's region for an image of ``size`` = ``(H0, W0)``."""

    def region_of(self, index: int) -> torch.Tensor | None:
        """Ground-truth region of item ``index``, reading only the image header."""
        record = self.records[index]
        return self._region(record, image_size(record.path))

    def __getitem__(self, index: int) -> Item:
        """Load item ``index``: decode, rasterise the region at original size, preprocess."""
        record = self.records[index]
        image = load_rgb(record.path)
        size = (int(image.shape[1]), int(image.shape[2]))
        return Item(
            id=record.id,
            image=self._preprocess(image),
            label=record.label,
            category=record.category,
            region=self._region(record, size),
            original_size=size,
        )


DatasetFactory = Callable[..., ItemDataset]
_Factory = TypeVar("_Factory", bound=DatasetFactory)
_DATASETS: dict[str, DatasetFactory] = {}


def register_dataset(name: str) -> Callable[[_Factory], _Factory]:
    """Register a factory ``(root, *, model_spec, **config) -> ItemDataset`` under ``name``."""

    def decorator(factory: _Factory) -> _Factory:
        if name in _DATASETS:
            raise ValueError(f"data set {name!r} is already registered")
        _DATASETS[name] = factory
        return factory

    return decorator


def list_datasets() -> list[str]:
    """Names of the registered data sets."""
    return sorted(_DATASETS)


def get_dataset(
    name: str, root: str | Path | None, model_spec: ModelSpec, **config: Any
) -> ItemDataset:
    """Build a registered data set whose items are preprocessed for ``model_spec``.

    Args:
        name: registry name (see :func:`list_datasets`).
        root: parent folder of the data set's standard subfolder (``<root>/caltech101``,
            ``<root>/imagenet-val``, ``<root>/VOCdevkit/VOC2007``), the tree itself for
            ``folder``, unused by ``synthetic``.
        model_spec: the model whose input size and normalisation the items get.
        **config: data-set options (``download``, ``num_items``, ``seed``, ...).

    Raises:
        ValueError: unknown name; the message lists the closest names.
        FileNotFoundError: the root lacks the expected layout (the message shows it).
    """
    if name not in _DATASETS:
        raise ValueError(unknown_name_message("data set", name, _DATASETS))
    return _DATASETS[name](None if root is None else Path(root), model_spec=model_spec, **config)
