"""The shipped synthetic ViT: weights, accuracy, its token layers read as grids, end to end."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from sidu.capture import ActivationCapture
from sidu.tokens import TokenGrid
from sidu_bench.cli import main
from sidu_bench.data.synthetic import HOLDOUT_START
from sidu_bench.models import get_model
from sidu_bench.models.checkpoint import load_checkpoint
from sidu_bench.models.synthetic_vit import DEFAULT_LAYER, SIDU_LAYER, WEIGHTS, count_flops
from sidu_bench.training import evaluate_synthetic, train_synthetic


def test_shipped_weights_and_metadata():
    assert WEIGHTS.is_file()
    assert WEIGHTS.stat().st_size < 2_000_000
    report = json.loads(WEIGHTS.with_suffix(".json").read_text(encoding="utf-8"))
    assert report["arch"] == "synthetic_vit"
    assert report["holdout_accuracy"] >= 0.95
    assert report["holdout_items"] >= 1000
    assert report["seed"] == 0
    _, metadata = load_checkpoint(WEIGHTS)
    assert metadata["arch"] == "synthetic_vit"
    assert metadata["class_space"] == "synthetic-shapes-v1"


def test_accuracy_on_fresh_images():
    spec = get_model("synthetic_vit")
    assert evaluate_synthetic(spec.module, start=HOLDOUT_START + 500_000, count=600) >= 0.95


def test_the_default_layer_is_read_as_an_8x8_grid_without_the_class_token():
    spec = get_model("synthetic_vit")
    assert spec.default_layer == DEFAULT_LAYER == "encoder.layers.encoder_layer_3.ln_1"
    assert spec.reshape == TokenGrid(prefix=1)
    assert 1e7 <= count_flops(spec.module) <= 1e8
    raw = []
    handle = spec.layer().register_forward_hook(lambda _m, _i, out: raw.append(out.shape))
    capture = ActivationCapture(spec.layer(), spec.default_layer, spec.reshape)
    capture.attach()
    capture.arm()
    with torch.no_grad():
        spec.module(torch.zeros(2, 3, 64, 64))
    grid = capture.take()
    capture.detach()
    handle.remove()
    assert raw == [torch.Size([2, 65, 64])]  # 1 class token + 8 x 8 patches, width 64
    assert grid.shape == (2, 64, 8, 8)


def test_training_the_vit_is_deterministic(tmp_path):
    options = {"seed": 2, "train_items": 24, "steps": 2, "batch_size": 4, "holdout_items": 8}
    train_synthetic(tmp_path / "a.pt", arch="synthetic_vit", **options)
    train_synthetic(tmp_path / "b.pt", arch="synthetic_vit", **options)
    state_a, metadata = load_checkpoint(tmp_path / "a.pt")
    state_b, _ = load_checkpoint(tmp_path / "b.pt")
    assert metadata["arch"] == "synthetic_vit"
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert get_model("synthetic_vit", checkpoint=tmp_path / "a.pt").num_classes == 6
    with pytest.raises(ValueError, match="arch must be one of synthetic_cnn, synthetic_vit"):
        train_synthetic(tmp_path / "c.pt", arch="vit", **options)


def test_every_explainer_runs_end_to_end_on_the_vit(tmp_path):
    arguments = ["evaluate", "--device", "cpu", "--model", "synthetic_vit", "--limit", "2"]
    explainers = "sidu,gradcam,scorecam,center"
    metrics = "pointing_game,region_auc,insertion_deletion"
    arguments += ["--explainers", explainers, "--metrics", metrics]
    out = tmp_path / "vit"
    assert main([*arguments, "--out", str(out)]) == 0
    records = pd.read_csv(out / "synthetic-synthetic_vit" / "records.csv")
    assert len(records) == 8
    assert records["region_auc"].between(0, 1).all()
    # SIDU and Score-CAM find the shapes (Grad-CAM on a ViT's last block does not reliably)
    found = records[records["explainer"].isin(["sidu", "scorecam"])]
    assert (found["region_auc"] > 0.6).all()
    config = json.loads((out / "synthetic-synthetic_vit" / "config.json").read_text())
    assert config["layer"] == DEFAULT_LAYER
    assert config["sidu_layer"] == SIDU_LAYER
    layer = "encoder.layers.encoder_layer_1.ln_1"  # a --layer is every explainer's
    assert main([*arguments, "--layer", layer, "--out", str(tmp_path / "given")]) == 0
    given = tmp_path / "given" / "synthetic-synthetic_vit" / "config.json"
    config = json.loads(given.read_text())
    assert (config["layer"], config.get("sidu_layer")) == (layer, None)  # written when set


def test_sidu_explains_its_own_layer_and_the_cams_theirs():
    from sidu_bench.runner.config import RunConfig
    from sidu_bench.runner.run import ExplainerFactory

    spec = get_model("synthetic_vit")
    config = RunConfig("synthetic", "synthetic_vit", ("sidu", "gradcam"), (), spec.default_layer)
    factory = ExplainerFactory(config, spec.default_layer, spec.reshape, spec.sidu_layer)
    assert factory("sidu:threshold=0.2", spec.module).layer_name == SIDU_LAYER
    assert factory("gradcam", spec.module).layer_name == DEFAULT_LAYER
    assert factory("scorecam", spec.module).reshape == TokenGrid(prefix=1)
