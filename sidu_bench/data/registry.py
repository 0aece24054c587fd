"""The data set registry: what each data set declares, and where its files are looked for."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from sidu_bench.data.items import (
    ItemDataset,
    MissingDataError,
    ModelSpecLike,
    Preprocessing,
)
from sidu_bench.errors import NamedParameterError
from sidu_bench.registry import Registry

DATA_ENV = "SIDU_BENCH_DATA"
"""Environment variable naming the data root used when no ``root`` is given."""
DEFAULT_DATA_DIR = Path("data")
"""The data root tried last when no ``root`` is given (relative to the working directory)."""

_Dataset = TypeVar("_Dataset", bound=type[ItemDataset])


class DataNotFoundError(NamedParameterError, FileNotFoundError):
    """No candidate root holds a data set; the message lists every place tried."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a registered data set declares about itself (class attributes), before any file is read.

    Attributes:
        name: registry name.
        domain: the kind of images (:data:`~sidu_bench.domains.NATURAL_IMAGES`,
            :data:`~sidu_bench.domains.SYNTHETIC_SHAPES`, ...); a model of another domain is
            refused unless the caller allows the mismatch.
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


DATASETS: Registry[tuple[type[ItemDataset], DatasetInfo]] = Registry("data set")
"""Every registered data set: its class and what it declares."""


def register_dataset(name: str) -> Callable[[_Dataset], _Dataset]:
    """Register an :class:`~sidu_bench.data.items.ItemDataset` subclass under ``name``.

    The class is built as ``cls(root, *, preprocessing, **config)``: the data root (``None``
    when the data set needs none) and a :class:`~sidu_bench.data.items.Preprocessing` (the
    image transform and the model's classes). Its class attributes declare the data set (the
    fields of :class:`DatasetInfo`); ``domain`` and ``default_model`` must be set.

    Raises:
        ValueError: the name is taken, the class is not an ``ItemDataset`` subclass, or it does
            not declare its domain or default model.
    """

    def decorator(cls: _Dataset) -> _Dataset:
        if not (isinstance(cls, type) and issubclass(cls, ItemDataset)):
            raise ValueError(f"data set {name!r} must be an ItemDataset subclass, got {cls!r}")
        declared = {f.name: getattr(cls, f.name) for f in fields(DatasetInfo) if f.name != "name"}
        for key in ("domain", "default_model"):
            if not isinstance(declared[key], str) or not declared[key]:
                raise ValueError(f"data set {name!r} must declare its {key} (a class attribute)")
        DATASETS.register(name, (cls, DatasetInfo(name, **declared)))
        return cls

    return decorator


def list_datasets() -> list[str]:
    """Names of the registered data sets."""
    return DATASETS.names()


def dataset_info(name: str) -> DatasetInfo:
    """What the data set ``name`` declares (domain, default model, layout, ...).

    Raises:
        ValueError: unknown name; the message lists the closest names.
    """
    return DATASETS.get(name)[1]


def root_candidates(root: str | Path | None) -> list[tuple[str, Path | None]]:
    """The data roots to try, in order, each with where it came from.

    A given ``root`` is the only candidate; without one: ``$SIDU_BENCH_DATA`` (when set), then
    ``./data``. Where a candidate came from is a message fragment (the parameter in backticks,
    see :mod:`sidu_bench.errors`).
    """
    if root is not None:
        return [("`root`", Path(root))]
    from_env = os.environ.get(DATA_ENV)
    return [
        (f"${DATA_ENV}", Path(from_env) if from_env else None),
        ("./data", DEFAULT_DATA_DIR.resolve()),
    ]


def get_dataset(
    name: str,
    root: str | Path | None,
    model_spec: ModelSpecLike | Preprocessing,
    **config: Any,
) -> ItemDataset:
    """Build a registered data set whose items are preprocessed for ``model_spec``.

    Args:
        name: registry name (see :func:`list_datasets`).
        root: parent folder of the data set's standard subfolder (``<root>/caltech101``,
            ``<root>/imagenet-val``, ``<root>/VOCdevkit/VOC2007``), the tree itself for
            ``folder``, unused by ``synthetic``. ``None``: try ``$SIDU_BENCH_DATA``, then
            ``./data`` (see :func:`root_candidates`); with ``download=True`` the data goes to the
            first of them.
        model_spec: the model whose input size, normalisation and classes the items get (a
            :class:`~sidu_bench.models.ModelSpec`), or a
            :class:`~sidu_bench.data.items.Preprocessing` (a transform and class names).
        **config: data-set options (``download``, ``num_items``, ``seed``, ...).

    Returns:
        The data set; its ``root`` attribute is the root it was read from.

    Raises:
        ValueError: unknown name; the message lists the closest names.
        DataNotFoundError: (a ``FileNotFoundError``) no candidate root holds the data set; the
            message lists every place tried, the expected layout and, where supported,
            ``download``.
    """
    factory, info = DATASETS.get(name)
    preprocessing = (
        model_spec if isinstance(model_spec, Preprocessing) else Preprocessing.for_model(model_spec)
    )
    if not info.needs_root:
        path = None if root is None else Path(root)
        return factory(path, preprocessing=preprocessing, **config)
    candidates = root_candidates(root) if root is not None or info.search_root else []
    if config.get("download") and root is None:
        candidates = [next((c for c in candidates if c[1] is not None), candidates[-1])]
    tried = [] if candidates else ["`root` (not given; this data set needs one)"]
    for source, path in candidates:
        if path is None:
            tried.append(f"{source} (not set)")
            continue
        try:
            dataset = factory(path, preprocessing=preprocessing, **config)
        except MissingDataError as error:
            tried.append(f"{source} = {path} (does not hold {error.layout})")
            continue
        dataset.root = path
        return dataset
    target = next((path for _, path in candidates if path is not None), DEFAULT_DATA_DIR)
    download = f", or use `download` to fetch it into {target}" if info.supports_download else ""
    raise DataNotFoundError(
        f"data set {name!r} was not found; tried: {'; '.join(tried)}. Expected under the root: "
        f"{info.layout}. Pass `root` (the parent of the data set's folder) or set "
        f"${DATA_ENV}{download}",
    )
