"""A pytest plugin that keeps only the tests needing CUDA (``-p select_cuda``, for check.sh).

A test needs CUDA when it carries a ``cuda`` marker or a ``skipif`` marker whose reason (or
string condition) mentions CUDA or a GPU, e.g. ``pytest.mark.skipif(not
torch.cuda.is_available(), reason="needs CUDA")``. This way every CUDA test of the suite is
selected without a registered marker; the others are reported as deselected.
"""

from __future__ import annotations

import re

import pytest

_CUDA = re.compile(r"cuda|gpu", re.IGNORECASE)


def needs_cuda(item: pytest.Item) -> bool:
    """Whether ``item`` is a CUDA test (see the module docstring)."""
    if item.get_closest_marker("cuda") is not None:
        return True
    for mark in item.iter_markers("skipif"):
        texts = [str(mark.kwargs.get("reason", ""))]
        texts += [arg for arg in mark.args if isinstance(arg, str)]
        if any(_CUDA.search(text) for text in texts):
            return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect every test that does not need CUDA."""
    keep = [item for item in items if needs_cuda(item)]
    dropped = [item for item in items if not needs_cuda(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = keep
