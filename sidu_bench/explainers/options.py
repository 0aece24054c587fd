"""Typed explainer options: ``key=value`` parsing and the canonical label.

An explainer declares its options as a frozen dataclass whose fields have defaults and one of
the types ``int``, ``float`` or ``bool``; the dataclass validates values in ``__post_init__``.
The canonical label of an explainer is ``name`` followed by ``:key=value,...`` for the options
that differ from their defaults, keys sorted, values in canonical form (``repr`` for floats,
``true``/``false`` for booleans), so equal configurations always get equal labels:
``rise:masks=1000``, and ``rise`` for ``rise:masks=8000``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass

__all__ = ["NoOptions", "canonical_label", "check_option_types", "option_fields", "parse_value"]

OPTION_TYPES = (int, float, bool)
_INTEGER = re.compile(r"[+-]?\d+")
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


@dataclass(frozen=True)
class NoOptions:
    """The options of an explainer that takes none."""


def option_fields(options_type: type) -> dict[str, tuple[type, object]]:
    """Return ``{name: (type, default)}`` for the fields of an options dataclass.

    Raises:
        TypeError: ``options_type`` is not a dataclass, or a field has no default or a type
            other than ``int``, ``float`` or ``bool``.
    """
    if not dataclasses.is_dataclass(options_type):
        raise TypeError(f"explainer options must be a dataclass, got {options_type!r}")
    hints = typing.get_type_hints(options_type)
    fields = {}
    for field in dataclasses.fields(options_type):
        kind = hints[field.name]
        if kind not in OPTION_TYPES or field.default is dataclasses.MISSING:
            raise TypeError(
                f"option {options_type.__name__}.{field.name} must have a default and one of "
                f"the types int, float, bool; got {kind!r}"
            )
        fields[field.name] = (kind, field.default)
    return fields


def check_option_types(options: object) -> None:
    """Raise ``TypeError`` unless every option holds a value of its declared type.

    ``bool`` is not accepted as ``int`` or ``float``; an ``int`` is accepted as ``float``.
    """
    for key, (kind, _default) in option_fields(type(options)).items():
        value = getattr(options, key)
        accepted = (int, float) if kind is float else (kind,)
        if isinstance(value, bool) != (kind is bool) or not isinstance(value, accepted):
            raise TypeError(
                f"option {key!r} of {type(options).__name__} must be {kind.__name__}, got {value!r}"
            )


def parse_value(text: str, kind: type, *, where: str) -> int | float | bool:
    """Convert the string ``text`` of an option to ``kind`` (``int``, ``float`` or ``bool``).

    Args:
        text: the value as written in the spec.
        kind: the option's type.
        where: what to name in the error, e.g. ``"rise option 'masks'"``.

    Raises:
        ValueError: ``text`` is not a value of ``kind`` (floats must also be finite).
    """
    if kind is bool:
        if text.lower() in _BOOLEANS:
            return _BOOLEANS[text.lower()]
        raise ValueError(f"{where} expects a boolean (true/false), got {text!r}")
    if kind is int:
        if _INTEGER.fullmatch(text):
            return int(text)
        raise ValueError(f"{where} expects an integer, got {text!r}")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where} expects a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{where} expects a finite number, got {text!r}")
    return value


def _format_value(value: object) -> str:
    """Canonical text of an option value (round-trips through :func:`parse_value`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def canonical_label(name: str, options: object) -> str:
    """Return ``name[:key=value,...]`` with the non-default options, keys sorted.

    Example:
        >>> @dataclass(frozen=True)
        ... class Demo:
        ...     masks: int = 8000
        ...     p: float = 0.5
        >>> canonical_label("demo", Demo(masks=1000, p=0.5))
        'demo:masks=1000'
        >>> canonical_label("demo", Demo())
        'demo'
    """
    changed = [
        f"{key}={_format_value(getattr(options, key))}"
        for key, (_kind, default) in sorted(option_fields(type(options)).items())
        if getattr(options, key) != default
    ]
    return f"{name}:{','.join(changed)}" if changed else name
