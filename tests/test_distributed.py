"""sidu_bench.runner.distributed: backend choice, the process group, the rank-done markers.

The end-to-end test runs two real gloo processes on the CPU where rank 0 has nothing to do and
rank 1 works for longer than the process group's timeout: a collective at the end of the run
would abort, the rank-done markers let rank 0 merge.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
import torch

from sidu_bench.cli import main
from sidu_bench.runner import RunFolder, distributed
from sidu_bench.runner.distributed import (
    RANK_WAIT_ENV,
    TIMEOUT_ENV,
    finish_rank,
    process_group,
)
from sidu_bench.runner.folder import RANKS_FOLDER

REPO = Path(__file__).resolve().parents[1]


class FakeDist:
    """Records what the process group asks of torch.distributed."""

    def __init__(self, rank: int = 0, world: int = 2) -> None:
        self.rank, self.world = rank, world
        self.initialized = False
        self.calls: list[tuple[str, dict]] = []

    def is_available(self):
        return True

    def is_initialized(self):
        return self.initialized

    def init_process_group(self, backend=None, timeout=None, device_id=None):
        options = {"backend": backend, "timeout": timeout, "device_id": device_id}
        self.calls.append(("init", options))
        self.initialized = True

    def destroy_process_group(self):
        self.calls.append(("destroy", {}))
        self.initialized = False

    def broadcast_object_list(self, objects, src):
        self.calls.append(("broadcast", {"src": src}))
        if objects[0] is None:
            objects[0] = "token-from-rank-0"

    def barrier(self):
        self.calls.append(("barrier", {}))

    def get_rank(self):
        return self.rank

    def get_world_size(self):
        return self.world


@pytest.fixture
def fake_dist(monkeypatch):
    fake = FakeDist()
    monkeypatch.setattr(distributed, "dist", fake)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv(TIMEOUT_ENV, raising=False)
    monkeypatch.delenv(RANK_WAIT_ENV, raising=False)
    monkeypatch.setattr(distributed, "_SESSION", distributed._Session())
    return fake


@pytest.mark.parametrize(
    ("device", "cuda_available", "expected"),
    [
        ("cuda", True, "nccl"),
        ("cuda:1", True, "nccl"),
        ("auto", True, "nccl"),
        ("auto", False, "gloo"),
        ("cpu", True, "gloo"),
        ("cpu", False, "gloo"),
    ],
)
def test_backend_choice(monkeypatch, fake_dist, device, cuda_available, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_available)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: None)
    with process_group(device):
        pass
    assert fake_dist.calls[0][1]["backend"] == expected


@pytest.mark.parametrize(
    ("device", "local_rank", "expected_index"),
    [("cuda", "1", 1), ("auto", "1", 1), ("cuda:3", "1", 3), ("cuda:0", "1", 0)],
)
def test_nccl_group_on_this_ranks_gpu(monkeypatch, fake_dist, device, local_rank, expected_index):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    current = []
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    monkeypatch.setenv("LOCAL_RANK", local_rank)
    with process_group(device):
        assert current == [expected_index]
        assert distributed._SESSION.token is not None
    (name, options), *rest = fake_dist.calls
    assert name == "init"
    assert options == {
        "backend": "nccl",
        "timeout": timedelta(hours=24),
        "device_id": torch.device("cuda", expected_index),
    }
    assert [call[0] for call in rest] == ["broadcast", "destroy"]
    assert distributed._SESSION.token is None


def test_gloo_group_on_the_cpu_with_the_timeout_from_the_environment(monkeypatch, fake_dist):
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: pytest.fail("no GPU on cpu"))
    monkeypatch.setenv(TIMEOUT_ENV, "90")
    with process_group("cpu"):
        pass
    assert fake_dist.calls[0] == (
        "init",
        {"backend": "gloo", "timeout": timedelta(seconds=90), "device_id": None},
    )


def test_no_group_outside_torchrun(monkeypatch, fake_dist):
    monkeypatch.setenv("WORLD_SIZE", "1")
    with process_group("cuda"):
        pass
    assert fake_dist.calls == []


@pytest.mark.parametrize("value", ["0", "-3", "soon", "nan"])
def test_bad_timeouts_are_refused(monkeypatch, fake_dist, value):
    monkeypatch.setenv(TIMEOUT_ENV, value)
    group = process_group("cpu")
    with pytest.raises(ValueError, match=f"{TIMEOUT_ENV} must be a positive number of seconds"):
        group.__enter__()


def _joined(fake: FakeDist) -> None:
    """A rank that has joined the session (the token is agreed at the first barrier)."""
    fake.initialized = True
    distributed.barrier()


def test_rank_0_waits_for_the_other_ranks_marker_without_a_collective(
    monkeypatch, fake_dist, tmp_path
):
    monkeypatch.setattr(distributed, "POLL_S", 0.05)
    _joined(fake_dist)
    calls_before = list(fake_dist.calls)
    stamp = f"{distributed._SESSION.token}:1"

    def rank_1_finishes_later():
        time.sleep(0.4)
        (tmp_path / RANKS_FOLDER / "rank-1.done").write_text(stamp)

    (tmp_path / RANKS_FOLDER).mkdir()
    (tmp_path / RANKS_FOLDER / "rank-1.done").write_text("old-session:1")  # a stale marker
    writer = threading.Thread(target=rank_1_finishes_later)
    start = time.monotonic()
    writer.start()
    finish_rank(RunFolder(tmp_path))
    writer.join()
    assert time.monotonic() - start >= 0.4, "the stale marker must not count"
    assert fake_dist.calls == calls_before, "no collective at the end of a run"
    assert not (tmp_path / RANKS_FOLDER).exists(), "rank 0 removes the markers"


def test_rank_0_gives_up_after_the_wait_limit(monkeypatch, fake_dist, tmp_path):
    monkeypatch.setattr(distributed, "POLL_S", 0.05)
    monkeypatch.setenv(RANK_WAIT_ENV, "0.3")
    _joined(fake_dist)
    expected = rf"rank\(s\) 1 did not finish .* 0.3 s \({RANK_WAIT_ENV}\)"
    with pytest.raises(TimeoutError, match=expected):
        finish_rank(RunFolder(tmp_path))


def test_other_ranks_only_write_their_marker(fake_dist, tmp_path):
    fake_dist.rank = 1
    _joined(fake_dist)
    finish_rank(RunFolder(tmp_path))
    finish_rank(RunFolder(tmp_path))
    token = distributed._SESSION.token
    assert (tmp_path / RANKS_FOLDER / "rank-1.done").read_text() == f"{token}:2"


def test_nothing_to_do_when_not_distributed(tmp_path):
    finish_rank(RunFolder(tmp_path))
    assert not (tmp_path / RANKS_FOLDER).exists()


WORKER = textwrap.dedent(
    """
    import os, sys, time
    from sidu_bench.cli import main
    from sidu_bench.runner import run

    real = run.evaluate_item

    def slow(*args, **kwargs):
        time.sleep(float(os.environ["TEST_SLEEP_S"]))
        return real(*args, **kwargs)

    if os.environ["RANK"] == "1":
        run.evaluate_item = slow
    sys.exit(main(sys.argv[1:]))
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_merge_survives_a_rank_finishing_long_before_the_other(tmp_path):
    """Resume where rank 0 has nothing left and rank 1 works past the group's timeout."""
    options = [
        "evaluate",
        *("--limit", "4", "--steps", "4", "--explainers", "center,random"),
        *("--metrics", "pointing_game", "--device", "cpu", "--backend", "torch"),
        *("--out", str(tmp_path)),
    ]
    assert main(options) == 0
    run_dir = tmp_path / "synthetic-synthetic_cnn"
    records = pd.read_csv(run_dir / "records.csv", dtype={"id": str})
    order = list(dict.fromkeys(records["id"]))
    items = sorted((run_dir / "items").glob("*.npz"))
    assert len(order) == len(items) == 4
    # Rank 1 owns positions 1 and 3: drop one of its items; rank 0 has nothing left to do.
    rank_1_item = next(p for p in items if order[1].replace("/", "%2F") in p.name)
    rank_1_item.unlink()
    for name in ("records.csv", "summary.csv"):
        (run_dir / name).unlink()

    port = _free_port()
    group_timeout, rank_1_sleep = 5, 7
    processes = []
    for rank in (0, 1):
        env = dict(
            os.environ,
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE="2",
            LOCAL_WORLD_SIZE="2",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            OMP_NUM_THREADS="1",
            TEST_SLEEP_S=str(rank_1_sleep),
            **{TIMEOUT_ENV: str(group_timeout), RANK_WAIT_ENV: "120"},
        )
        processes.append(
            subprocess.Popen(
                [sys.executable, "-c", WORKER, *options],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [p.communicate(timeout=180)[0] for p in processes]
    for rank, (process, output) in enumerate(zip(processes, outputs, strict=True)):
        assert process.returncode == 0, f"rank {rank}:\n{output[-3000:]}"
    merged = pd.read_csv(run_dir / "records.csv", dtype={"id": str})
    assert list(dict.fromkeys(merged["id"])) == order
    pd.testing.assert_frame_equal(
        merged.drop(columns=["seconds", "metric_seconds"]),
        records.drop(columns=["seconds", "metric_seconds"]),
    )
    assert (run_dir / "summary.csv").exists()
    assert not (run_dir / RANKS_FOLDER).exists()
