"""Run a user's model in eval mode without leaving a trace on it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule of ``model`` in eval mode, then restore each one's own flag.

    Restoring per submodule (not just ``model.train(was_training)``) keeps models whose parts
    were deliberately left in different modes exactly as they were.
    """
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in flags:
            module.training = training
