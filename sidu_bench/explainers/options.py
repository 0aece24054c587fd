"""Typed explainer options: ``key=value`` parsing and the canonical label.

An explainer declares its options as a frozen dataclass whose fields have defaults and one of
the types ``int``, ``float``, ``bool``, ``str`` or ``typing.Literal["a", "b", ...]`` (an enum of
strings, e.g. ``reduce: Literal["sum", "abs_sum", "max_abs"] = "abs_sum"``); the dataclass
validates ranges in ``__post_init__``. A string value is a word without ``,``, ``:``, ``=`` or
white space, so that every value can be written in a spec. The canonical label of an explainer
is ``name`` followed by ``:key=value,...`` for the options that differ from their defaults, keys
sorted, values in canonical form (``repr`` for floats, ``true``/``false`` for booleans, strings
as they are), so equal configurations always get equal labels: ``rise:masks=1000``, and ``rise``
for ``rise:masks=8000``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass

__all__ = [
    "NoOptions",
    "canonical_label",
    "check_option_types",
    "choices",
    "option_fields",
    "parse_value",
    "type_name",
]

OPTION_TYPES = (int, float, bool, str)
"""The plain option types; ``Literal`` enums of strings are accepted besides."""
_INTEGER = re.compile(r"[+-]?\d+")
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
_WORD = re.compile(r"[^,:=\s]+")


@dataclass(frozen=True)
class NoOptions:
    """The options of an explainer that takes none."""


def option_fields(options_type: type) -> dict[str, tuple[object, object]]:
    """Return ``{name: (type, default)}`` for the fields of an options dataclass.

    The type is ``int``, ``float``, ``bool``, ``str`` or a ``typing.Literal`` of strings.

    Raises:
        TypeError: ``options_type`` is not a dataclass, or a field has no default, another type,
            or a default that is not one of its values.
    """
    if not dataclasses.is_dataclass(options_type):
        raise TypeError(f"explainer options must be a dataclass, got {options_type!r}")
    hints = typing.get_type_hints(options_type)
    fields = {}
    for field in dataclasses.fields(options_type):
        kind = hints[field.name]
        if field.default is dataclasses.MISSING or not _is_option_type(kind):
            raise TypeError(
                f"option {options_type.__name__}.{field.name} must have a default and one of "
                f"the types int, float, bool, str or Literal['a', 'b', ...]; got {kind!r}"
            )
        if typing.get_origin(kind) is typing.Literal and field.default not in choices(kind):
            raise TypeError(
                f"option {options_type.__name__}.{field.name}: default {field.default!r} is not "
                f"one of {', '.join(choices(kind))}"
            )
        fields[field.name] = (kind, field.default)
    return fields


def _is_option_type(kind: object) -> bool:
    """Whether ``kind`` is a plain option type or a non-empty ``Literal`` of word strings."""
    if kind in OPTION_TYPES:
        return True
    if typing.get_origin(kind) is not typing.Literal:
        return False
    values = typing.get_args(kind)
    return bool(values) and all(
        isinstance(value, str) and _WORD.fullmatch(value) for value in values
    )


def choices(kind: object) -> tuple[str, ...]:
    """Return the values of a ``Literal`` option type (``()`` for the plain types).

    Example:
        >>> choices(typing.Literal["sum", "abs_sum"])
        ('sum', 'abs_sum')
        >>> choices(int)
        ()
    """
    if typing.get_origin(kind) is typing.Literal:
        return tuple(typing.get_args(kind))
    return ()


def type_name(kind: object) -> str:
    """Return ``int``, ``float``, ``bool``, ``str`` or ``one of a|b|c`` for an option type."""
    values = choices(kind)
    return f"one of {'|'.join(values)}" if values else getattr(kind, "__name__", repr(kind))


def check_option_types(options: object) -> None:
    """Raise ``TypeError`` unless every option holds a value of its declared type.

    ``bool`` is not accepted as ``int`` or ``float``; an ``int`` is accepted as ``float``. A
    ``Literal`` option must hold one of its values; a ``str`` option that differs from its
    default must be a word without ``,``, ``:``, ``=`` or white space (so that its label parses).
    """
    for key, (kind, default) in option_fields(type(options)).items():
        value = getattr(options, key)
        values = choices(kind)
        if values:
            valid = isinstance(value, str) and value in values
        elif kind is str:
            valid = isinstance(value, str) and (value == default or bool(_WORD.fullmatch(value)))
        else:
            accepted = (int, float) if kind is float else (kind,)
            valid = isinstance(value, bool) == (kind is bool) and isinstance(value, accepted)
        if not valid:
            raise TypeError(
                f"option {key!r} of {type(options).__name__} must be {type_name(kind)}, "
                f"got {value!r}"
            )


def parse_value(text: str, kind: object, *, where: str) -> int | float | bool | str:
    """Convert the string ``text`` of an option to ``kind``.

    Args:
        text: the value as written in the spec.
        kind: the option's type: ``int``, ``float``, ``bool``, ``str`` or a ``Literal``.
        where: what to name in the error, e.g. ``"rise option 'masks'"``.

    Raises:
        ValueError: ``text`` is not a value of ``kind`` (floats must also be finite, strings
            words without ``,:=`` or white space, enum values among the listed ones).

    Example:
        >>> parse_value("max_abs", typing.Literal["sum", "max_abs"], where="demo option 'reduce'")
        'max_abs'
    """
    values = choices(kind)
    if values:
        if text in values:
            return text
        raise ValueError(f"{where} expects one of {', '.join(values)}, got {text!r}")
    if kind is str:
        if _WORD.fullmatch(text):
            return text
        raise ValueError(f"{where} expects a word without ',', ':', '=' or spaces, got {text!r}")
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
