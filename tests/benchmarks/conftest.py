"""Benchmarks run only under ``pytest --benchmark-only``; a plain ``pytest`` skips them."""

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the speed benchmarks unless the run asked for them."""
    if config.getoption("benchmark_only", default=False):
        return
    skip = pytest.mark.skip(reason="speed benchmark: run with `pytest --benchmark-only`")
    for item in items:
        if "benchmarks" in item.path.parts:
            item.add_marker(skip)
