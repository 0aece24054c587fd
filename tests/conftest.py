"""Fixtures shared by several test modules, and the opt-in for speed benchmarks."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tiny models on one thread; on a loaded 2-core machine thread wake-ups
    dominate small ops (per-step loops ran ~100x slower on two threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the speed benchmarks in tests/benchmarks unless ``--benchmark-only`` asked for them."""
    if config.getoption("benchmark_only", default=False):
        return
    skip = pytest.mark.skip(reason="speed benchmark: run with `pytest --benchmark-only`")
    for item in items:
        if "benchmarks" in item.path.parts:
            item.add_marker(skip)
