"""One registry type for data sets, models, explainers and bench models, and one "did you mean".

A :class:`Registry` maps names to entries of one kind (a factory, a class, a description).
Registering a taken name fails; looking up an unknown name fails with the closest known names
(:func:`unknown_name_message`). What an entry must declare is checked by the ``register_*``
function of its kind (``register_dataset``, ``register_model``, ``register_explainer``); the
registry itself only stores.

Example:
    >>> colours = Registry[int]("colour")
    >>> colours.register("red", 1)
    1
    >>> colours.get("rde")
    Traceback (most recent call last):
    ...
    ValueError: unknown colour 'rde'; did you mean 'red'? (known: red)
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

__all__ = ["Registry", "closest_names", "did_you_mean", "unknown_name_message"]

Entry = TypeVar("Entry")

LISTED_NAMES = 20
"""Up to this many known names, an unknown-name message lists them all; beyond, it counts them."""


def closest_names(name: str, known: Iterable[str], *, most: int = 8) -> list[str]:
    """The known names closest to ``name``: close spellings first, then names containing it.

    Example:
        >>> closest_names("lite0", ["efficientnet_lite0", "resnet18"])
        ['efficientnet_lite0']
    """
    names = sorted(set(known))
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    lowered = name.lower()
    containing = [k for k in names if lowered and lowered in k.lower() and k not in close]
    return (close + containing)[:most]


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'a', 'b'?"`` for the closest known names, ``""`` when none is close.

    Example:
        >>> did_you_mean("mask", ["cells", "masks", "p"])
        "; did you mean 'masks'?"
    """
    suggestions = closest_names(name, known)
    return f"; did you mean {', '.join(map(repr, suggestions))}?" if suggestions else ""


def unknown_name_message(kind: str, name: str, known: Iterable[str]) -> str:
    """The message for an unknown ``name`` of ``kind``: the closest names, then the known ones.

    The known names are listed when there are at most :data:`LISTED_NAMES`, else counted.

    Example:
        >>> unknown_name_message("layer", "fc2", ["conv", "fc"])
        "unknown layer 'fc2'; did you mean 'fc'? (known: conv, fc)"
    """
    names = sorted(set(known))
    listing = ", ".join(names) if len(names) <= LISTED_NAMES else f"{len(names)} names"
    return f"unknown {kind} {name!r}{did_you_mean(name, names)} (known: {listing})"


class Registry(Generic[Entry]):
    """Named entries of one kind.

    Args:
        kind: what an entry is, in words (``"data set"``, ``"model"``, ...), for messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, entry: Entry) -> Entry:
        """Store ``entry`` under ``name`` and return it.

        Raises:
            ValueError: ``name`` is not a non-empty string or is already registered.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> Entry:
        """Remove ``name`` and return its entry (a test or a plug-in undoing its registration).

        Raises:
            ValueError: unknown name (the message lists the closest names).
        """
        entry = self.get(name)
        del self._entries[name]
        return entry

    def get(self, name: str) -> Entry:
        """The entry registered as ``name``.

        Raises:
            ValueError: unknown name; the message lists the closest names and the known ones.
        """
        if name not in self._entries:
            raise ValueError(unknown_name_message(self.kind, str(name), self._entries))
        return self._entries[name]

    def find(self, name: str) -> Entry | None:
        """The entry registered as ``name``, or ``None``."""
        return self._entries.get(name)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        """Whether ``name`` is registered."""
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        """The registered names, sorted."""
        return iter(self.names())

    def __len__(self) -> int:
        """How many entries are registered."""
        return len(self._entries)

    def __repr__(self) -> str:
        """``Registry('kind': names)``."""
        return f"Registry({self.kind!r}: {', '.join(self.names())})"
