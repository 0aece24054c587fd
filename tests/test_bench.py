"""The ``bench`` machinery: forward counting, row arithmetic, tables, the probe and the CLI."""

import dataclasses
import math
import subprocess
import sys

import pandas as pd
import pytest
import torch
import torchvision
from torchvision.models.feature_extraction import create_feature_extractor

from sidu_bench.bench import (
    BENCH_COLUMNS,
    BENCH_MODELS,
    BenchConfig,
    BenchModel,
    BenchRow,
    ForwardCounter,
    Measurement,
    ProbeRequest,
    build_case,
    measure,
    measure_here,
    method_call,
    peer_label,
    write_tables,
)
from sidu_bench.bench import run as bench_run
from sidu_bench.bench.perf import Ceiling
from sidu_bench.bench.run import _peer_skip_reason, pytorch_sidu_memory_estimate, run_bench
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
        ceiling_engine="onnxruntime",
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


def test_row_carries_the_engine_the_set_up_and_the_speed_up_over_the_torch_backend():
    measurement = Measurement("sidu", 2.0, 300.0, 50 * 2**20, "onnxruntime", "", 3.5)
    ours = row(backend="").with_measurement(measurement)
    assert (ours.backend, ours.setup_seconds, ours.ceiling_engine) == (
        "onnxruntime",
        3.5,
        "onnxruntime",
    )
    torch_row = row(kind="torch-backend", peer_of="sidu").with_measurement(
        Measurement("sidu", 9.0, 300.0, 40 * 2**20, "torch")
    )
    assert math.isnan(torch_row.setup_seconds), "no warm-up call, no set-up time"
    assert ours.compared_with_torch_backend(torch_row).speedup_over_torch_backend == 4.5
    failed = row(kind="torch-backend", peer_of="sidu").with_status("failed: boom")
    assert math.isnan(ours.compared_with_torch_backend(failed).speedup_over_torch_backend)
    fell_back = row().with_measurement(
        Measurement("sidu", 2.0, 300.0, 1, "torch", "channels_last is requested")
    )
    assert fell_back.backend_note == "channels_last is requested"


def test_a_method_without_forwards_has_no_rate():
    center = row(explainer="center").with_measurement(Measurement("center", 0.001, 0.0, 0))
    assert math.isnan(center.images_per_second)
    assert math.isnan(center.ratio_to_ceiling)


def read_rows(path) -> list[BenchRow]:
    """A written ``bench-<device>.csv`` as rows (empty text cells as empty strings)."""
    text = [field.name for field in dataclasses.fields(BenchRow) if field.type == "str"]
    table = pd.read_csv(path, dtype=dict.fromkeys(text, str)).fillna(dict.fromkeys(text, ""))
    return [BenchRow(**record) for record in table.to_dict("records")]


def same_row(first: BenchRow, second: BenchRow) -> bool:
    """Field-by-field equality where NaN equals NaN."""
    return all(
        a == b
        or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
        for a, b in zip(dataclasses.astuple(first), dataclasses.astuple(second), strict=True)
    )


