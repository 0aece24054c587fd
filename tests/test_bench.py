"""The ``bench`` machinery: forward counting, row arithmetic, tables, the probe and the CLI."""

import dataclasses
import math

import pandas as pd
import pytest
import torch
from torchvision.models.feature_extraction import create_feature_extractor

from sidu_bench.bench import (
    BENCH_COLUMNS,
    BENCH_MODELS,
    BenchConfig,
    BenchRow,
    ForwardCounter,
    Measurement,
    ProbeRequest,
    build_case,
    measure,
    measure_here,
    method_call,
    peer_label,
    read_bench_csv,
    read_bench_rows,
    write_tables,
)
from sidu_bench.bench.run import _peer_skip_reason, pytorch_sidu_memory_estimate
from sidu_bench.cli import main


def small_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.ReLU()),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    ).eval()


def test_forward_counter_counts_rows_at_the_stem_only_while_counting():
    net = small_net()
    counter = ForwardCounter(net, torch.rand(2, 3, 8, 8))
    assert counter.stem is net[0]
    assert counter.count == 0, "finding the stem is not counted"
    with torch.inference_mode():
        net(torch.rand(5, 3, 8, 8))
        with counter.counting():
            net(torch.rand(5, 3, 8, 8))
            net(torch.rand(7, 3, 8, 8))
        net(torch.rand(5, 3, 8, 8))
    assert counter.count == 12


def test_forward_counter_sees_a_traced_copy_of_the_network():
    # pytorch-sidu runs a torchvision feature extractor: a traced copy sharing the leaf modules
    net = small_net()
    counter = ForwardCounter(net, torch.rand(1, 3, 8, 8))
    truncated = create_feature_extractor(net, return_nodes={"2": "features"})
    with torch.inference_mode(), counter.counting():
        truncated(torch.rand(3, 3, 8, 8))
    assert counter.count == 3


def row(**changes):
    base = BenchRow(
        model="m",
        input_size=8,
        weights="w",
        explainer="sidu",
        kind="ours",
        peer_of="",
        device="cpu",
        dtype="float32",
        channels_last=False,
        images=1,
        ceiling_images_per_second=200.0,
        ceiling_batch_size=32,
    )
    return dataclasses.replace(base, **changes)


def test_row_rates_and_peer_ratios_by_hand():
    ours = row().with_measurement(Measurement("sidu", 2.0, 300.0, 50 * 2**20))
    assert ours.images_per_second == 150.0
    assert ours.ratio_to_ceiling == 0.75
    assert ours.peak_memory_mb == 50.0
    peer = row(explainer="pytorch-sidu", kind="peer", peer_of="sidu").with_measurement(
        Measurement("pytorch-sidu", 5.0, 513.0, 400 * 2**20)
    )
    compared = ours.compared_with_peer(peer)
    assert compared.speedup_over_peer == 2.5
    assert compared.memory_ratio_to_peer == 0.125
    assert compared.peer == "pytorch-sidu"
    skipped = ours.compared_with_peer(peer.with_status("skipped: too big"))
    assert skipped.speedup_over_peer == 2.5, "a skipped row keeps no numbers of its own"


def test_a_method_without_forwards_has_no_rate():
    center = row(explainer="center").with_measurement(Measurement("center", 0.001, 0.0, 0))
    assert math.isnan(center.images_per_second)
    assert math.isnan(center.ratio_to_ceiling)


def same_row(first: BenchRow, second: BenchRow) -> bool:
    """Field-by-field equality where NaN equals NaN."""
    return all(
        a == b
        or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
        for a, b in zip(dataclasses.astuple(first), dataclasses.astuple(second), strict=True)
    )


def test_tables_round_trip_and_name_what_they_measured(tmp_path):
    rows = [
        row().with_measurement(Measurement("sidu", 2.0, 300.0, 50 * 2**20)),
        row(explainer="rise:masks=8").with_status("failed: boom"),
    ]
    paths = write_tables(rows, tmp_path, BenchConfig(models=("m",)))
    assert [path.name for path in paths] == ["bench-cpu.csv", "bench-cpu.md"]
    table = read_bench_csv(paths[0])
    assert tuple(table.columns) == BENCH_COLUMNS
    assert table["ratio_to_ceiling"].tolist()[0] == 0.75
    assert math.isnan(table["seconds_per_image"].tolist()[1])
    assert table["status"].tolist() == ["ok", "failed: boom"]
    measured, failed = read_bench_rows(paths[0])
    assert same_row(measured, rows[0]), "a measured row reads back equal"
    assert (failed.explainer, failed.status, failed.peer) == ("rise:masks=8", "failed: boom", "")
    markdown = paths[1].read_text()
    assert "| sidu | 2 | 300 | 150 | 0.75 | 50 |" in markdown
    assert "| rise:masks=8 | - | - | - | - | - |" in markdown
    assert "ceiling 200 images/s at batch 32" in markdown
    assert not list(tmp_path.glob(".*tmp")), "no temporary file left behind"


