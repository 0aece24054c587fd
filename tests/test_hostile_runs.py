"""A run folder and its commands under attack: damaged files, bad options, concurrent runs.

Each case reproduces a fault found by trying to break the suite (issue 21) on real files made
by a real run, and asserts the exact outcome: exit 2 with a message naming the file, field or
flag, never exit 0 with a wrong number. Runs are cheap: the synthetic set, ``center``, 8 steps.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from sidu_bench.cli import main
from sidu_bench.metrics import list_metrics
from sidu_bench.runner import RunConfig, RunFolder
from sidu_bench.runner.config import DESCRIPTIVE_FIELDS
from sidu_bench.runner.folder import RUNNING_FILE

RUN = "synthetic-synthetic_cnn"
CHEAP = ["--explainers", "center", "--limit", "4", "--steps", "8", "--device", "cpu"]


def evaluate(out, *options):
    return main(["evaluate", *CHEAP, "--out", str(out), *options])


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished cheap run (copy it before damaging it)."""
    out = tmp_path_factory.mktemp("finished")
    assert evaluate(out) == 0
    return out / RUN


def copy_of(run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(run, out / RUN)
    return out, out / RUN


def test_a_truncated_partial_record_file_is_not_resumed_as_whole(finished, tmp_path, capsys):
    out, run = copy_of(finished, tmp_path)
    text = (run / "records.csv").read_text()
    last = text.rstrip("\n").splitlines()[-1]
    cut = text[: text.rindex(last) + last.index(",", len(last) // 2)]  # mid-row, no newline
    (run / "records.partial.csv").write_text(cut)
    (run / "records.csv").unlink()
    shutil.rmtree(run / "items")
    assert evaluate(out) == 2
    error = capsys.readouterr().err
    assert f"corrupt {run / 'records.partial.csv'}: line 5 is not a whole row" in error
    assert "cut short" in error
    assert not (run / "records.csv").exists(), "nothing was merged from the damaged file"


def test_a_truncated_records_file_is_corrupt_not_fewer_items(finished, tmp_path, capsys):
    _, run = copy_of(finished, tmp_path)
    (run / "records.csv").write_bytes((run / "records.csv").read_bytes()[:900])
    assert main(["summarise", str(run)]) == 2
    assert f"corrupt {run / 'records.csv'}: line" in capsys.readouterr().err


def test_a_non_number_in_a_number_column_is_corrupt(finished, tmp_path, capsys):
    _, run = copy_of(finished, tmp_path)
    records = pd.read_csv(run / "records.csv", dtype=str, keep_default_na=False)
    records.loc[2, "insertion_auc"] = "0.5x"
    records.to_csv(run / "records.csv", index=False)
    assert main(["summarise", str(run)]) == 2
    assert "column insertion_auc holds '0.5x' on line 4, not a number" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('"explainers": "center"', "explainers must be a list of strings, got 'center'"),
        ('"seed": "0"', "seed must be a JSON integer, got '0'"),
        ('"limit": 2.5', "limit must be a JSON integer, got 2.5"),
        ('"steps": true', "steps must be a JSON integer, got True"),
    ],
)
def test_a_config_field_of_the_wrong_type_is_named(finished, tmp_path, capsys, content, message):
    _, run = copy_of(finished, tmp_path)
    config = json.loads((run / "config.json").read_text())
    config.update(json.loads("{" + content + "}"))
    (run / "config.json").write_text(json.dumps(config))
    assert main(["summarise", str(run)]) == 2
    assert capsys.readouterr().err.strip() == f"error: corrupt {run / 'config.json'}: {message}"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[]", "expected a JSON object"),
        (b'{"dataset": "synth\xff"}', "not valid UTF-8 JSON"),
    ],
)
def test_a_config_that_is_not_an_object_is_named(finished, tmp_path, capsys, content, message):
    _, run = copy_of(finished, tmp_path)
    (run / "config.json").write_bytes(content)
    assert main(["summarise", str(run)]) == 2
    assert f"corrupt {run / 'config.json'}: {message}" in capsys.readouterr().err


