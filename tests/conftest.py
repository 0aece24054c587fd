"""Fixtures shared by several test modules, and the opt-in for speed benchmarks."""

from collections.abc import Callable
from types import SimpleNamespace

import pytest
import sidu_models
import torch
from torch import nn


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tiny models on one thread; on a loaded 2-core machine thread wake-ups
    dominate small ops (per-step loops ran ~100x slower on two threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_cnn() -> Callable[..., nn.Sequential]:
    """The suite's seeded tiny classifier: ``tiny_cnn(seed=0, channels=6, classes=5, stride=2,
    dtype=torch.float64)`` (:func:`sidu_models.tiny_cnn`; module-level helpers import it)."""
    return sidu_models.tiny_cnn


@pytest.fixture
def masked_forward_spy(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """Record the explainers' calls of the masked-forward engine.

    Returns a namespace whose ``batch_sizes`` lists the ``batch_size`` of every call and whose
    ``slices`` lists the size of every slice of masks the engine asked the mask source for.
    """
    import sidu_bench.explainers.base as explainer_base

    engine = explainer_base.masked_forward
    record = SimpleNamespace(batch_sizes=[], slices=[])

    def spy(model, images, masks, **kwargs):
        record.batch_sizes.append(kwargs["batch_size"])
        original = masks.masks

        def recording(image_index, start, stop):
            record.slices.append(stop - start)
            return original(image_index, start, stop)

        masks.masks = recording
        return engine(model, images, masks, **kwargs)

    monkeypatch.setattr(explainer_base, "masked_forward", spy)
    return record


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--bench-large``: also benchmark the large models on the CPU."""
    large = "benchmarks: also ResNet-50, VGG-19 and pytorch-sidu on EfficientNet-Lite0 on the CPU"
    parser.addoption("--bench-large", action="store_true", help=large)


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
