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
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

__all__ = [
    "DEFAULT_RANK_WAIT_S",
    "DEFAULT_TIMEOUT_S",
    "RANK_WAIT_ENV",
    "TIMEOUT_ENV",
    "barrier",
    "finish_rank",
    "local_rank",
    "process_group",
    "process_group_backend",
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
MARKER_DIR = ".ranks"
"""Folder of the done markers inside a run folder (removed by rank 0 after the wait)."""


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


def local_rank() -> int:
    """This process's GPU index on its machine (0 outside torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of this process; ``(0, 1)`` when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def process_group_backend(device: str | torch.device) -> str:
    """The collective backend for a run on ``device``: ``"nccl"`` for CUDA, else ``"gloo"``.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"`` (CUDA when available) or a
            :class:`torch.device`.

    Example:
        >>> process_group_backend("cuda:1"), process_group_backend("cpu")
        ('nccl', 'gloo')

    """
    if isinstance(device, str) and device == "auto":
        return "nccl" if torch.cuda.is_available() else "gloo"
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def _cuda_index(device: str | torch.device) -> int:
    """The GPU of this rank: ``N`` for ``cuda:N``, else the local rank."""
    if not (isinstance(device, str) and device == "auto"):
        index = torch.device(device).index
        if index is not None:
            return index
    return local_rank()


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        _ensure_token()
        dist.barrier()


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

    On CUDA this rank's GPU (``N`` of ``cuda:N``, else ``LOCAL_RANK``) becomes the current device
    and is passed as ``device_id``; collectives time out after :data:`DEFAULT_TIMEOUT_S`
    (``SIDU_BENCH_DIST_TIMEOUT_S``). Outside torchrun, or when a group exists already, nothing
    is done.
    """
    if not _launched() or dist.is_initialized():
        yield
        return
    backend = process_group_backend(device)
    options: dict[str, object] = {
        "backend": backend,
        "timeout": timedelta(seconds=_seconds_from_env(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)),
    }
    if backend == "nccl":
        index = _cuda_index(device)
        torch.cuda.set_device(index)
        if "device_id" in inspect.signature(dist.init_process_group).parameters:
            options["device_id"] = torch.device("cuda", index)
    dist.init_process_group(**options)
    try:
        _ensure_token()
        yield
    finally:
        _SESSION.token, _SESSION.finished = None, {}
        dist.destroy_process_group()


def finish_rank(run_dir: Path) -> None:
    """Mark this rank's items of ``run_dir`` done; on rank 0, wait until every rank has.

    Each rank writes ``run_dir/.ranks/rank-<r>.done`` holding the session token and how often it
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
    key = str(Path(run_dir).resolve())
    _SESSION.finished[key] = _SESSION.finished.get(key, 0) + 1
    stamp = f"{_SESSION.token}:{_SESSION.finished[key]}"
    folder = Path(run_dir) / MARKER_DIR
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomically(folder / f"rank-{rank}.done", stamp)
    if rank != 0:
        return
    limit = _seconds_from_env(RANK_WAIT_ENV, DEFAULT_RANK_WAIT_S)
    deadline = time.monotonic() + limit
    waiting = _unfinished(folder, world, stamp)
    if waiting:
        log.info("rank 0 waits for rank(s) %s to finish %s", waiting, Path(run_dir).name)
    while waiting:
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"rank(s) {', '.join(map(str, waiting))} did not finish their items of {run_dir} "
                f"within {limit:g} s ({RANK_WAIT_ENV}); the items done so far are stored: run "
                "the same command again to resume and merge"
            )
        time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
        waiting = _unfinished(folder, world, stamp)
    shutil.rmtree(folder, ignore_errors=True)


def _unfinished(folder: Path, world: int, stamp: str) -> list[int]:
    """Ranks whose marker in ``folder`` does not (yet) hold ``stamp``."""
    waiting = []
    for other in range(world):
        try:
            found = (folder / f"rank-{other}.done").read_text()
        except OSError:
            found = None
        if found != stamp:
            waiting.append(other)
    return waiting


def _write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader never sees a partial file."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_text(text)
    os.replace(partial, path)