def test_text_cells_that_look_like_formulas_are_escaped_and_round_trip(tmp_path):
    folder = RunFolder(tmp_path / "run")
    names = ['=HYPERLINK("x")', "+1", "-cmd", "@SUM(A1)", "'quoted", "plain", "a=b"]
    rows = [{"id": name, "category": name, "explainer": "center", "label": 1} for name in names]
    folder.write_records(rows)
    with (tmp_path / "run" / "records.csv").open(newline="") as stream:
        written = [row["id"] for row in csv.DictReader(stream)]
    assert written == ['\'=HYPERLINK("x")', "'+1", "'-cmd", "'@SUM(A1)", "''quoted", "plain", "a=b"]
    records = folder.records()
    assert list(records["id"]) == names
    assert list(records["category"]) == names
    assert list(records["label"]) == [1] * len(names), "numbers are never escaped"


def test_a_long_item_id_gets_a_bounded_file_name(tmp_path):
    from sidu_bench.runner.folder import ItemResult

    folder = RunFolder(tmp_path / "run")
    for item_id in ("a" * 240, "é" * 60, "short/id", "a" * 239 + "b"):
        folder.save_item(ItemResult(item_id, {"center": {"id": item_id}}, {"x": np.zeros(2)}))
        assert folder.load_item(item_id).rows == {"center": {"id": item_id}}
    names = sorted(path.name for path in (tmp_path / "run" / "items").iterdir())
    assert "short%2Fid.npz" in names, "short ids keep today's names"
    assert len(names) == 4, "two long ids that share a start do not collide"
    assert max(len(name.encode()) for name in names) <= 160


@pytest.mark.parametrize("damage", [b"", b"PK\x03\x04 truncated"])
@pytest.mark.parametrize("which", ["item", "figure data"])
def test_a_damaged_npz_file_is_reported_not_a_traceback(finished, tmp_path, capsys, damage, which):
    out, run = copy_of(finished, tmp_path)
    if which == "item":
        target = sorted((run / "items").glob("*.npz"))[0]
        (run / "records.csv").unlink()  # the resume must read the items back
    else:
        target = run / "figure_data.npz"
    target.write_bytes(damage)
    assert evaluate(out) == 2
    error = capsys.readouterr().err
    assert f"{target} (" in error
    assert "delete it and run the same command again" in error
    assert "Traceback" not in error


def test_an_out_that_is_a_file_is_refused_before_the_model_loads(tmp_path, capsys, monkeypatch):
    from sidu_bench.runner import run as run_module

    monkeypatch.setattr(run_module, "get_model", lambda *a, **k: pytest.fail("model loaded"))
    target = tmp_path / "a-file"
    target.write_text("x")
    assert evaluate(target) == 2
    assert capsys.readouterr().err.strip() == f"error: --out {target} is a file, not a folder"
    assert main(["report", str(tmp_path), "--out", str(target)]) == 2
    assert f"--out {target} is a file, not a folder" in capsys.readouterr().err


def test_an_out_that_cannot_be_written_is_refused_before_the_model_loads(
    tmp_path, capsys, monkeypatch
):
    import tempfile

    from sidu_bench.runner import run as run_module

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(run_module, "get_model", lambda *a, **k: pytest.fail("model loaded"))
    monkeypatch.setattr(tempfile, "mkstemp", denied)
    assert evaluate(tmp_path / "ro") == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --out {tmp_path / 'ro'} cannot be written into: Permission denied"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_out_is_refused(tmp_path, capsys):
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    assert evaluate(read_only) == 2
    assert "cannot be written into: Permission denied" in capsys.readouterr().err


