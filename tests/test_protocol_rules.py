"""What enters the protocol (dtype, precision) and what is environment (device, backend)."""

import json

import pandas as pd
import pytest
import torch

from sidu_bench.cli import main
from sidu_bench.devices import resolve_device

SMALL = ["--device", "cpu", "--limit", "3", "--steps", "4", "--explainers", "center,sidu"]
RUN = "synthetic-synthetic_cnn"


def evaluate(out, *extra):
    return main(["evaluate", *SMALL, "--out", str(out), *extra])


def test_precision_is_protocol_and_refuses_a_mixed_resume(tmp_path, capsys):
    assert evaluate(tmp_path, "--precision", "tf32") == 0
    config = json.loads((tmp_path / RUN / "config.json").read_text())
    assert config["protocol"]["precision"] == "tf32"
    assert evaluate(tmp_path) == 2
    error = capsys.readouterr().err
    assert "protocol.precision" in error
    assert "--fresh" in error


def test_device_and_backend_are_environment_a_resume_may_change_them(tmp_path):
    pytest.importorskip("onnxruntime")
    assert evaluate(tmp_path, "--backend", "torch", "--limit", "2") == 0
    assert evaluate(tmp_path, "--backend", "onnxruntime") == 0
    run_dir = tmp_path / RUN
    records = pd.read_csv(run_dir / "records.csv", dtype={"id": str})
    by_item = records.groupby("id")["backend"].first()
    assert sorted(by_item.tolist()) == ["onnxruntime", "torch", "torch"]
    assert set(records["device"]) == {"cpu"}
    config = json.loads((run_dir / "config.json").read_text())
    assert config["environment"]["backend"]["name"] == "onnxruntime"
    assert config["earlier_environments"][0]["backend"]["name"] == "torch"


def test_report_refuses_mixed_precision_and_labels_device_and_backend(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    # One table takes each explainer of a (data set, model) from one folder: split them.
    assert evaluate(tmp_path / "ieee-torch", "--backend", "torch") == 0
    assert evaluate(tmp_path / "ieee-ort", "--backend", "onnxruntime", "--explainers", "rise") == 0
    assert evaluate(tmp_path / "tf32", "--precision", "tf32", "--explainers", "random") == 0
    runs = [str(tmp_path / name / RUN) for name in ("ieee-torch", "ieee-ort", "tf32")]
    assert main(["report", *runs, "--out", str(tmp_path / "mixed")]) == 2
    assert "protocol.precision" in capsys.readouterr().err
    assert main(["report", *runs[:2], "--out", str(tmp_path / "report")]) == 0
    markdown = (tmp_path / "report" / "report.md").read_text()
    rows = [line for line in markdown.splitlines() if line.startswith(f"| {tmp_path}")]
    assert len(rows) == 2
    assert rows[0].endswith("| torch |")
    assert rows[1].endswith("| onnxruntime |")
    assert all("| cpu " in row for row in rows)


@pytest.mark.parametrize(
    ("name", "count", "expected"),
    [
        ("cpu", 0, "cpu"),
        ("auto", 0, "cpu"),
        ("auto", 2, "cuda:0"),
        ("cuda", 2, "cuda:0"),
        ("cuda:1", 2, "cuda:1"),
    ],
)
def test_resolve_device_with_cuda_mocked(monkeypatch, name, count, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    assert resolve_device(name) == torch.device(expected)


def test_under_torchrun_cuda_is_this_rank_s_local_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("cuda") == resolve_device("auto") == torch.device("cuda:1")
    assert resolve_device("cuda:0") == torch.device("cuda:0")


@pytest.mark.parametrize(
    ("name", "count", "message"),
    [
        ("gpu", 1, "device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
        ("cuda:", 1, "device must be auto, cpu, cuda or cuda:N"),
        ("cuda", 0, "device 'cuda' was requested but no CUDA device is available"),
        ("cuda:2", 2, "device 'cuda:2': only 2 CUDA device"),
    ],
)
def test_resolve_device_refuses_what_is_not_there(monkeypatch, name, count, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    with pytest.raises(ValueError, match=message):
        resolve_device(name)


def test_evaluate_refuses_a_slow_dtype_unless_allowed(tmp_path, monkeypatch, capsys):
    import sidu.capability as capability

    monkeypatch.setattr(
        capability, "slow_dtype_reason", lambda dtype, device="cpu": "no AVX512-BF16 or AMX"
    )
    assert evaluate(tmp_path, "--dtype", "bfloat16") == 2
    error = capsys.readouterr().err
    assert "--dtype bfloat16: no AVX512-BF16 or AMX" in error
    assert "--allow-slow-dtype" in error
    assert not (tmp_path / RUN).exists()
    assert evaluate(tmp_path, "--dtype", "bfloat16", "--allow-slow-dtype", "--limit", "1") == 0
    config = json.loads((tmp_path / RUN / "config.json").read_text())
    assert config["protocol"]["dtype"] == "bfloat16"
