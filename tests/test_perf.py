"""The measuring helpers behind every speed and memory claim."""

import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
import torch

from sidu_bench.bench import perf
from sidu_bench.bench.perf import (
    CeilingEngine,
    PeakMemory,
    best_forward_ceiling,
    ceiling_batch_sizes,
    ceiling_engines,
    engine_throughput,
)


def _peak_of_allocating(nbytes: int) -> int:
    """In a fresh process: keep 50 MB from setup, then track a ``nbytes`` allocation."""
    keep = np.ones(50_000_000 // 8)
    tracker = PeakMemory("cpu")
    tracker.start()
    x = np.ones(nbytes // 8)
    x[:] = 2.0
    assert keep.sum() > 0
    return tracker.peak()


def _peak_after_a_set_up(kept: int, transient: int, call: int) -> tuple[int, int]:
    """In a fresh process: the peak before anything is allocated; then a set-up keeps ``kept``
    bytes and briefly uses ``transient`` more, and after :meth:`PeakMemory.reset_peak` a call
    uses ``call`` bytes: the peak over it."""
    tracker = PeakMemory("cpu")
    tracker.start()
    idle = tracker.peak()
    held = np.ones(kept // 8)
    scratch = np.ones(transient // 8)
    scratch[:] = 3.0
    del scratch
    tracker.reset_peak()
    work = np.ones(call // 8)
    work[:] = 2.0
    assert held.sum() > 0
    return idle, tracker.peak()


def test_peak_memory_counts_what_the_run_allocates_not_the_parent():
    parent_ballast = np.ones(300_000_000 // 8)  # a large parent must not leak into the number
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context, max_tasks_per_child=1) as pool:
        allocated = pool.submit(_peak_of_allocating, 200_000_000).result()
        idle, after_set_up = pool.submit(
            _peak_after_a_set_up, 100_000_000, 300_000_000, 50_000_000
        ).result()
    assert idle < 10e6
    assert allocated == pytest.approx(200e6, rel=0.1)
    # what the set-up keeps counts, its transient peak does not
    assert after_set_up == pytest.approx(150e6, rel=0.1)
    assert parent_ballast.sum() > 0


class FakeCudaMemory:
    """``torch.cuda``'s allocator counters, driven by hand."""

    def __init__(self) -> None:
        self.allocated = 0
        self.peak = 0

    def allocate(self, nbytes: int) -> None:
        self.allocated += nbytes
        self.peak = max(self.peak, self.allocated)

    def install(self, monkeypatch) -> None:
        monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
        monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: self.allocated)
        monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: self.peak)
        monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", self._reset)

    def _reset(self, device=None) -> None:
        self.peak = self.allocated


def test_cuda_peak_memory_is_the_rise_over_the_baseline_as_on_the_cpu(monkeypatch):
    memory = FakeCudaMemory()
    memory.install(monkeypatch)
    memory.allocate(1000)  # the model and inputs, before the case
    tracker = PeakMemory("cuda")
    tracker.start()
    assert tracker.peak() == 0
    memory.allocate(300)  # kept by the set-up
    memory.allocate(5000)  # transient set-up work
    memory.allocate(-5000)
    tracker.reset_peak()
    memory.allocate(700)  # the call's own peak
    memory.allocate(-700)
    assert tracker.peak() == 300 + 700


def test_ceiling_batch_sizes_reach_the_engine_s_largest_cuda_chunk():
    assert ceiling_batch_sizes("cpu") == (1, 8, 32, 64)
    assert ceiling_batch_sizes("cuda:1")[-1] == 512
    assert ceiling_batch_sizes(torch.device("cuda")) == (1, 8, 32, 64, 128, 256, 512)


class FakeTimings:
    """Engines whose passes "take" ``seconds[(engine, batch size)]`` on a fake clock."""

    def __init__(self, seconds: dict[tuple[str, int], list[float] | float]) -> None:
        self.seconds = seconds
        self.calls: list[tuple[str, int]] = []

    def engine(self, name: str, *, channels_last: bool = False) -> CeilingEngine:
        def forward(batch: torch.Tensor) -> torch.Tensor:
            self.calls.append((name, batch.shape[0]))
            assert batch.is_contiguous(
                memory_format=torch.channels_last if channels_last else torch.contiguous_format
            )
            return batch

        return CeilingEngine(name, forward, channels_last=channels_last)

    def timer(self, function, device) -> float:
        function()
        key = self.calls[-1]
        value = self.seconds[key]
        if isinstance(value, list):
            return value.pop(0)
        return value


def reference_throughput(times: list[float], batch_size: int) -> float:
    """Images over the median of the pass times (the upper median for an even count)."""
    ordered = sorted(times)
    return batch_size / ordered[len(ordered) // 2]


def test_engine_throughput_is_images_over_the_median_pass_after_a_warm_up():
    passes = {1: [0.5, 0.1, 0.3, 0.2], 4: [2.0, 0.4, 5.0]}
    fake = FakeTimings({("e", 1): list(passes[1]), ("e", 4): list(passes[4])})
    rates = engine_throughput(
        fake.engine("e"),
        torch.rand(1, 3, 4, 4),
        batch_sizes=(1, 4),
        min_seconds=1.0,
        timer=fake.timer,
    )
    # one untimed warm-up, then passes until one second of them (at least two)
    assert fake.calls == [("e", 1)] * 5 + [("e", 4)] * 3
    assert rates[1] == pytest.approx(reference_throughput([0.5, 0.1, 0.3, 0.2], 1))
    assert rates[4] == pytest.approx(reference_throughput([2.0, 0.4], 4))


def test_the_ceiling_is_the_best_engine_and_batch_size():
    seconds = {
        ("torch", 1): 0.1,  # 10 images/s
        ("torch", 8): 0.5,  # 16
        ("torch-channels-last", 1): 0.08,  # 12.5
        ("torch-channels-last", 8): 0.4,  # 20
        ("onnxruntime", 1): 0.05,  # 20
        ("onnxruntime", 8): 0.25,  # 32
    }
    fake = FakeTimings(seconds)
    engines = [
        fake.engine("torch"),
        fake.engine("torch-channels-last", channels_last=True),
        fake.engine("onnxruntime"),
    ]
    ceiling = best_forward_ceiling(
        torch.nn.Identity(),
        torch.rand(1, 3, 4, 4),
        engines=engines,
        batch_sizes=(1, 8),
        min_seconds=0.0,
        timer=fake.timer,
    )
    names = ("torch", "torch-channels-last", "onnxruntime")
    expected = {name: {size: size / seconds[(name, size)] for size in (1, 8)} for name in names}
    assert list(ceiling.by_engine) == list(names)
    for name in names:
        assert ceiling.by_engine[name] == pytest.approx(expected[name])
    assert (ceiling.engine, ceiling.batch_size) == ("onnxruntime", 8)
    assert ceiling.images_per_second == pytest.approx(32.0)
    assert ceiling.by_batch_size == pytest.approx(expected["onnxruntime"])

    seconds[("torch-channels-last", 1)] = 0.01  # now channels-last at batch 1 wins
    ceiling = best_forward_ceiling(
        torch.nn.Identity(),
        torch.rand(1, 3, 4, 4),
        engines=engines,
        batch_sizes=(1, 8),
        min_seconds=0.0,
        timer=fake.timer,
    )
    assert (ceiling.engine, ceiling.batch_size) == ("torch-channels-last", 1)
    assert ceiling.images_per_second == pytest.approx(100.0)


def test_a_batch_size_out_of_cuda_memory_ends_the_sweep():
    calls = []

    def forward(batch):
        calls.append(batch.shape[0])
        if batch.shape[0] >= 8:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return batch

    rates = engine_throughput(
        CeilingEngine("torch", forward),
        torch.rand(1, 3, 4, 4),
        batch_sizes=(1, 8, 32),
        min_seconds=0.0,
        timer=lambda function, device: (function(), 0.5)[1],
    )
    assert rates == {1: 2.0}
    assert 32 not in calls


def test_engine_throughput_names_bad_arguments():
    engine = CeilingEngine("torch", torch.nn.Identity())
    with pytest.raises(ValueError, match=r"image must be one input \[1, C, H, W\]"):
        engine_throughput(engine, torch.rand(2, 3, 4, 4), batch_sizes=(1,))
    with pytest.raises(ValueError, match="batch_sizes must be positive ints"):
        engine_throughput(engine, torch.rand(1, 3, 4, 4), batch_sizes=(0,))


def small_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 14 * 14, 3)
    ).eval()


def test_the_cpu_engines_are_eager_channels_last_and_onnxruntime():
    pytest.importorskip("onnxruntime")
    net, image = small_net(), torch.rand(1, 3, 16, 16)
    engines, skipped = ceiling_engines(net, image)
    assert [e.name for e in engines] == ["torch", "torch-channels-last", "onnxruntime"]
    assert skipped == {}
    assert [e.channels_last for e in engines] == [False, True, False]
    batch = torch.rand(5, 3, 16, 16)
    with torch.inference_mode():
        expected = net(batch)
        for engine in engines:
            torch.testing.assert_close(engine.forward(batch), expected, rtol=1e-4, atol=1e-5)


def test_onnxruntime_is_left_out_of_the_ceiling_with_the_reason(monkeypatch):
    net, image = small_net(), torch.rand(1, 3, 16, 16)
    engines, skipped = ceiling_engines(net, image, dtype=torch.bfloat16)
    assert [e.name for e in engines] == ["torch", "torch-channels-last"]
    assert "bfloat16" in skipped["onnxruntime"]
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # not installed
    engines, skipped = ceiling_engines(net, image)
    assert [e.name for e in engines] == ["torch", "torch-channels-last"]
    assert "onnxruntime" in skipped["onnxruntime"]


def test_off_the_cpu_the_engines_are_eager_and_channels_last_only():
    # a meta tensor stands in for a CUDA one: ONNX Runtime is not considered off the CPU
    image = torch.empty(1, 3, 16, 16, device="meta")
    engines, skipped = ceiling_engines(small_net(), image)
    assert [(e.name, e.channels_last) for e in engines] == [
        ("torch", False),
        ("torch-channels-last", True),
    ]
    assert skipped == {}


def test_a_real_ceiling_names_its_engine_and_a_measured_batch_size():
    pytest.importorskip("onnxruntime")
    ceiling = best_forward_ceiling(
        small_net(), torch.rand(1, 3, 16, 16), batch_sizes=(1, 4), min_seconds=0.02
    )
    assert set(ceiling.by_engine) == {"torch", "torch-channels-last", "onnxruntime"}
    assert ceiling.images_per_second == max(
        rate for rates in ceiling.by_engine.values() for rate in rates.values()
    )
    assert ceiling.by_engine[ceiling.engine][ceiling.batch_size] == ceiling.images_per_second
    assert ceiling.setup_seconds["onnxruntime"] > 0
    assert ceiling.setup_seconds["torch"] == 0


def test_a_one_engine_ceiling_takes_its_best_batch_size():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten()).eval()
    ceiling = best_forward_ceiling(
        model,
        torch.rand(1, 3, 16, 16),
        batch_sizes=(1, 4),
        min_seconds=0.05,
        engines=[CeilingEngine("torch", model)],
    )
    assert set(ceiling.by_batch_size) == {1, 4}
    assert ceiling.images_per_second == max(ceiling.by_batch_size.values())
    assert ceiling.by_batch_size[ceiling.batch_size] == ceiling.images_per_second
    assert ceiling.engine == "torch"
    channels_last = CeilingEngine("torch-channels-last", model, channels_last=True)
    assert best_forward_ceiling(
        model, torch.rand(1, 3, 16, 16), batch_sizes=(2,), min_seconds=0.0, engines=[channels_last]
    ).engine == ("torch-channels-last")


def test_time_call_measures_the_function(monkeypatch):
    clock = iter([10.0, 12.5])
    monkeypatch.setattr(perf.time, "perf_counter", lambda: next(clock))
    ran = []
    assert perf.time_call(lambda: ran.append(1), torch.device("cpu")) == 2.5
    assert ran == [1]
