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


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--bench-large``: also benchmark the large models on the CPU."""
    parser.addoption(
        "--bench-large",
        action="store_true",
        help="benchmarks: also ResNet-50, VGG-19 and pytorch-sidu on EfficientNet-Lite0 on the CPU",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Declare the ``bench_large`` marker."""
    config.addinivalue_line("markers", "bench_large: a CPU benchmark run only with --bench-large")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the speed benchmarks in tests/benchmarks unless ``--benchmark-only`` asked for them,
    and the ``bench_large`` ones unless ``--bench-large`` did."""
    if not config.getoption("benchmark_only", default=False):
        skip = pytest.mark.skip(reason="speed benchmark: run with `pytest --benchmark-only`")
        for item in items:
            if "benchmarks" in item.path.parts:
                item.add_marker(skip)
        return
    if not config.getoption("bench_large"):
        skip_large = pytest.mark.skip(reason="large CPU benchmark: add --bench-large")
        for item in items:
            if "bench_large" in item.keywords:
                item.add_marker(skip_large)
