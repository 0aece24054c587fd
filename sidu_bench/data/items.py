"""The item contract every data set honours, and what a data set is given to prepare items.

A data set yields :class:`Item` entries (an image preprocessed for the model, its label, category
and ground-truth region). It is built with a :class:`Preprocessing`: the image transform and the
model's class names and class space, not the model itself, so that data sets never depend on
models (``get_dataset`` builds it from a model spec with :meth:`Preprocessing.for_model`).
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import torch
from torch.utils.data import Dataset

from sidu_bench.data.images import image_size, load_rgb, preprocess
from sidu_bench.data.order import limit_order

REAL_DATA_TOLERANCE = 15.0
"""Pointing-game tolerance in pixels for real images of ~224-500 px (Zhang et al., TorchRay)."""

EMPTY_REGION = "region empty after clipping"

Transform = Callable[[torch.Tensor], torch.Tensor]
"""An image transform: RGB ``[3, H0, W0]`` (``uint8``, or float in ``[0, 1]``) to the model's
input ``float32 [3, S, S]``."""


class ModelSpecLike(Protocol):
    """What :meth:`Preprocessing.for_model` reads of a model spec (``ModelSpec`` has it all)."""

    @property
    def input_size(self) -> int:
        """The square input size S."""

    @property
    def mean(self) -> Sequence[float]:
        """Per-channel mean of the normalisation of ``[0, 1]`` RGB values."""

    @property
    def std(self) -> Sequence[float]:
        """Per-channel standard deviation of that normalisation."""

    @property
    def interpolation(self) -> str:
        """Resize interpolation (``"bilinear"`` or ``"bicubic"``)."""

    @property
    def class_names(self) -> Sequence[str]:
        """One name per logit, in logit order."""

    @property
    def class_space(self) -> str | None:
        """Identifier of the model's label space (``None`` when unknown)."""


@dataclass(frozen=True)
class Preprocessing:
    """How a data set prepares its items for one model.

    Attributes:
        transform: maps a stored RGB image to the model's input (see :data:`Transform`).
        class_names: the model's classes, one per logit: what ``Item.label`` indexes when the
            data set's labels are the model's.
        class_space: identifier of the model's label space (``"imagenet-1k"``, ...); ``None``
            when unknown.
    """

    transform: Transform
    class_names: tuple[str, ...]
    class_space: str | None = None

    @classmethod
    def for_model(cls, spec: ModelSpecLike) -> Preprocessing:
        """Squash to the model's input size and normalise as it expects; the model's classes.

        Example:
            >>> from types import SimpleNamespace
            >>> spec = SimpleNamespace(input_size=8, mean=(0.5,) * 3, std=(0.25,) * 3,
            ...     interpolation="bilinear", class_names=("a", "b"), class_space=None)
            >>> preparation = Preprocessing.for_model(spec)
            >>> tuple(preparation.transform(torch.zeros(3, 20, 30, dtype=torch.uint8)).shape)
            (3, 8, 8)
        """
        transform = functools.partial(
            preprocess,
            size=spec.input_size,
            mean=tuple(spec.mean),
            std=tuple(spec.std),
            interpolation=spec.interpolation,
        )
        return cls(transform, tuple(spec.class_names), spec.class_space)

    def labels(
        self, classes: Sequence[str], *, class_space: str | None
    ) -> tuple[bool, dict[str, int]]:
        """Decide whether a data set's classes are the model's, and map class name -> label.

        The labels are in the model's class space when the model declares the data set's
        ``class_space`` with as many classes, or when every data set class name is one of the
        model's class names (mapped by name). Otherwise labels index the data set's own list.

        Args:
            classes: the data set's class names, in its own label order.
            class_space: the data set's class space (``None`` when it has its own classes only).

        Returns:
            ``(label_space, labels)``.

        Example:
            >>> Preprocessing(lambda image: image, ("cat", "dog")).labels(["dog"], class_space=None)
            (True, {'dog': 1})
        """
        if (
            class_space is not None
            and self.class_space == class_space
            and len(self.class_names) == len(classes)
        ):
            return True, {name: i for i, name in enumerate(classes)}
        model_index = {name: i for i, name in enumerate(self.class_names)}
        if classes and all(name in model_index for name in classes):
            return True, {name: model_index[name] for name in classes}
        return False, {name: i for i, name in enumerate(classes)}


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


class MissingDataError(FileNotFoundError):
    """A data root that is absent or lacks the data set's layout.

    Attributes:
        dataset: the data set's registry name.
        root: the root that was tried (``None`` when none was given).
        layout: the expected layout under the root.
    """

    def __init__(self, dataset: str, root: Path | None, layout: str) -> None:
        self.dataset, self.root, self.layout = dataset, root, layout
        where = "no root was given" if root is None else f"{root} does not hold it"
        super().__init__(f"data set {dataset!r} expects this layout under root: {layout}; {where}")


