"""The device a run or a bench runs on: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, checked."""

from __future__ import annotations

import os
import re

import torch

from sidu_bench.errors import ParameterError

__all__ = ["local_rank", "resolve_device"]


def local_rank() -> int:
    """This process's GPU index on its machine (0 outside torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.

    Under torchrun, ``auto`` and ``cuda`` mean this rank's local GPU (:func:`local_rank`);
    ``cuda:N`` is taken as given.

    Raises:
        ParameterError: another name, or a CUDA device that is not there (naming ``device``).

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if not isinstance(name, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
        raise ParameterError(f"`device` must be auto, cpu, cuda or cuda:N, got {name!r}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ParameterError(f"`device` {name!r} was requested but no CUDA device is available")
    if name == "cuda":
        return torch.device("cuda", local_rank())
    index = int(name.split(":")[1])
    if index >= torch.cuda.device_count():
        raise ParameterError(
            f"`device` {name!r}: only {torch.cuda.device_count()} CUDA device(s) are available"
        )
    return torch.device("cuda", index)