def test_tables_round_trip_and_name_what_they_measured(tmp_path):
    ours = row().with_measurement(Measurement("sidu", 2.0, 300.0, 50 * 2**20, "onnxruntime", "", 3))
    torch_row = row(kind="torch-backend", peer_of="sidu").with_measurement(
        Measurement("sidu", 8.0, 300.0, 40 * 2**20, "torch")
    )
    rows = [
        ours.compared_with_torch_backend(torch_row),
        torch_row,
        row(explainer="rise:masks=8").with_status("failed: boom"),
    ]
    ceiling = Ceiling(
        200.0,
        32,
        {1: 50.0, 32: 200.0},
        engine="onnxruntime",
        by_engine={"torch": {1: 20.0, 8: 40.0}, "onnxruntime": {1: 50.0, 32: 200.0}},
        setup_seconds={"torch": 0.0, "onnxruntime": 2.25},
        skipped={"openvino": "not installed"},
    )
    config = BenchConfig(models=("m",), device="cpu")
    paths = write_tables(rows, tmp_path, config, {"m": ceiling})
    assert [path.name for path in paths] == ["bench-cpu.csv", "bench-cpu.md"]
    table = pd.read_csv(paths[0])
    assert tuple(table.columns) == BENCH_COLUMNS
    assert {"backend", "precision", "ceiling_engine", "setup_seconds"} <= set(BENCH_COLUMNS)
    assert table["ratio_to_ceiling"].tolist()[:2] == [0.75, 0.1875]
    assert table["speedup_over_torch_backend"].tolist()[0] == 4.0
    assert table["backend"].tolist()[:2] == ["onnxruntime", "torch"]
    assert table["kind"].tolist() == ["ours", "torch-backend", "ours"]
    assert table["ceiling_engine"].tolist() == ["onnxruntime"] * 3
    assert math.isnan(table["seconds_per_image"].tolist()[2])
    assert table["status"].tolist() == ["ok", "ok", "failed: boom"]
    measured, torch_measured, failed = read_rows(paths[0])
    assert same_row(measured, rows[0]), "a measured row reads back equal"
    assert same_row(torch_measured, rows[1])
    assert (failed.explainer, failed.status, failed.peer) == ("rise:masks=8", "failed: boom", "")
    markdown = paths[1].read_text()
    assert "| sidu | onnxruntime | float32, ieee | 2 | 3 | 300 | 150 | 0.75 | 50 |" in markdown
    assert "| 4.00x | ok |" in markdown
    assert (
        "| sidu (torch backend) | torch | float32, ieee | 8 | - | 300 | 37.5 | 0.19 |" in markdown
    )
    assert "| rise:masks=8 | - | float32, ieee | - | - | - | - | - | - |" in markdown
    assert "ceiling 200 images/s, onnxruntime at batch 32" in markdown
    assert "- ceiling engine torch: 40 images/s at batch 8\n" in markdown
    assert "- ceiling engine onnxruntime: 200 images/s at batch 32, set-up 2.2 s" in markdown
    assert "- ceiling engine openvino: skipped (not installed)" in markdown
    assert "peak MB added" in markdown
    assert "over the process's baseline before the case's set-up" in markdown
    assert not list(tmp_path.glob(".*tmp")), "no temporary file left behind"


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
    assert case.model == BenchModel("synthetic_cnn", "features", 64, "packaged")
    assert tuple(case.images.shape) == (2, 3, 64, 64)
    assert torch.equal(case.images[0], case.images[1])
    assert torch.equal(case.images, build_case("synthetic_cnn", images=2).images), "seeded"
    with pytest.raises(ValueError, match="unknown bench model 'resnet81'"):
        build_case("resnet81")
    assert set(BENCH_MODELS) >= {"resnet18", "resnet50", "vgg19", "efficientnet_lite0"}


def test_torchvision_bench_models_have_seeded_random_weights_and_the_model_s_layer():
    case = build_case("resnet18")
    assert case.model == BenchModel("resnet18", "layer4", 224, "random (seed 0)")
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).state_dict()
    assert all(torch.equal(case.module.state_dict()[k], v) for k, v in reference.items())
    assert not case.module.training


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
    assert (counter.backend_count, counter.engine(), counter.fallback_reason()) == (0, "torch", "")


def test_forwards_through_onnxruntime_are_counted_and_named():
    pytest.importorskip("onnxruntime")
    case = build_case("synthetic_cnn")
    counter = ForwardCounter(case.module, case.images)
    call = method_call("rise:masks=16,cells=3", case, backend="onnxruntime")
    call.run()  # the set-up: the export traces the model and checks it on the clean image
    with counter.counting():
        call.run()
    # the 16 masked images never reach the torch stem; the clean forward does (the chunk-size
    # estimate was made by the set-up call: once per model and input shape)
    assert (counter.count, counter.backend_count) == (17, 16)
    assert counter.engine() == "onnxruntime"
    assert counter.fallback_reason() == ""
    with torch.inference_mode():
        case.module(case.images)
    assert counter.count == 17, "nothing is counted outside the block"


def test_a_backend_that_falls_back_to_torch_is_named_with_the_reason():
    case = build_case("synthetic_cnn")
    counter = ForwardCounter(case.module, case.images)
    call = method_call("rise:masks=8", case, backend="auto", channels_last=True)
    with counter.counting():
        call.run()
    assert (counter.count, counter.backend_count, counter.engine()) == (10, 0, "torch")
    assert "channels_last" in counter.fallback_reason()


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


