"""The data set registry and the item contract shared by every data set."""

from __future__ import annotations

import abc
import difflib
import os
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

NATURAL_IMAGES = "natural-images"
"""Domain of photographs (Caltech-101, ImageNet, VOC, image folders) and models trained on them."""
SYNTHETIC_SHAPES = "synthetic-shapes"
"""Domain of the generated shapes data set and the shipped CNN trained on it."""
DATA_ENV = "SIDU_BENCH_DATA"
"""Environment variable naming the data root used when no ``root`` is given."""
DEFAULT_DATA_DIR = Path("data")
"""The data root tried last when no ``root`` is given (relative to the working directory)."""

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


def missing_root(name: str, root: Path | None, layout: str) -> MissingDataError:
    """Build the error for a data root that is absent or lacks the expected layout."""
    return MissingDataError(name, root, layout)


class DataNotFoundError(FileNotFoundError):
    """No candidate root holds a data set; the message lists every place tried."""


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
        model_spec: the model whose preprocessing the items get.
        unreadable: items left out when the data set was listed (e.g. a corrupt annotation file
            read at listing time), each with its file and reason.
        root: the data root the items were read from (``None`` for generated data).

    Class attributes a data set declares (also for plug-ins, see :func:`register_dataset`):
    ``domain`` (:data:`NATURAL_IMAGES`, :data:`SYNTHETIC_SHAPES` or another string),
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
            image=self._preprocess(image),
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


DatasetFactory = Callable[..., ItemDataset]
_Factory = TypeVar("_Factory", bound=DatasetFactory)


@dataclass(frozen=True)
class DatasetInfo:
    """What a registered data set declares about itself, before any file is read.

    Attributes:
        name: registry name.
        domain: the kind of images (:data:`NATURAL_IMAGES`, :data:`SYNTHETIC_SHAPES`, ...); a
            model of another domain is refused unless the caller allows the mismatch.
        default_model: the model that serves the data set when none is named.
        class_space: identifier of its label space (``None`` when it has its own classes only).
        layout: the files expected under the root.
        needs_root: whether it reads files (``synthetic`` does not).
        supports_download: whether ``download=True`` can fetch it.
        search_root: whether, without a root, ``$SIDU_BENCH_DATA`` and ``./data`` are searched
            (``folder`` takes the tree itself as its root, so it needs an explicit one).
    """

    name: str
    domain: str
    default_model: str
    class_space: str | None
    layout: str
    needs_root: bool
    supports_download: bool
    search_root: bool


_DATASETS: dict[str, tuple[DatasetFactory, DatasetInfo]] = {}


def register_dataset(
    name: str,
    *,
    domain: str | None = None,
    default_model: str | None = None,
    class_space: str | None = None,
    layout: str | None = None,
    needs_root: bool | None = None,
    supports_download: bool | None = None,
    search_root: bool | None = None,
) -> Callable[[_Factory], _Factory]:
    """Register a factory ``(root, *, model_spec, **config) -> ItemDataset`` under ``name``.

    The keyword arguments declare the data set (see :class:`DatasetInfo`); any left out are read
    from the factory's class attributes of the same names. ``domain`` and ``default_model`` must
    be declared one way or the other.

    Raises:
        ValueError: the name is taken, or the domain or default model is not declared.
    """

    def decorator(factory: _Factory) -> _Factory:
        if name in _DATASETS:
            raise ValueError(f"data set {name!r} is already registered")

        def declared(key: str, given: object, default: object) -> object:
            return given if given is not None else getattr(factory, key, default)

        info = DatasetInfo(
            name=name,
            domain=declared("domain", domain, None),
            default_model=declared("default_model", default_model, None),
            class_space=declared("class_space", class_space, None),
            layout=str(declared("layout", layout, "")),
            needs_root=bool(declared("needs_root", needs_root, True)),
            supports_download=bool(declared("supports_download", supports_download, False)),
            search_root=bool(declared("search_root", search_root, True)),
        )
        for key in ("domain", "default_model"):
            if not isinstance(getattr(info, key), str) or not getattr(info, key):
                raise ValueError(
                    f"data set {name!r} must declare its {key} (a keyword of register_dataset or "
                    f"a class attribute of the factory)"
                )
        _DATASETS[name] = (factory, info)
        return factory

    return decorator


def list_datasets() -> list[str]:
    """Names of the registered data sets."""
    return sorted(_DATASETS)


def dataset_info(name: str) -> DatasetInfo:
    """What the data set ``name`` declares (domain, default model, layout, ...).

    Raises:
        ValueError: unknown name; the message lists the closest names.
    """
    if name not in _DATASETS:
        raise ValueError(unknown_name_message("data set", name, _DATASETS))
    return _DATASETS[name][1]


def root_candidates(root: str | Path | None) -> list[tuple[str, Path | None]]:
    """The data roots to try, in order, each with where it came from.

    A given ``root`` is the only candidate; without one: ``$SIDU_BENCH_DATA`` (when set), then
    ``./data``.
    """
    if root is not None:
        return [("--root", Path(root))]
    from_env = os.environ.get(DATA_ENV)
    candidates: list[tuple[str, Path | None]] = [
        (f"${DATA_ENV}", Path(from_env) if from_env else None)
    ]
    candidates.append(("./data", DEFAULT_DATA_DIR.resolve()))
    return candidates


def get_dataset(
    name: str, root: str | Path | None, model_spec: ModelSpec, **config: Any
) -> ItemDataset:
    """Build a registered data set whose items are preprocessed for ``model_spec``.

    Args:
        name: registry name (see :func:`list_datasets`).
        root: parent folder of the data set's standard subfolder (``<root>/caltech101``,
            ``<root>/imagenet-val``, ``<root>/VOCdevkit/VOC2007``), the tree itself for
            ``folder``, unused by ``synthetic``. ``None``: try ``$SIDU_BENCH_DATA``, then
            ``./data`` (see :func:`root_candidates`); with ``download=True`` the data goes to the
            first of them.
        model_spec: the model whose input size and normalisation the items get.
        **config: data-set options (``download``, ``num_items``, ``seed``, ...).

    Returns:
        The data set; its ``root`` attribute is the root it was read from.

    Raises:
        ValueError: unknown name; the message lists the closest names.
        FileNotFoundError: no candidate root holds the data set; the message lists every place
            tried, the expected layout and, where supported, ``--download``.
    """
    info = dataset_info(name)
    factory = _DATASETS[name][0]
    if not info.needs_root:
        return factory(None if root is None else Path(root), model_spec=model_spec, **config)
    candidates = root_candidates(root) if root is not None or info.search_root else []
    if config.get("download") and root is None:
        candidates = [next((c for c in candidates if c[1] is not None), candidates[-1])]
    tried = [] if candidates else ["--root (not given; this data set needs one)"]
    for source, path in candidates:
        if path is None:
            tried.append(f"{source} (not set)")
            continue
        try:
            dataset = factory(path, model_spec=model_spec, **config)
        except MissingDataError as error:
            tried.append(f"{source} = {path} (does not hold {error.layout})")
            continue
        dataset.root = path
        return dataset
    target = next((path for _, path in candidates if path is not None), DEFAULT_DATA_DIR)
    download = f", or add --download to fetch it into {target}" if info.supports_download else ""
    raise DataNotFoundError(
        f"data set {name!r} was not found; tried: {'; '.join(tried)}. Expected under the root: "
        f"{info.layout}. Pass --root DIR (the parent of the data set's folder) or set "
        f"${DATA_ENV}{download}",
    )
