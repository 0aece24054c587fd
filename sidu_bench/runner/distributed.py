"""Sharding a run over processes started by ``torchrun`` (gloo on CPU, NCCL on CUDA).

Outside ``torchrun`` (no ``WORLD_SIZE`` in the environment) everything here is a no-op and the
run is a single process.

Ranks may finish their items far apart in time: on a resume most of one rank's items may already
be stored while another still has hours of work. The end of a run therefore uses no collective
(whose timeout would abort the job): each rank writes a done marker into the run folder
(:func:`finish_rank`) and rank 0 polls for the others' markers, up to
:data:`DEFAULT_RANK_WAIT_S` (``SIDU_BENCH_RANK_WAIT_S`` overrides it), before it merges. The
collectives that remain (barriers at the start of a run, where the ranks are together, or where
one rank waits for another's whole run in a multi-run session) run under an explicit long timeout,
:data:`DEFAULT_TIMEOUT_S` (``SIDU_BENCH_DIST_TIMEOUT_S``), instead of NCCL's 10 minutes.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist

from sidu_bench.devices import local_rank, resolve_device
from sidu_bench.runner.folder import RunFolder

__all__ = [
    "DEFAULT_RANK_WAIT_S",
    "DEFAULT_TIMEOUT_S",
    "RANK_WAIT_ENV",
    "TIMEOUT_ENV",
    "barrier",
    "finish_rank",
    "from_rank_0",
    "local_rank",
    "process_group",
    "rank_and_world",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 24 * 3600.0
"""Timeout of the process group's collectives (NCCL's default of 10 minutes is far too short)."""
TIMEOUT_ENV = "SIDU_BENCH_DIST_TIMEOUT_S"
"""Environment variable overriding :data:`DEFAULT_TIMEOUT_S` (seconds)."""
DEFAULT_RANK_WAIT_S = 24 * 3600.0
"""How long rank 0 waits for the other ranks' done markers before giving up."""
RANK_WAIT_ENV = "SIDU_BENCH_RANK_WAIT_S"
"""Environment variable overriding :data:`DEFAULT_RANK_WAIT_S` (seconds)."""
POLL_S = 1.0
"""Seconds between two looks for done markers."""


@dataclass
class _Session:
    """This process's view of the distributed session.

    Attributes:
        token: the same on every rank, new per session (``None`` until agreed).
        finished: how often this rank finished each run folder in the session.
    """

    token: str | None = None
    finished: dict[str, int] = field(default_factory=dict)


_SESSION = _Session()


def _launched() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _seconds_from_env(name: str, default: float) -> float:
    """Seconds from environment variable ``name``, else ``default``."""
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return seconds


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of this process; ``(0, 1)`` when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        _ensure_token()
        dist.barrier()


def from_rank_0(value: object) -> object:
    """Rank 0's ``value`` on every rank (a collective; ``value`` itself when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    _ensure_token()
    shared = [value if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(shared, src=0)
    return shared[0]


def _ensure_token() -> None:
    """Agree on a session token (a collective: call it only where every rank is present)."""
    if _SESSION.token is not None:
        return
    token = [uuid.uuid4().hex if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(token, src=0)
    _SESSION.token, _SESSION.finished = token[0], {}


@contextlib.contextmanager
def process_group(device: str) -> Iterator[None]:
    """Join torchrun's process group for the duration (gloo on CPU, NCCL on CUDA).

    The device is resolved as the run resolves it (:func:`sidu_bench.devices.resolve_device`:
    ``auto`` and ``cuda`` mean this rank's ``LOCAL_RANK`` GPU). On CUDA the backend is NCCL and
    the GPU becomes the current device and is passed as ``device_id``; elsewhere it is gloo.
    Collectives time out after :data:`DEFAULT_TIMEOUT_S` (``SIDU_BENCH_DIST_TIMEOUT_S``).
    Outside torchrun, or when a group exists already, nothing is done.
    """
    if not _launched() or dist.is_initialized():
        yield
        return
    resolved = resolve_device(device)
    options: dict[str, object] = {
        "backend": "nccl" if resolved.type == "cuda" else "gloo",
        "timeout": timedelta(seconds=_seconds_from_env(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)),
    }
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved.index)
        if "device_id" in inspect.signature(dist.init_process_group).parameters:
            options["device_id"] = resolved
    dist.init_process_group(**options)
    try:
        _ensure_token()
        yield
    finally:
        _SESSION.token, _SESSION.finished = None, {}
        dist.destroy_process_group()


def finish_rank(folder: RunFolder) -> None:
    """Mark this rank's items of ``folder`` done; on rank 0, wait until every rank has.

    Each rank writes a marker into the run folder holding the session token and how often it
    finished this folder in the session (so markers of an earlier session, or of an earlier run
    into the same folder, never count). Rank 0 then polls every :data:`POLL_S` seconds for the
    other ranks' markers, up to ``SIDU_BENCH_RANK_WAIT_S`` seconds (default
    :data:`DEFAULT_RANK_WAIT_S`), and removes them. No collective is involved, so ranks may
    finish hours apart. A no-op when not distributed.

    Raises:
        TimeoutError: on rank 0, when a rank's marker has not appeared in time (the message
            names the ranks; re-running the command resumes and merges).
    """
    rank, world = rank_and_world()
    if world == 1:
        return
    if _SESSION.token is None:
        raise RuntimeError("finish_rank needs a session token: call barrier() first on every rank")
    key = str(folder.path.resolve())
    _SESSION.finished[key] = _SESSION.finished.get(key, 0) + 1
    stamp = f"{_SESSION.token}:{_SESSION.finished[key]}"
    folder.write_rank_marker(rank, stamp)
    if rank != 0:
        return
    limit = _seconds_from_env(RANK_WAIT_ENV, DEFAULT_RANK_WAIT_S)
    deadline = time.monotonic() + limit
    waiting = [other for other in range(world) if folder.rank_marker(other) != stamp]
    if waiting:
        log.info("rank 0 waits for rank(s) %s to finish %s", waiting, folder.path.name)
    while waiting:
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"rank(s) {', '.join(map(str, waiting))} did not finish their items of {folder} "
                f"within {limit:g} s ({RANK_WAIT_ENV}); the items done so far are stored: run "
                "the same command again to resume and merge"
            )
        time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
        waiting = [other for other in waiting if folder.rank_marker(other) != stamp]
    folder.clear_rank_markers()
