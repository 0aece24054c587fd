"""What an explainer must leave as it found it: the model's weights, modes, hooks and gradients.

:func:`model_state` takes a cheap snapshot of a model; :func:`state_changes` says in words what
differs between two snapshots. :class:`~sidu_bench.explainers.base.Explainer` snapshots its
model before and after every call and raises when anything changed: a method that zeroes a
weight, switches a module to train mode or leaves a hook behind would otherwise change the maps
and scores of every explainer after it, silently.

A snapshot holds :func:`sidu.backends.weights_fingerprint` of the parameters and buffers (by
name), each module's class, training flag and instance-level ``forward``, the keys of every
module's forward, forward-pre, backward and backward-pre hooks (full backward hooks included),
the global module hooks (``torch.nn.modules.module.register_module_*_hook``), the parameters'
tensor hooks, and each parameter's ``.grad`` (storage and version).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules import module as torch_module

from sidu.backends import weights_fingerprint

__all__ = ["ModelState", "model_state", "state_changes"]

_MODULE_HOOKS = (
    ("forward-pre hook", "_forward_pre_hooks"),
    ("forward hook", "_forward_hooks"),
    ("backward-pre hook", "_backward_pre_hooks"),
    ("backward hook", "_backward_hooks"),
)
"""Each kind of module hook, by the attribute that holds its dictionary (keyed by handle id)."""

_GLOBAL_HOOKS = (
    ("global forward-pre hook", "_global_forward_pre_hooks"),
    ("global forward hook", "_global_forward_hooks"),
    ("global backward-pre hook", "_global_backward_pre_hooks"),
    ("global backward hook", "_global_backward_hooks"),
)
"""The hooks of every module (``torch.nn.modules.module.register_module_*_hook``)."""

_SHOWN = 4
"""Names listed per kind of change before ``and N more``."""


@dataclass(frozen=True)
class ModelState:
    """A snapshot of what a model's forward and backward passes depend on.

    Attributes:
        modules: per module name (``""``: the model itself), its class name, training flag and
            the ``id`` of a ``forward`` set on the instance (``None``: the class's).
        tensors: per ``"parameter 'name'"`` / ``"buffer 'name'"``, its
            :func:`~sidu.backends.weights_fingerprint` entry.
        hooks: per ``(where, kind)`` that has hooks, the hooks' handle ids; ``where`` is a module
            name, ``"parameter 'name'"`` (tensor hooks) or ``None`` (global module hooks).
        gradients: per parameter name, ``(data_ptr, version)`` of its ``.grad`` (``None``: none).
    """

    modules: Mapping[str, tuple[str, bool, int | None]]
    tensors: Mapping[str, tuple[object, ...]]
    hooks: Mapping[tuple[str | None, str], tuple[int, ...]]
    gradients: Mapping[str, tuple[int, int | None] | None]


def model_state(model: nn.Module) -> ModelState:
    """Snapshot ``model``'s weights, modes, hooks and gradients (see :class:`ModelState`).

    Costs one pass over the weights (a bit sum per tensor, about a float32 sum) and one over the
    modules.

    Args:
        model: the model.

    Returns:
        The snapshot; compare two with :func:`state_changes`.
    """
    named = [
        *((f"parameter {name!r}", tensor) for name, tensor in model.named_parameters()),
        *((f"buffer {name!r}", tensor) for name, tensor in model.named_buffers()),
    ]
    fingerprint = weights_fingerprint(model)
    tensors = {name: entry for (name, _), entry in zip(named, fingerprint, strict=True)}
    modules: dict[str, tuple[str, bool, int | None]] = {}
    hooks: dict[tuple[str | None, str], tuple[int, ...]] = {}
    for name, module in model.named_modules():
        forward = vars(module).get("forward")
        modules[name] = (
            type(module).__name__,
            module.training,
            None if forward is None else id(forward),
        )
        for kind, attribute in _MODULE_HOOKS:
            _add_hooks(hooks, name, kind, getattr(module, attribute, None))
    for kind, attribute in _GLOBAL_HOOKS:
        _add_hooks(hooks, None, kind, getattr(torch_module, attribute, None))
    gradients: dict[str, tuple[int, int | None] | None] = {}
    for name, parameter in model.named_parameters():
        _add_hooks(hooks, f"parameter {name!r}", "tensor hook", parameter._backward_hooks)
        grad = parameter.grad
        gradients[name] = None if grad is None else (grad.data_ptr(), _version(grad))
    return ModelState(modules, tensors, hooks, gradients)


def state_changes(before: ModelState, after: ModelState) -> list[str]:
    """Say what differs between two snapshots of one model, one phrase per kind of change.

    Args:
        before: the earlier snapshot.
        after: the later snapshot.

    Returns:
        Phrases such as ``"weights changed: parameter 'features.0.weight'"`` or ``"training mode
        changed (eval -> train): module 'features.3' (Dropout)"``; empty when nothing changed.

    Example:
        >>> model = nn.Sequential(nn.Linear(2, 2), nn.Dropout())
        >>> before = model_state(model)
        >>> _ = model[0].bias.data.zero_()
        >>> _ = model[1].train(False)
        >>> for change in state_changes(before, model_state(model)):
        ...     print(change)
        weights changed: parameter '0.bias'
        training mode changed (train -> eval): module '1' (Dropout)
    """
    changes: list[str] = []
    old, new = before.tensors, after.tensors
    _phrase(changes, "weights changed", [n for n in old if n in new and new[n] != old[n]])
    _phrase(changes, "weights added", [name for name in new if name not in old])
    _phrase(changes, "weights removed", [name for name in old if name not in new])
    old, new = before.modules, after.modules
    common = [name for name in old if name in new]
    for was, modes in ((False, "eval -> train"), (True, "train -> eval")):
        flipped = [_module(name, new) for name in common if old[name][1] == was != new[name][1]]
        _phrase(changes, f"training mode changed ({modes})", flipped)
    _phrase(changes, "modules added", [_module(name, new) for name in new if name not in old])
    _phrase(changes, "modules removed", [_module(name, old) for name in old if name not in new])
    _phrase(
        changes,
        "modules replaced",
        [f"{_module(n, old)} -> {new[n][0]}" for n in common if old[n][0] != new[n][0]],
    )
    _phrase(
        changes,
        "forward replaced",
        [_module(name, new) for name in common if old[name][2] != new[name][2]],
    )
    places: dict[str, list[str]] = {}
    for where, kind in dict.fromkeys([*before.hooks, *after.hooks]):
        had, has = set(before.hooks.get((where, kind), ())), set(after.hooks.get((where, kind), ()))
        place = "every module (global)" if where is None else _where(where, new, old)
        for count, verb in ((len(has - had), "left on"), (len(had - has), "removed from")):
            if count:
                places.setdefault(f"{kind}s {verb}", []).append(
                    place if count == 1 else f"{place} ({count})"
                )
    for what, where in places.items():
        _phrase(changes, what, where)
    old_grads, new_grads = before.gradients, after.gradients
    _phrase(
        changes,
        ".grad written",
        [
            f"parameter {name!r}"
            for name, grad in new_grads.items()
            if grad is not None and old_grads.get(name) != grad
        ],
    )
    _phrase(
        changes,
        ".grad cleared",
        [
            f"parameter {name!r}"
            for name, grad in old_grads.items()
            if grad is not None and new_grads.get(name, grad) is None
        ],
    )
    return changes


def _add_hooks(
    hooks: dict[tuple[str | None, str], tuple[int, ...]],
    where: str | None,
    kind: str,
    table: Mapping[int, object] | None,
) -> None:
    """Record the handle ids of ``table`` (a hook dictionary) when it has any."""
    if table:
        hooks[(where, kind)] = tuple(table)


def _module(name: str, modules: Mapping[str, tuple[str, bool, int | None]]) -> str:
    """Name a module for a message: ``module 'features.3' (Dropout)`` or ``the model (VGG)``."""
    kind = modules[name][0]
    return f"the model ({kind})" if name == "" else f"module {name!r} ({kind})"


def _where(where: str, *snapshots: Mapping[str, tuple[str, bool, int | None]]) -> str:
    """Name the owner of hooks: a module (by name) or a parameter (already in words)."""
    for modules in snapshots:
        if where in modules:
            return _module(where, modules)
    return where


def _phrase(changes: list[str], what: str, names: Iterable[str]) -> None:
    """Append ``what: a, b, c, d and N more`` when ``names`` is not empty."""
    names = list(names)
    if names:
        shown = ", ".join(names[:_SHOWN])
        more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
        changes.append(f"{what}: {shown}{more}")


def _version(tensor: torch.Tensor) -> int | None:
    """The tensor's version counter; ``None`` for an inference tensor (it has none)."""
    return None if tensor.is_inference() else tensor._version
