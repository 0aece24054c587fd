"""The data set registry: what each data set declares, and where its files are looked for."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
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

DatasetFactory = Callable[..., ItemDataset]
_Factory = TypeVar("_Factory", bound=DatasetFactory)


class DataNotFoundError(NamedParameterError, FileNotFoundError):
    """No candidate root holds a data set; the message lists every place tried."""


@dataclass(frozen=True)
class DatasetInfo:
    """What a registered data set declares about itself, before any file is read.

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


DATASETS: Registry[tuple[DatasetFactory, DatasetInfo]] = Registry("data set")
"""Every registered data set: its factory and what it declares."""


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
    """Register a factory ``(root, *, preprocessing, **config) -> ItemDataset`` under ``name``.

    The factory gets the data root (``None`` when the data set needs none) and a
    :class:`~sidu_bench.data.items.Preprocessing` (the image transform and the model's classes).
    The keyword arguments declare the data set (see :class:`DatasetInfo`); any left out are read
    from the factory's class attributes of the same names. ``domain`` and ``default_model`` must
    be declared one way or the other.

    Raises:
        ValueError: the name is taken, or the domain or default model is not declared.
    """

    def decorator(factory: _Factory) -> _Factory:
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
        DATASETS.register(name, (factory, info))
        return factory

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
    candidates: list[tuple[str, Path | None]] = [
        (f"${DATA_ENV}", Path(from_env) if from_env else None)
    ]
    candidates.append(("./data", DEFAULT_DATA_DIR.resolve()))
    return candidates


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
