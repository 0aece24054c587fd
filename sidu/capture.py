"""Capture the output of one layer during a forward pass; hooks that live for one block."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn

from sidu.tokens import Reshape, check_reshape, grid_view


@contextlib.contextmanager
def forward_hooks(
    modules: Iterable[nn.Module], hook: Callable[..., None], *, pre: bool = False
) -> Iterator[None]:
    """Register ``hook`` on every module for the duration of the block, removed on exit.

    Args:
        modules: the modules to hook.
        hook: a forward hook ``hook(module, inputs, output)``, or with ``pre`` a forward pre-hook
            ``hook(module, inputs)``.
        pre: register forward pre-hooks instead of forward hooks.

    Example:
        >>> seen = []
        >>> net = nn.Sequential(nn.Identity(), nn.ReLU())
        >>> with forward_hooks(net.children(), lambda m, _i, _o: seen.append(type(m).__name__)):
        ...     _ = net(torch.zeros(1))
        >>> seen
        ['Identity', 'ReLU']

    """
    handles = [
        module.register_forward_pre_hook(hook) if pre else module.register_forward_hook(hook)
        for module in modules
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class ActivationCapture:
    """A forward hook that keeps the latest output of one module, while armed.

    The hook stays registered between uses (see :class:`sidu.SIDU`'s context manager) but only
    records when armed, so the masked forward passes that follow do not keep activations alive.
    It counts how often the module fires in one armed pass: a module applied twice in one forward
    pass (a shared activation module, as in some EfficientNet code) has no single output.

    With ``reshape`` (a token sequence or channels-last layer, see :mod:`sidu.tokens`) the armed
    hook records the layer's output read as ``[B, C, h, w]`` and hands the model the output
    rebuilt from that grid (:func:`sidu.tokens.grid_view`): equal values, and the logits depend
    on the recorded grid, so gradients with respect to it are exact.
    """

    def __init__(self, module: nn.Module, name: str, reshape: Reshape | None = None) -> None:
        self.name = name
        self.reshape = check_reshape(reshape)
        self._module = module
        self._handle: torch.utils.hooks.RemovableHandle | None = None
        self._armed = False
        self._outputs: list[torch.Tensor] = []

    @property
    def attached(self) -> bool:
        """Whether the hook is registered."""
        return self._handle is not None

    def attach(self) -> None:
        """Register the hook (idempotent)."""
        if self._handle is None:
            self._handle = self._module.register_forward_hook(self._record)

    def detach(self) -> None:
        """Remove the hook (idempotent)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _record(self, _module: nn.Module, _inputs: object, output: object) -> object:
        if not self._armed:
            return None
        if self.reshape is None:
            self._outputs.append(output)
            return None
        grid, rebuilt = grid_view(self.reshape, output, self.name)
        self._outputs.append(grid)
        return rebuilt

    def arm(self) -> None:
        """Start recording the next forward pass."""
        self._outputs = []
        self._armed = True

    def take(self) -> torch.Tensor:
        """Stop recording and return the layer's one output as ``[B, K, h, w]``."""
        self._armed = False
        outputs, self._outputs = self._outputs, []
        if not outputs:
            raise RuntimeError(
                f"layer {self.name!r} did not run in the model's forward pass; choose a layer "
                "that the forward pass uses"
            )
        if len(outputs) > 1:
            raise ValueError(
                f"layer {self.name!r} ran {len(outputs)} times in one forward pass, so it has no "
                "single output; choose (or wrap into its own module) a layer used once"
            )
        output = outputs[0]
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output)
            hint = (
                "; a token sequence [B, N, C] (a Vision Transformer's block) needs "
                "reshape=sidu.TokenGrid(prefix=<class and register tokens>)"
                if isinstance(output, torch.Tensor) and output.dim() == 3
                else ""
            )
            raise ValueError(
                f"layer {self.name!r} must output a 4-D feature map [B, K, h, w], got {shape}{hint}"
            )
        return output
