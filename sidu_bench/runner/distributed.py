"""Sharding a run over processes started by ``torchrun`` (gloo on CPU, NCCL on CUDA).

Outside ``torchrun`` (no ``WORLD_SIZE`` in the environment) everything here is a no-op and the
run is a single process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch.distributed as dist


def _launched() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def local_rank() -> int:
    """This process's GPU index on its machine (0 outside torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of this process; ``(0, 1)`` when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


@contextlib.contextmanager
def process_group(device: str) -> Iterator[None]:
    """Join torchrun's process group for the duration (gloo on CPU, NCCL on CUDA)."""
    if not _launched() or dist.is_initialized():
        yield
        return
    dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()
