"""Training the synthetic CNN: accuracy on fresh images, deterministic training and its report."""

from __future__ import annotations

import json

import torch

from sidu_bench.data.synthetic import HOLDOUT_START
from sidu_bench.models import get_model
from sidu_bench.models.checkpoint import load_checkpoint
from sidu_bench.training import evaluate_synthetic, train_synthetic


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
    assert get_model("synthetic_cnn", checkpoint=tmp_path / "a.pt").num_classes == 6