def test_the_probe_warms_up_a_non_torch_backend_and_reports_its_set_up():
    pytest.importorskip("onnxruntime")
    request = ProbeRequest(model="synthetic_cnn", spec="rise:masks=8", backend="auto")
    there = measure(request)
    assert (there.backend, there.backend_note) == ("onnxruntime", "")
    assert there.forwarded_per_image == 9, "8 masks and the clean image; sized at the warm-up"
    assert there.setup_seconds >= 0
    assert there.peak_memory_bytes > 0
    on_torch = measure(dataclasses.replace(request, backend="torch"))
    # no warm-up: the timed first call also makes the one-image chunk-size estimate
    assert (on_torch.backend, on_torch.forwarded_per_image) == ("torch", 10)
    assert math.isnan(on_torch.setup_seconds), "no warm-up call for torch on the CPU"
    assert measure(ProbeRequest(model="synthetic_cnn", spec="center", backend="auto")).backend == ""


def test_without_onnxruntime_auto_measures_torch_and_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    request = ProbeRequest(model="synthetic_cnn", spec="rise:masks=8", backend="auto")
    here = measure_here(request)
    assert (here.backend, here.forwarded_per_image) == ("torch", 9)  # sized at the warm-up
    assert here.backend_note == "onnxruntime is not installed"


def test_probe_requests_name_a_bad_backend_or_precision():
    with pytest.raises(ValueError, match="backend must be one of"):
        ProbeRequest(model="synthetic_cnn", spec="sidu", backend="ort")
    with pytest.raises(ValueError, match="precision must be one of"):
        ProbeRequest(model="synthetic_cnn", spec="sidu", precision="fp32")


