"""sidu.chunking: the CUDA chunk sizing of the engine and insertion/deletion, with CUDA faked.

No GPU is needed: the CUDA memory API is replaced by a fake allocator whose allocations the fake
modules below make, and the device-kind switch is set to "cuda" for CPU tensors.
"""

from __future__ import annotations

import importlib
import math
import random

import pytest
import torch
from sidu_models import tiny_cnn
from torch import nn

import sidu
import sidu.chunking as chunking
import sidu.engine as engine
from sidu.chunking import (
    CUDA_BUDGET_FRACTION,
    CUDA_MAX_BATCH,
    balanced_chunk_size,
    batch_size_for,
    cuda_memory_budget,
    probe_bytes_per_image,
)
from sidu_bench.metrics import insertion_deletion

# The package re-exports the function under the module's name: import the module itself.
insertion_deletion_module = importlib.import_module("sidu_bench.metrics.insertion_deletion")

BASE = 123_456  # bytes the fake device holds before anything runs


class FakeCudaMemory:
    """The allocator statistics of one fake device; fake modules allocate and release bytes."""

    def __init__(self, free: int = 10**12) -> None:
        self.allocated = BASE
        self.free = free

    def alloc(self, nbytes: int) -> None:
        self.allocated += nbytes

    def release(self, nbytes: int) -> None:
        self.allocated -= nbytes
        assert self.allocated >= BASE

    def nested(self, device=None) -> dict:
        return {"allocated_bytes": {"all": {"current": self.allocated}}}

    def mem_get_info(self, device=None) -> tuple[int, int]:
        return self.free, 4 * self.free


def _forbidden(name):
    def call(*_args, **_kwargs):
        raise AssertionError(f"torch.cuda.{name} must not be called")

    return call


@pytest.fixture
def fake_cuda(monkeypatch):
    """Fake CUDA memory API; the peak counters raise if anything resets or reads them."""
    memory = FakeCudaMemory()
    monkeypatch.setattr(torch.cuda, "memory_stats_as_nested_dict", memory.nested)
    monkeypatch.setattr(torch.cuda, "mem_get_info", memory.mem_get_info)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    for name in (
        "reset_peak_memory_stats",
        "reset_max_memory_allocated",
        "max_memory_allocated",
        "memory_allocated",
        "memory_stats",
    ):
        monkeypatch.setattr(torch.cuda, name, _forbidden(name))
    monkeypatch.setattr(engine, "memory_kind", lambda device: "cuda")  # insertion/deletion's too
    chunking._PROBED.clear()
    yield memory
    chunking._PROBED.clear()


class FakeLayer(nn.Module):
    """Allocates its output, ``per_image`` bytes per image; a workspace lives only inside."""

    def __init__(self, memory: FakeCudaMemory, per_image: int, workspace: int = 0) -> None:
        super().__init__()
        self.memory, self.per_image, self.workspace = memory, per_image, workspace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.memory.alloc(self.workspace)
        self.memory.release(self.workspace)
        self.memory.alloc(self.per_image * x.shape[0])
        return x


class FixedBuffer(nn.Module):
    """Allocates ``nbytes`` per call, whatever the batch (a weight cast), kept to the end."""

    def __init__(self, memory: FakeCudaMemory, nbytes: int) -> None:
        super().__init__()
        self.memory, self.nbytes = memory, nbytes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.memory.alloc(self.nbytes)
        return x