def test_read_bench_csv_names_a_missing_or_corrupt_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.csv"):
        read_bench_csv(tmp_path / "nothere.csv")
    bad = tmp_path / "bench-cpu.csv"
    bad.write_text("model,explainer\nm,sidu\n")
    with pytest.raises(ValueError, match=r"bench-cpu\.csv: missing columns"):
        read_bench_csv(bad)


def test_peer_labels_carry_the_work_reducing_option():
    assert peer_label("sidu") == "pytorch-sidu"
    assert peer_label("scorecam:max_channels=64") == "pytorch-grad-cam:scorecam:max_channels=64"
    assert peer_label("gradcam") == "pytorch-grad-cam:gradcam"
    assert peer_label("rise:masks=8") is None


def test_pytorch_sidu_is_skipped_where_its_cdist_cannot_fit():
    pytest.importorskip("pytorch_sidu")
    assert pytorch_sidu_memory_estimate(512) == 512**3 * 4
    assert _peer_skip_reason("sidu", 64, "cpu") is None
    reason = _peer_skip_reason("sidu", 100_000, "cpu")
    assert reason.startswith("skipped: pytorch-sidu needs ~4000000 GB for 100000 channels")


def test_bench_models_build_with_their_input_size():
    case = build_case("synthetic_cnn", images=2)
    assert tuple(case.images.shape) == (2, 3, 64, 64)
    assert torch.equal(case.images[0], case.images[1])
    assert torch.equal(case.images, build_case("synthetic_cnn", images=2).images), "seeded"
    with pytest.raises(ValueError, match="unknown bench model 'resnet81'"):
        build_case("resnet81")
    assert set(BENCH_MODELS) >= {"resnet18", "resnet50", "vgg19", "efficientnet_lite0"}


def test_the_counted_work_is_the_explainer_s_forwards():
    case = build_case("synthetic_cnn")
    counter = ForwardCounter(case.module, case.images)
    call = method_call("rise:masks=16,cells=3", case, peer=False)
    with counter.counting():
        call.run()
    # 16 masked images, the clean forward that checks the target, and the engine's one-image
    # probe that sizes its chunks on the CPU
    assert counter.count == 18
    assert call.label == "rise:cells=3,masks=16"


@pytest.mark.parametrize("peer", [False, True])
def test_probe_in_a_fresh_process_matches_the_in_process_count(peer):
    pytest.importorskip("pytorch_grad_cam")
    request = ProbeRequest(model="synthetic_cnn", spec="scorecam:max_channels=5", peer=peer)
    here, there = measure_here(request), measure(request)
    assert here.label == there.label
    assert here.forwarded_per_image == there.forwarded_per_image
    assert there.forwarded_per_image >= 5 + 1
    assert there.seconds_per_image > 0
    assert there.peak_memory_bytes > 0


def test_probe_failure_is_reported_with_the_case():
    with pytest.raises(RuntimeError, match=r"bench probe .*nosuchexplainer"):
        measure(ProbeRequest(model="synthetic_cnn", spec="nosuchexplainer"))


def test_a_probe_that_dies_is_reported_with_its_exit_code(tmp_path, monkeypatch):
    (tmp_path / "dying_plugin.py").write_text("import os\nos._exit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    request = ProbeRequest(model="synthetic_cnn", spec="center", imports=("dying_plugin",))
    with pytest.raises(RuntimeError, match="died with exit code 3"):
        measure(request)


def test_bench_command_writes_the_tables(tmp_path, capsys):
    status = main(
        [
            "bench",
            "--model",
            "synthetic_cnn",
            "--explainers",
            "center,rise:masks=8",
            "--no-peers",
            "--out",
            str(tmp_path),
        ]
    )
    assert status == 0
    table = pd.read_csv(tmp_path / "bench-cpu.csv")
    assert table["explainer"].tolist() == ["center", "rise:masks=8"]
    assert table["forwarded_per_image"].tolist() == [0, 10]  # 8 masks, clean, chunk probe
    assert (table["peak_memory_mb"] > 0).all()
    assert "tables written to" in capsys.readouterr().out


def test_bench_command_refuses_unknown_names(capsys):
    assert main(["bench", "--model", "resnet81", "--out", "/nonexistent"]) == 2
    assert "unknown bench model 'resnet81'" in capsys.readouterr().err
    assert main(["bench", "--model", "synthetic_cnn", "--explainers", "sidoo"]) == 2