class UnreadableItemError(ValueError):
    """One item whose image or annotation cannot be read.

    Attributes:
        item_id: the item's id.
        file: the file that could not be read.
        reason: what went wrong.
    """

    def __init__(self, item_id: str, file: Path | str, reason: str) -> None:
        self.item_id, self.file, self.reason = item_id, str(file), reason
        super().__init__(f"item {item_id!r}: cannot read {file}: {reason}")


@dataclass(frozen=True)
class Unreadable:
    """An item left out of a data set because its image or annotation cannot be read."""

    item_id: str
    file: str
    reason: str

    @classmethod
    def from_error(cls, error: UnreadableItemError) -> Unreadable:
        """The record of an :class:`UnreadableItemError`."""
        return cls(error.item_id, error.file, error.reason)


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
        preprocessing: the transform and model classes the items are prepared with.
        unreadable: items left out when the data set was listed (e.g. a corrupt annotation file
            read at listing time), each with its file and reason.
        root: the data root the items were read from (``None`` for generated data).

    Class attributes a data set declares (also for plug-ins, see
    :func:`~sidu_bench.data.register_dataset`): ``domain`` (a value of :mod:`sidu_bench.domains`
    or another string),
    ``default_model`` (the model that serves it unless told otherwise), ``class_space``,
    ``layout`` (the expected files under the root) and ``needs_root``.
    """

    name: str = ""
    domain: str | None = None
    default_model: str | None = None
    class_space: str | None = None
    layout: str = ""
    needs_root: bool = True
    supports_download: bool = False
    search_root: bool = True
    unreadable: tuple[Unreadable, ...] = ()
    root: Path | None = None

    def __init__(
        self,
        *,
        preprocessing: Preprocessing,
        item_ids: Sequence[str],
        item_categories: Sequence[str],
        tolerance: float | None,
        label_space: bool,
    ) -> None:
        if len(item_ids) != len(item_categories):
            raise ValueError("item_ids and item_categories differ in length")
        if len(set(item_ids)) != len(item_ids):
            raise ValueError(f"data set {self.name!r} has duplicate item ids")
        self.preprocessing = preprocessing
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
        """Items among ``indices`` whose region is empty after clipping (e.g. a ``--limit`` run).

        Items whose files cannot be read are not counted here (they are unreadable, not empty).
        """
        ids = []
        for index in indices:
            try:
                region = self.region_of(index)
            except UnreadableItemError:
                continue
            if region is not None and not bool(region.any()):
                ids.append(self.item_ids[index])
        return Skipped(tuple(ids))

    def order(self, *, limit: int | None = None, seed: int = 0) -> list[int]:
        """Indices of the first ``limit`` items of the seeded category-cycling order."""
        return limit_order(self.item_ids, self.item_categories, limit=limit, seed=seed)

    @classmethod
    def missing(cls, root: Path | None, layout: str | None = None) -> MissingDataError:
        """The error for a root that is absent or lacks ``layout`` (default: the class's)."""
        return MissingDataError(cls.name, root, cls.layout if layout is None else layout)


class FileDataset(ItemDataset):
    """A data set of image files listed as :class:`Record` entries."""

    def __init__(
        self,
        records: Sequence[Record],
        *,
        preprocessing: Preprocessing,
        tolerance: float | None,
        label_space: bool,
    ) -> None:
        super().__init__(
            preprocessing=preprocessing,
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
        """Ground-truth region of item ``index``, reading only the image header.

        Raises:
            UnreadableItemError: the image header or the annotation cannot be read.
        """
        record = self.records[index]
        try:
            size = image_size(record.path)
        except (OSError, ValueError) as error:
            reason = f"unreadable image: {error}"
            raise UnreadableItemError(record.id, record.path, reason) from error
        return self._read_region(record, size)

    def __getitem__(self, index: int) -> Item:
        """Load item ``index``: decode, rasterise the region at original size, preprocess.

        Raises:
            UnreadableItemError: the image cannot be decoded or the annotation cannot be read.
        """
        record = self.records[index]
        try:
            image = load_rgb(record.path)
        except (OSError, ValueError, SyntaxError) as error:
            reason = f"unreadable image: {error}"
            raise UnreadableItemError(record.id, record.path, reason) from error
        size = (int(image.shape[1]), int(image.shape[2]))
        return Item(
            id=record.id,
            image=self.preprocessing.transform(image),
            label=record.label,
            category=record.category,
            region=self._read_region(record, size),
            original_size=size,
        )

    def _read_region(self, record: Record, size: tuple[int, int]) -> torch.Tensor | None:
        """:meth:`_region`, with a bad annotation reported as :class:`UnreadableItemError`."""
        try:
            return self._region(record, size)
        except (OSError, ValueError) as error:
            file = record.annotation if isinstance(record.annotation, Path) else record.path
            raise UnreadableItemError(record.id, file, f"corrupt annotation: {error}") from error