def fake_cuda(monkeypatch, count: int = 2) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_bench_device_auto_is_cuda_when_available_and_cuda_n_is_checked(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert BenchConfig().device == "cpu"
    with pytest.raises(ValueError, match="device 'cuda:1' was requested but no CUDA device"):
        BenchConfig(device="cuda:1")
    fake_cuda(monkeypatch)
    assert BenchConfig(device="auto").device == "cuda:0"
    assert BenchConfig().device == "cuda:0"
    assert BenchConfig(device="cuda").device == "cuda:0"
    assert BenchConfig(device="cuda:1").device == "cuda:1"
    assert BenchConfig(device="cpu").device == "cpu"
    with pytest.raises(ValueError, match="device 'cuda:2': only 2 CUDA device"):
        BenchConfig(device="cuda:2")
    for bad in ("gpu", "cuda:x", "CPU", ""):
        with pytest.raises(
            ValueError, match=f"device must be auto, cpu, cuda or cuda:N, got '{bad}'"
        ):
            BenchConfig(device=bad)


def test_bench_config_names_a_bad_backend_precision_or_dtype():
    with pytest.raises(ValueError, match="backend must be one of"):
        BenchConfig(device="cpu", backend="openvino")
    with pytest.raises(ValueError, match="precision must be one of"):
        BenchConfig(device="cpu", precision="fp16")
    with pytest.raises(ValueError, match="dtype must be one of"):
        BenchConfig(device="cpu", dtype="int8")
    assert (BenchConfig(device="cpu").backend, BenchConfig(device="cpu").precision) == (
        "auto",
        "ieee",
    )


def test_rows_say_the_precision_they_ran_at(monkeypatch):
    ceiling = Ceiling(100.0, 8, {8: 100.0}, engine="torch-channels-last")
    model = BenchModel("resnet18", "layer4", 224, "random (seed 0)")

    def start(config, kind):
        return BenchRow.start(
            config,
            model=model,
            label="x",
            peer_of="" if kind == "ours" else "sidu",
            ceiling=ceiling,
            kind=kind,
        )

    cpu = BenchConfig(device="cpu", precision="tf32")
    assert start(cpu, "ours").precision == "ieee", "the CPU has no TF32"
    fake_cuda(monkeypatch)
    cuda = BenchConfig(device="cuda", precision="ieee", dtype="bfloat16")
    ours, torch_row, peer = (start(cuda, kind) for kind in ("ours", "torch-backend", "peer"))
    assert (ours.precision, torch_row.precision, peer.precision) == ("ieee", "ieee", "tf32")
    assert (ours.dtype, torch_row.dtype, peer.dtype) == ("bfloat16", "bfloat16", "float32")
    assert {r.ceiling_engine for r in (ours, torch_row, peer)} == {"torch-channels-last"}
    assert start(BenchConfig(device="cuda:1", precision="tf32"), "ours").precision == "tf32"
    with pytest.raises(ValueError, match="kind must be one of"):
        start(cuda, "theirs")


@pytest.fixture
def quick_ceiling(monkeypatch):
    """``bench``'s ceiling over every engine, but two batch sizes and a few passes each."""
    real = bench_run.best_forward_ceiling

    def quick(*args, **kwargs):
        return real(*args, **kwargs, batch_sizes=(1, 8), min_seconds=0.01)

    monkeypatch.setattr(bench_run, "best_forward_ceiling", quick)


def test_run_bench_adds_a_torch_backend_row_where_another_engine_ran(tmp_path, quick_ceiling):
    pytest.importorskip("onnxruntime")
    config = BenchConfig(
        device="cpu", models=("synthetic_cnn",), explainers=("rise:masks=8", "center"), peers=False
    )
    seen = []
    rows = run_bench(config, tmp_path, on_row=seen.append)
    assert seen == rows
    assert [(r.explainer, r.kind, r.backend) for r in rows] == [
        ("rise:masks=8", "ours", "onnxruntime"),
        ("rise:masks=8", "torch-backend", "torch"),
        ("center", "ours", ""),
    ]
    ours, torch_row, center = rows
    assert torch_row.peer_of == "rise:masks=8"
    assert ours.speedup_over_torch_backend == pytest.approx(
        torch_row.seconds_per_image / ours.seconds_per_image
    )
    assert math.isnan(center.speedup_over_torch_backend)
    assert ours.setup_seconds >= 0
    assert math.isnan(torch_row.setup_seconds)
    assert {r.ceiling_engine for r in rows} <= {"torch", "torch-channels-last", "onnxruntime"}
    assert len({(r.ceiling_engine, r.ceiling_images_per_second) for r in rows}) == 1
    markdown = (tmp_path / "bench-cpu.md").read_text()
    assert "- ceiling engine onnxruntime:" in markdown
    assert "| rise:masks=8 (torch backend) | torch |" in markdown
    on_torch = run_bench(
        dataclasses.replace(config, backend="torch", explainers=("rise:masks=8",)), tmp_path
    )
    assert [(r.kind, r.backend) for r in on_torch] == [("ours", "torch")], "nothing to compare"


def test_probe_failure_is_reported_with_the_case():
    with pytest.raises(RuntimeError, match=r"bench probe .*nosuchexplainer"):
        measure(ProbeRequest(model="synthetic_cnn", spec="nosuchexplainer"))


def test_a_probe_that_dies_is_reported_with_its_exit_code(tmp_path, monkeypatch):
    (tmp_path / "dying_plugin.py").write_text("import os\nos._exit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    request = ProbeRequest(model="synthetic_cnn", spec="center", imports=("dying_plugin",))
    with pytest.raises(RuntimeError, match="died with exit code 3"):
        measure(request)


def test_bench_command_writes_the_tables(tmp_path, capsys, quick_ceiling):
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
    ours = table[table["kind"] == "ours"]
    assert ours["explainer"].tolist() == ["center", "rise:masks=8"]
    assert ours["forwarded_per_image"].tolist() == [0, 9]  # 8 masks, clean (sized at warm-up)
    assert (table["peak_memory_mb"] > 0).all()
    assert "tables written to" in capsys.readouterr().out


def test_bench_command_refuses_unknown_names(capsys):
    assert main(["bench", "--model", "resnet81", "--out", "/nonexistent"]) == 2
    assert "unknown bench model 'resnet81'" in capsys.readouterr().err
    assert main(["bench", "--model", "synthetic_cnn", "--explainers", "sidoo"]) == 2


def test_a_probe_ends_when_the_bench_that_asked_for_it_is_gone():
    gone = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    code = (
        "from sidu_bench.bench.probe import watch_requester\n"
        f"watch_requester({gone.pid}, interval=0.1)\n"
    )
    watcher = subprocess.Popen([sys.executable, "-c", code])
    gone.wait()
    assert watcher.wait(timeout=30) == 1  # it noticed and ended itself
