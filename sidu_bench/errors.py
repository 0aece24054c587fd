"""Errors that name the parameter at fault, so that each front end spells it its own way.

The library writes a parameter's name in backticks inside the message template
(``"`dtype` must be one of float32, bfloat16, float16, got 'x'"``). ``str(error)`` shows the
plain names (``dtype must be ...``); :meth:`NamedParameterError.spelled` respells them, which is
how ``python -m sidu_bench`` shows its flags (``--dtype must be ...``) without the library
knowing about the command line.

Example:
    >>> error = ParameterError("`target` label needs labels in the model's classes")
    >>> str(error), error.parameters
    ("target label needs labels in the model's classes", ('target',))
    >>> error.spelled(lambda name: "--" + name)
    "--target label needs labels in the model's classes"
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

__all__ = ["NamedParameterError", "ParameterError", "check_choice"]

_PARAMETER = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`")


class NamedParameterError(Exception):
    """Base of errors whose message names parameters as ```name``` in a template.

    Args:
        template: the message, each parameter name in backticks.

    Attributes:
        template: the message as given.
    """

    def __init__(self, template: str) -> None:
        self.template = template
        super().__init__(self.spelled(str))

    @property
    def parameters(self) -> tuple[str, ...]:
        """The parameter names the message mentions, in order, each once."""
        return tuple(dict.fromkeys(_PARAMETER.findall(self.template)))

    def spelled(self, spell: Callable[[str], str]) -> str:
        """The message with each parameter name replaced by ``spell(name)``."""
        return _PARAMETER.sub(lambda match: spell(match.group(1)), self.template)


class ParameterError(NamedParameterError, ValueError):
    """A bad argument value (a ``ValueError``) naming its parameter."""


def check_choice(parameter: str, value: object, choices: Iterable[object]) -> None:
    """Raise a :class:`ParameterError` naming ``parameter`` unless ``value`` is in ``choices``.

    Example:
        >>> check_choice("target", "label", ("pred", "label"))
        >>> check_choice("target", "guess", ("pred", "label"))
        Traceback (most recent call last):
        ...
        sidu_bench.errors.ParameterError: target must be one of pred, label, got 'guess'
    """
    allowed = tuple(choices)
    if value not in allowed:
        names = ", ".join(map(str, allowed))
        raise ParameterError(f"`{parameter}` must be one of {names}, got {value!r}")
