"""Plug-ins: explainers, models and data sets from other modules and from installed packages.

Two ways in, the same for ``evaluate``, ``bench`` and ``list``:

* ``--import MODULE[,MODULE]``: each module is imported from ``sys.path`` (under
  ``python -m sidu_bench`` the current folder comes first); its ``@register_explainer``,
  ``@register_model`` and ``@register_dataset`` decorators register what it defines;
* entry points of installed packages in the groups ``sidu_bench.explainers``,
  ``sidu_bench.models`` and ``sidu_bench.datasets``, declared in the package's ``pyproject.toml``::

      [project.entry-points."sidu_bench.explainers"]
      mine = "mypackage.saliency"                  # a module: importing it registers
      other = "mypackage.saliency:register"        # a function: called once, no arguments
      third = "mypackage.saliency:ThirdExplainer"  # an Explainer subclass: registered as "third"

Each module and entry point loads once per process. One that fails (import error, an error in
the function, a name registered twice) raises :class:`PluginError`, whose message names the
plug-in and the failing file and line. :func:`provenance` describes a built explainer (label,
options, class, package and version) for ``config.json``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import re
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType

from sidu_bench.explainers import Explainer, list_explainers, register_explainer
from sidu_bench.explainers.options import option_fields
from sidu_bench.io import installed_version

__all__ = [
    "ENTRY_POINT_GROUPS",
    "Plugin",
    "PluginError",
    "import_plugins",
    "load_entry_points",
    "load_plugins",
    "loaded_plugins",
    "provenance",
]

ENTRY_POINT_GROUPS = ("sidu_bench.explainers", "sidu_bench.models", "sidu_bench.datasets")
"""Entry-point groups read by :func:`load_entry_points`."""

_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_LOADED: dict[tuple[str, str, str], Plugin] = {}


class PluginError(RuntimeError):
    """A plug-in failed to load; the message names the plug-in and the cause."""


@dataclass(frozen=True)
class Plugin:
    """A loaded plug-in.

    Attributes:
        kind: ``"import"`` (``--import``) or ``"entry point"``.
        name: the module name, or the entry point's name.
        target: the module, or the entry point's value (``module`` or ``module:attribute``).
        group: the entry-point group (``""`` for ``--import``).
        package: the installed distribution that provides it (``None``: not installed).
        version: that distribution's version.
    """

    kind: str
    name: str
    target: str
    group: str = ""
    package: str | None = None
    version: str | None = None

    def describe(self) -> str:
        """Name the plug-in for a message, e.g. ``plug-in module 'mine' (--import)``."""
        if self.kind == "import":
            return f"plug-in module {self.name!r} (--import)"
        origin = f"{self.package} {self.version}" if self.package else "no installed package"
        return f"plug-in entry point {self.name!r} = {self.target!r} (group {self.group}, {origin})"

    @property
    def module(self) -> str:
        """The module the plug-in loads."""
        return self.target.partition(":")[0]


def import_plugins(modules: Iterable[str]) -> list[Plugin]:
    """Import plug-in modules by name (what ``--import`` does).

    Args:
        modules: dotted module names, e.g. ``["myplugin", "mypackage.saliency"]``.

    Returns:
        One :class:`Plugin` per module, in order.

    Raises:
        ValueError: a name is not a dotted module name (e.g. a file path).
        PluginError: a module is not found or fails to import.
    """
    loaded = []
    for name in modules:
        if not isinstance(name, str) or not _MODULE_NAME.fullmatch(name):
            raise ValueError(
                f"--import expects module names such as myplugin or mypackage.saliency, got "
                f"{name!r}; for a file myplugin.py run from its folder (or add the folder to "
                "PYTHONPATH) and pass --import myplugin"
            )
        key = ("import", "", name)
        if key not in _LOADED:
            package = _distribution(name)
            plugin = Plugin(
                "import", name, name, package=package, version=installed_version(package)
            )
            _import(plugin)
            _LOADED[key] = plugin
        loaded.append(_LOADED[key])
    return loaded


def load_entry_points(groups: Sequence[str] = ENTRY_POINT_GROUPS) -> list[Plugin]:
    """Load the entry points of installed packages in ``groups``.

    An entry point names a module (importing it registers), a function (called once with no
    arguments) or, in ``sidu_bench.explainers``, an :class:`Explainer` subclass (registered
    under the entry point's name unless its decorator registered it already).

    Returns:
        The loaded plug-ins, sorted by group and name.

    Raises:
        PluginError: an entry point fails to load or names something else.
    """
    loaded = []
    for group in groups:
        for entry in sorted(metadata.entry_points(group=group), key=lambda e: e.name):
            key = (group, entry.name, entry.value)
            if key not in _LOADED:
                distribution = getattr(entry, "dist", None)
                package = distribution.metadata["Name"] if distribution is not None else None
                plugin = Plugin(
                    "entry point",
                    entry.name,
                    entry.value,
                    group=group,
                    package=package,
                    version=distribution.version if distribution is not None else None,
                )
                _load_entry_point(plugin, entry)
                _LOADED[key] = plugin
            loaded.append(_LOADED[key])
    return loaded


def load_plugins(imports: Iterable[str] = ()) -> list[Plugin]:
    """Import ``imports`` (``--import``), then load every installed entry point.

    What the CLI's ``evaluate``, ``bench`` and ``list`` call first. Loading is idempotent.

    Args:
        imports: module names, in order.

    Returns:
        The plug-ins loaded so far in this process (:func:`loaded_plugins`).

    Raises:
        ValueError: a module name is malformed.
        PluginError: a plug-in fails to load (the message names it).
    """
    import_plugins(list(imports))
    load_entry_points()
    return loaded_plugins()


def loaded_plugins() -> list[Plugin]:
    """Return the plug-ins loaded in this process, in loading order."""
    return list(_LOADED.values())


def provenance(explainer: Explainer) -> dict[str, object]:
    """Describe an explainer for ``config.json``: where it comes from and how it is set.

    The package is the class's ``package`` attribute when it has one (an adapter of another
    library names that library, e.g. ``"captum"``), else the installed distribution of the
    class's module. For a module of no installed distribution (a local ``--import`` file) the
    file and its SHA-256 are given instead of a version.

    Args:
        explainer: a built explainer.

    Returns:
        ``{"label", "name", "class", "options", "source", "package", "version"}`` plus
        ``"file"`` and ``"sha256"`` for a module of no installed distribution. ``source`` is
        ``"built-in"``, ``"--import MODULE"``, ``"entry point GROUP:NAME"`` or
        ``"registered in code"``.

    Example:
        >>> from sidu_bench.explainers import get_explainer
        >>> record = provenance(get_explainer("center"))
        >>> record["label"], record["source"], record["package"]
        ('center', 'built-in', 'sidu-bench')
    """
    if not isinstance(explainer, Explainer):
        raise TypeError(f"explainer must be an Explainer, got {type(explainer).__name__}")
    cls = type(explainer)
    declared = getattr(cls, "package", None)
    package = declared if isinstance(declared, str) else _distribution(cls.__module__)
    record: dict[str, object] = {
        "label": explainer.label,
        "name": cls.name,
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "options": {
            key: getattr(explainer.options, key) for key in option_fields(type(explainer.options))
        },
        "source": _source(cls.__module__),
        "package": package,
        "version": installed_version(package),
    }
    if package is None:
        path = inspect.getsourcefile(cls)
        if path is not None:
            record["file"] = str(Path(path).resolve())
            record["sha256"] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return record


def _import(plugin: Plugin) -> None:
    """Import ``plugin.name``; raise :class:`PluginError` naming it on any failure."""
    try:
        importlib.import_module(plugin.name)
    except ModuleNotFoundError as error:
        if error.name is not None and (
            plugin.name == error.name or plugin.name.startswith(f"{error.name}.")
        ):
            raise PluginError(
                f"{plugin.describe()} not found on sys.path; for a file {plugin.name}.py run "
                "from its folder or add the folder to PYTHONPATH"
            ) from error
        raise _failure(plugin, "failed to import", error) from error
    except Exception as error:  # a plug-in may raise anything at import time
        raise _failure(plugin, "failed to import", error) from error


def _load_entry_point(plugin: Plugin, entry: metadata.EntryPoint) -> None:
    """Load one entry point: import its module, call its function or register its class."""
    try:
        loaded = entry.load()
    except Exception as error:  # a plug-in may raise anything at import time
        raise _failure(plugin, "failed to load", error) from error
    if isinstance(loaded, ModuleType):
        return
    if isinstance(loaded, type) and issubclass(loaded, Explainer):
        if plugin.group != "sidu_bench.explainers":
            raise PluginError(
                f"{plugin.describe()} names an Explainer class; declare it in the group "
                "sidu_bench.explainers"
            )
        if loaded.name and loaded.name in list_explainers():
            return
        try:
            register_explainer(plugin.name)(loaded)
        except (TypeError, ValueError) as error:
            raise _failure(plugin, "failed to register", error) from error
        return
    if isinstance(loaded, type) or not callable(loaded):
        raise PluginError(
            f"{plugin.describe()} names {loaded!r}; an entry point must name a module, a "
            "function of no arguments or an Explainer subclass"
        )
    try:
        loaded()
    except Exception as error:  # the plug-in's function may raise anything
        raise _failure(plugin, "failed in its registration function", error) from error


def _failure(plugin: Plugin, what: str, error: BaseException) -> PluginError:
    """A :class:`PluginError` naming the plug-in, the cause and where it was raised."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return PluginError(f"{plugin.describe()} {what}: {type(error).__name__}: {error}{where}")


def _source(module: str) -> str:
    """How the classes of ``module`` got registered (see :func:`provenance`)."""
    if module == "sidu_bench" or module.startswith("sidu_bench."):
        return "built-in"
    for plugin in _LOADED.values():
        if module == plugin.module or module.startswith(f"{plugin.module}."):
            if plugin.kind == "import":
                return f"--import {plugin.name}"
            return f"entry point {plugin.group}:{plugin.name}"
    return "registered in code"


def _distribution(module: str) -> str | None:
    """The installed distribution that provides the top-level package of ``module``."""
    names = _top_level_distributions().get(module.partition(".")[0], [])
    return names[0] if names else None


@functools.cache
def _top_level_distributions() -> dict[str, list[str]]:
    """``importlib.metadata.packages_distributions()`` without repeated names (cached)."""
    return {
        top: list(dict.fromkeys(names)) for top, names in metadata.packages_distributions().items()
    }
