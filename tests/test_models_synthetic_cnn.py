"""The shipped synthetic CNN: size, cost, accuracy on fresh images, training determinism."""

from __future__ import annotations

import json

import torch

from sidu_bench.data.synthetic import HOLDOUT_START, TRAIN_START
from sidu_bench.models import get_model, train_synthetic
from sidu_bench.models.checkpoint import load_checkpoint
from sidu_bench.models.synthetic_cnn import WEIGHTS, SyntheticCNN, count_flops, evaluate_synthetic


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


def test_accuracy_on_fresh_images():
    spec = get_model("synthetic_cnn")
    # Indices far from the training ids and from the held-out range used when training.
    assert evaluate_synthetic(spec.module, start=HOLDOUT_START + 500_000, count=600) >= 0.95


def test_training_is_deterministic_and_writes_its_report(tmp_path):
    options = {"seed": 5, "train_items": 48, "steps": 3, "batch_size": 8, "holdout_items": 12}
    first = train_synthetic(tmp_path / "a.pt", **options)
    second = train_synthetic(tmp_path / "b.pt", **options)
    state_a, _ = load_checkpoint(tmp_path / "a.pt")
    state_b, _ = load_checkpoint(tmp_path / "b.pt")
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    report = json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))
    assert report["steps"] == first.steps == 3
    assert report["train_items"] == 48
    assert report["holdout_accuracy"] == first.holdout_accuracy == second.holdout_accuracy
    assert TRAIN_START + 48 < HOLDOUT_START
    assert get_model("synthetic_cnn", checkpoint=tmp_path / "a.pt").num_classes == 6
    assert isinstance(SyntheticCNN(), torch.nn.Module)