def test_a_full_disk_is_an_error_naming_the_file(tmp_path, capsys, monkeypatch):
    real_fsync = os.fsync

    def full_on_records(handle):
        if "records" in os.readlink(f"/proc/self/fd/{handle}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(handle)

    monkeypatch.setattr(os, "fsync", full_on_records)
    assert evaluate(tmp_path) == 2
    error = capsys.readouterr().err
    assert f"cannot write {tmp_path / RUN / 'records.partial.csv'}: No space left" in error
    assert "Traceback" not in error


def test_a_report_over_a_folder_without_records_writes_nothing(finished, tmp_path, capsys):
    _, run = copy_of(finished, tmp_path)
    header = (run / "records.csv").read_text().splitlines()[0]
    (run / "records.csv").write_text(header + "\n")
    out = tmp_path / "report"
    assert main(["report", str(run), "--out", str(out)]) == 2
    assert f"{run} holds no records" in capsys.readouterr().err
    assert list(out.iterdir()) == []


def test_no_explainer_is_refused_before_anything_runs(tmp_path, capsys):
    assert main(["evaluate", "--explainers", ",,", "--out", str(tmp_path)]) == 2
    assert "--explainers must name at least one explainer" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("seed", ["100000000000000000000000", "-1"])
def test_a_seed_out_of_range_names_the_flag(tmp_path, capsys, seed):
    assert evaluate(tmp_path, "--seed", seed) == 2
    assert f"--seed must be an integer in [0, 2**63), got {seed}" in capsys.readouterr().err


def work_of(out, *options):
    """The work key a run of ``CHEAP`` + ``options`` into ``out`` claims its folder with."""
    from sidu_bench.runner.run import build_run

    args = dict(zip(options[::2], options[1::2], strict=True))
    explainers = tuple(args.get("--explainers", "center").split(","))
    config = RunConfig(
        dataset="synthetic",
        model="",
        explainers=explainers,
        metrics=tuple(list_metrics(default_only=True)),
        layer="",
        limit=int(args.get("--limit", 4)),
        steps=8,
    )
    content = build_run(config, out).config.to_json()
    return {key: value for key, value in content.items() if key not in DESCRIPTIVE_FIELDS}


def test_a_second_run_with_other_options_is_refused_while_the_first_holds_the_folder(
    tmp_path, capsys
):
    folder = RunFolder(tmp_path / RUN)
    first = work_of(tmp_path, "--explainers", "sidu,center", "--limit", "4")
    with folder.claim(first):
        assert evaluate(tmp_path, "--explainers", "center,gradcam", "--limit", "2") == 2
        error = capsys.readouterr().err
        assert f"{folder} is in use by another process (pid {os.getpid()})" in error
        assert "explainers=['sidu', 'center'] (this run: ['center', 'gradcam'])" in error
        assert "limit=4 (this run: 2)" in error
        assert not (tmp_path / RUN / "config.json").exists()
        assert evaluate(tmp_path, "--explainers", "sidu,center", "--fresh") == 2
        assert "--fresh would delete its work" in capsys.readouterr().err
        # the same work shares the folder
        assert evaluate(tmp_path, "--explainers", "sidu,center", "--limit", "4") == 0
    assert evaluate(tmp_path, "--explainers", "center,gradcam", "--limit", "2") == 0


@pytest.mark.slow
def test_two_processes_with_other_options_cannot_share_a_folder(tmp_path):
    """Real processes: the first holds the folder while it runs; a second is refused."""
    command = [sys.executable, "-m", "sidu_bench", "evaluate", "--device", "cpu", "--steps", "8"]
    first = [*command, "--explainers", "rise,center", "--limit", "20", "--out", str(tmp_path)]
    running = subprocess.Popen(first, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    claimed = tmp_path / RUN / RUNNING_FILE
    deadline = time.monotonic() + 120
    while not (claimed.exists() and claimed.read_text()) and running.poll() is None:
        assert time.monotonic() < deadline, "the first run never claimed its folder"
        time.sleep(0.1)
    second = [*command, "--explainers", "center,gradcam", "--limit", "2", "--out", str(tmp_path)]
    refused = subprocess.run(second, capture_output=True, text=True, timeout=300)
    assert running.poll() is None, "the first run must still be running for this test"
    assert refused.returncode == 2, refused.stderr
    assert "is in use by another process" in refused.stderr
    assert running.wait(timeout=900) == 0, running.stderr.read().decode()
    records = pd.read_csv(tmp_path / RUN / "records.csv", dtype=str, keep_default_na=False)
    assert sorted(set(records["explainer"])) == ["center", "rise"], "the first run's rows stay"
    assert records["id"].nunique() == 20
