"""The measuring helpers behind every speed and memory claim."""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
import torch

from sidu_bench.perf import PeakMemory, forward_ceiling


def _peak_of_allocating(nbytes: int) -> int:
    """In a fresh process: keep 50 MB from setup, then track a ``nbytes`` allocation."""
    keep = np.ones(50_000_000 // 8)
    tracker = PeakMemory("cpu")
    tracker.start()
    if nbytes:
        x = np.ones(nbytes // 8)
        x[:] = 2.0
    assert keep.sum() > 0
    return tracker.peak()


def test_peak_memory_counts_what_the_run_allocates_not_the_parent():
    parent_ballast = np.ones(300_000_000 // 8)  # a large parent must not leak into the number
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context, max_tasks_per_child=1) as pool:
        assert pool.submit(_peak_of_allocating, 0).result() < 10e6
        allocated = pool.submit(_peak_of_allocating, 200_000_000).result()
    assert allocated == pytest.approx(200e6, rel=0.1)
    assert parent_ballast.sum() > 0


def test_forward_ceiling_takes_the_best_batch_size():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten()).eval()
    ceiling = forward_ceiling(model, torch.rand(1, 3, 16, 16), batch_sizes=(1, 4), min_seconds=0.05)
    assert set(ceiling.by_batch_size) == {1, 4}
    assert ceiling.images_per_second == max(ceiling.by_batch_size.values())
    assert ceiling.by_batch_size[ceiling.batch_size] == ceiling.images_per_second
