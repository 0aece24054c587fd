"""The shipped synthetic CNN: its weights, metadata, size and cost."""

from __future__ import annotations

import json

import torch

from sidu_bench.models import get_model
from sidu_bench.models.checkpoint import load_checkpoint
from sidu_bench.models.synthetic_cnn import WEIGHTS, count_flops


def test_shipped_weights_and_metadata():
    assert WEIGHTS.is_file()
    assert WEIGHTS.stat().st_size < 2_000_000
    report = json.loads(WEIGHTS.with_suffix(".json").read_text(encoding="utf-8"))
    assert report["holdout_accuracy"] >= 0.95
    assert report["holdout_items"] >= 1000
    assert report["seed"] == 0
    assert report["train_seconds"] < 600
    _, metadata = load_checkpoint(WEIGHTS)
    assert metadata["arch"] == "synthetic_cnn"
    assert metadata["class_space"] == "synthetic-shapes-v1"


def test_architecture_is_small_with_an_8x8_last_layer():
    spec = get_model("synthetic_cnn")
    assert 1e6 <= count_flops(spec.module) <= 1e7
    last = spec.layer()[-1].conv
    assert 32 <= last.out_channels <= 128
    outputs = []
    handle = spec.layer().register_forward_hook(lambda _m, _i, out: outputs.append(out.shape))
    with torch.no_grad():
        spec.module(torch.zeros(1, 3, 64, 64))
    handle.remove()
    assert outputs == [torch.Size([1, last.out_channels, 8, 8])]
