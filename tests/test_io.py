"""The shared IO module: atomic writes, JSON with clear errors, the environment record."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from sidu_bench import io as sidu_io
from sidu_bench.io import (
    atomic_write_bytes,
    atomic_write_text,
    environment,
    installed_version,
    read_json,
    write_json,
)


def test_atomic_write_creates_folders_and_replaces_the_file(tmp_path):
    path = tmp_path / "a" / "b" / "file.bin"
    atomic_write_bytes(path, b"first")
    atomic_write_bytes(path, b"second, longer")
    assert path.read_bytes() == b"second, longer"
    atomic_write_text(path, "é\n")
    assert path.read_bytes() == "é\n".encode()
    assert sorted(p.name for p in path.parent.iterdir()) == ["file.bin"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "file.txt"
    atomic_write_text(path, "old")

    def failing_replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match=f"cannot write {path}: disk full"):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_a_full_disk_names_the_file_not_the_temporary(tmp_path, monkeypatch):
    def full(handle):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    path = tmp_path / "records.partial.csv"
    with pytest.raises(OSError, match="No space left") as error:
        atomic_write_bytes(path, b"x" * 1000)
    assert error.value.errno == errno.ENOSPC
    assert str(error.value) == f"[Errno 28] cannot write {path}: No space left on device"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_writes_keep_the_permissions_a_plain_write_gives(tmp_path, umask):
    previous = os.umask(umask)
    try:
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        atomic_write_text(tmp_path / "atomic.txt", "x")
    finally:
        os.umask(previous)
    mode = (tmp_path / "atomic.txt").stat().st_mode & 0o777
    assert mode == plain.stat().st_mode & 0o777 == 0o666 & ~umask


def test_write_json_indents_ends_with_a_newline_and_reads_back(tmp_path):
    path = tmp_path / "content.json"
    write_json(path, {"b": [1, 2.5], "a": None, "where": Path("x/y")})
    text = path.read_text(encoding="utf-8")
    assert text == json.dumps({"b": [1, 2.5], "a": None, "where": "x/y"}, indent=2) + "\n"
    assert read_json(path, "test file") == {"b": [1, 2.5], "a": None, "where": "x/y"}


def test_read_json_names_the_kind_of_a_missing_or_invalid_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"gate file .*absent\.json does not exist"):
        read_json(tmp_path / "absent.json", "gate file")
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=r"tolerance file .*bad\.json is not valid JSON"):
        read_json(tmp_path / "bad.json", "tolerance file")
    (tmp_path / "latin.json").write_bytes(b"\xff")
    with pytest.raises(ValueError, match="is not valid JSON"):
        read_json(tmp_path / "latin.json", "file")


def test_installed_version_is_none_for_a_missing_or_no_package():
    assert torch.__version__.startswith(installed_version("torch"))
    assert installed_version("no-such-distribution-xyz") is None
    assert installed_version(None) is None


def test_environment_records_versions_machine_and_commit():
    record = environment("cpu")
    assert list(record) == [
        "versions",
        "git_commit",
        "python",
        "platform",
        "device_name",
        "device",
        "cpu_capability",
        "threads",
    ]
    assert list(record["versions"]) == list(sidu_io.VERSIONED_PACKAGES)
    assert torch.__version__.startswith(record["versions"]["torch"])
    assert (record["device"], record["threads"]) == ("cpu", torch.get_num_threads())
    assert record["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(sidu_io.__file__).parent,
    )
    if head.returncode != 0:
        assert record["git_commit"] is None
    else:
        assert record["git_commit"].split("+")[0] == head.stdout.strip()
