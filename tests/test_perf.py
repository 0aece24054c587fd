"""The measuring helpers behind every speed and memory claim."""

import numpy as np
import pytest
import torch

from sidu_bench.perf import forward_ceiling, peak_memory_of


def test_peak_memory_counts_what_the_run_allocates_not_the_parent():
    parent_ballast = np.ones(300_000_000 // 8)  # a large parent must not leak into the number
    setup = "import numpy as np\nkeep = np.ones(50_000_000 // 8)"
    assert peak_memory_of(setup, "pass") < 10e6
    allocated = peak_memory_of(setup, "x = np.ones(200_000_000 // 8); x[:] = 2.0")
    assert allocated == pytest.approx(200e6, rel=0.1)
    assert parent_ballast.sum() > 0


def test_peak_memory_reports_a_failing_probe():
    with pytest.raises(RuntimeError, match="memory probe failed"):
        peak_memory_of("", "raise SystemExit(3)")


def test_forward_ceiling_takes_the_best_batch_size():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten()).eval()
    ceiling = forward_ceiling(model, torch.rand(1, 3, 16, 16), batch_sizes=(1, 4), min_seconds=0.05)
    assert set(ceiling.by_batch_size) == {1, 4}
    assert ceiling.images_per_second == max(ceiling.by_batch_size.values())
    assert ceiling.by_batch_size[ceiling.batch_size] == ceiling.images_per_second