class FakeNet(nn.Module):
    """A chain of fake layers: each output is freed once the next layer has made its own.

    ``fixed`` bytes are allocated per call before the layers and freed at the end; ``lazy``
    bytes are allocated once, after the last layer of the first call ever, and kept (a cuBLAS
    workspace). ``wrapped`` is an optional real model run at the end (for the logits).
    """

    def __init__(
        self,
        memory: FakeCudaMemory,
        outputs: list[int],
        *,
        fixed: int = 0,
        lazy: int = 0,
        workspace: int = 0,
        wrapped: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.memory, self.outputs, self.fixed, self.lazy = memory, outputs, fixed, lazy
        self.buffer = FixedBuffer(memory, fixed)
        self.layers = nn.ModuleList(FakeLayer(memory, b, workspace) for b in outputs)
        self.wrapped = wrapped
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        n = x.shape[0]
        self.buffer(x)
        previous = 0
        for layer in self.layers:
            layer(x)
            self.memory.release(previous)
            previous = layer.per_image * n
        if self.lazy:
            self.memory.alloc(self.lazy)
            self.lazy = 0
        self.memory.release(previous + self.fixed)
        return self.wrapped(x) if self.wrapped is not None else x.flatten(1)[:, :3]


def reference_bytes_per_image(outputs: list[int]) -> int:
    """Plain reference: the peak of live activations grows by max(o[i-1] + o[i]) per image."""
    peaks = []
    for n in (1, 2):
        live_after_each_layer = []
        previous = 0
        for size in outputs:
            live_after_each_layer.append(previous + size * n)
            previous = size * n
        peaks.append(max(live_after_each_layer))
    return peaks[1] - peaks[0]


IMAGE = torch.rand(1, 3, 8, 8)


@pytest.mark.parametrize("outputs", [[100, 400, 50], [7], [300, 10, 10, 900, 20]])
def test_estimate_matches_the_reference(fake_cuda, outputs):
    model = FakeNet(fake_cuda, outputs)
    assert probe_bytes_per_image(model, IMAGE) == reference_bytes_per_image(outputs)
    assert fake_cuda.allocated == BASE


def test_random_chains_match_the_reference(fake_cuda):
    rng = random.Random(5)
    for _ in range(20):
        outputs = [rng.randrange(1, 10**6) for _ in range(rng.randrange(1, 8))]
        model = FakeNet(fake_cuda, outputs, fixed=rng.randrange(0, 10**8))
        assert probe_bytes_per_image(model, IMAGE) == reference_bytes_per_image(outputs)


def test_a_fixed_buffer_per_call_does_not_change_the_estimate(fake_cuda):
    plain = probe_bytes_per_image(FakeNet(fake_cuda, [100, 400, 50]), IMAGE)
    # A 205 MB weight cast per call (VGG-19's fc6 under bf16 autocast) cancels out ...
    with_cast = probe_bytes_per_image(FakeNet(fake_cuda, [100, 400, 50], fixed=205 * 10**6), IMAGE)
    # ... and so do a lazily created workspace and a workspace inside one layer.
    with_lazy = probe_bytes_per_image(
        FakeNet(fake_cuda, [100, 400, 50], lazy=10**9, workspace=10**8), IMAGE
    )
    assert plain == with_cast == with_lazy == 500


def test_the_one_image_peak_when_nothing_grows_with_the_batch(fake_cuda):
    model = FakeNet(fake_cuda, [0, 0], fixed=4096)
    assert probe_bytes_per_image(model, IMAGE) == 4096


def test_estimates_are_remembered_per_model_and_signature(fake_cuda):
    model = FakeNet(fake_cuda, [100, 400, 50]).eval()
    assert probe_bytes_per_image(model, IMAGE) == 500
    calls = model.calls
    assert calls == 3  # one settling pass, then the one- and two-image probes
    assert probe_bytes_per_image(model, torch.rand(4, 3, 8, 8)) == 500
    assert model.calls == calls
    probe_bytes_per_image(model, torch.rand(1, 3, 9, 9))
    assert model.calls == 2 * calls
    model.train()
    probe_bytes_per_image(model, IMAGE)
    assert model.calls == 3 * calls
    model.eval()
    model.layers.append(FakeLayer(fake_cuda, 10))
    probe_bytes_per_image(model, IMAGE)
    assert model.calls == 4 * calls


def test_budget_is_a_share_of_free_memory(fake_cuda):
    fake_cuda.free = 10**9
    assert cuda_memory_budget(torch.device("cuda", 0)) == int(10**9 * CUDA_BUDGET_FRACTION)


def test_engine_batch_size_on_cuda(fake_cuda):
    model = FakeNet(fake_cuda, [100, 400, 50], fixed=10**8)
    fake_cuda.free = int(7 * 500 / CUDA_BUDGET_FRACTION) + 1
    assert engine.auto_batch_size(model, torch.rand(3, 3, 8, 8)) == 7
    assert engine.auto_batch_size(model, IMAGE, memory_budget=500 * 3) == 3
    fake_cuda.free = 10**15
    assert engine.auto_batch_size(model, IMAGE) == CUDA_MAX_BATCH


def test_an_explain_call_leaves_the_peak_counters_alone(fake_cuda):
    """sidu.sidu sizes its chunks on "CUDA" (faked) without touching the peak counters."""
    cnn = tiny_cnn(seed=3, dtype=torch.float32)
    model = FakeNet(fake_cuda, [1000], fixed=10**7, wrapped=cnn).eval()
    images = torch.rand(2, 3, 16, 16)
    fake_cuda.free = int(5 * 1000 / CUDA_BUDGET_FRACTION)
    maps = sidu.sidu(model, "wrapped.2", images)
    assert list(chunking._PROBED[model].values()) == [1000], "sized by the CUDA probe"
    assert engine.auto_batch_size(model, images) == 5
    expected = sidu.sidu(model, "wrapped.2", images, batch_size=5)
    assert torch.equal(maps, expected)
    assert fake_cuda.allocated == BASE
    result = insertion_deletion(model, images, maps, steps=4)
    assert result.deletion_auc.shape == (2,)


def test_insertion_deletion_chunks_on_cuda(fake_cuda):
    images = torch.rand(2, 3, 8, 8)
    model = FakeNet(fake_cuda, [100, 400, 50]).train()
    input_bytes = 3 * 8 * 8 * 4
    per_image = 500 + insertion_deletion_module.SOURCES_PER_IMAGE * input_bytes
    fake_cuda.free = int(9 * per_image / CUDA_BUDGET_FRACTION) + 1
    # limit 9; 2 images x 20 steps = 40 forwards -> 5 chunks of 8
    assert insertion_deletion_module._chunk_size(images, None, total=40, model=model) == 8
    assert model.training, "the probe must restore the model's training flag"
    assert not any(key[0][4] for key in chunking._PROBED[model]), "probed in eval mode"


def test_batch_size_for_against_a_plain_rule():
    rng = random.Random(0)
    for _ in range(500):
        per_image, budget = rng.randrange(1, 10**6), rng.randrange(0, 10**9)
        cap = rng.randrange(1, 600)
        fits = 1
        while fits < cap and (fits + 1) * per_image <= budget:
            fits += 1
        assert batch_size_for(per_image, budget, cap) == fits
    with pytest.raises(ValueError, match="bytes_per_image must be at least 1, got 0"):
        batch_size_for(0, 10, 10)
    with pytest.raises(ValueError, match="max_batch must be at least 1, got 0"):
        batch_size_for(1, 10, 0)


def test_balanced_chunks_against_a_plain_rule():
    for total in range(1, 300):
        for limit in (1, 2, 3, 7, 10, 64, 512):
            size = balanced_chunk_size(total, limit)
            n_chunks = math.ceil(total / limit)
            assert size <= limit
            assert math.ceil(total / size) == n_chunks, "no more chunks than needed"
            assert size * (n_chunks - 1) < total, "the last chunk is not empty"
            assert size - (total - size * (n_chunks - 1)) < n_chunks, "chunks as even as can be"
    with pytest.raises(ValueError, match="limit must be at least 1, got 0"):
        balanced_chunk_size(10, 0)
