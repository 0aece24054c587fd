"""Whether a device computes a reduced-precision dtype natively, or emulates it slowly.

On a CPU without bf16 (fp16) instructions, torch emulates ``torch.bfloat16`` (``torch.float16``)
arithmetic, and autocast forward passes run several times slower than float32 (4-22x for
EfficientNet-Lite0 and ResNet-18 on an AVX2 CPU). Native support means, on x86, AVX512-BF16 or
AMX-BF16 for bf16 and AVX512-FP16 or AMX-FP16 for fp16; on ARM, the BF16 extension (``bf16``,
``sve_bf16``) for bf16 and half-precision arithmetic (``fp16_arith``, ``asimdhp`` in
``/proc/cpuinfo``) for fp16. The CPU's features come from ``torch.cpu.get_capabilities()``
(torch's cpuinfo), else ``/proc/cpuinfo``.
On CUDA, bf16 is native when ``torch.cuda.is_bf16_supported()`` and fp16 always.
"""

from __future__ import annotations

import functools
import logging
import re

import torch

from sidu.precision import dtype_name

__all__ = ["has_native_support", "slow_dtype_reason", "warn_if_slow_dtype"]

logger = logging.getLogger(__name__)

NATIVE_CPU_FEATURES = {
    torch.bfloat16: ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16"),
    torch.float16: ("avx512_fp16", "amx_fp16", "fp16_arith", "asimdhp"),
}
"""Per reduced-precision dtype, the CPU features (any one suffices) that compute it natively."""

_FEATURE_NAMES = {
    "avx512_bf16": "AVX512-BF16",
    "amx_bf16": "AMX-BF16",
    "bf16": "ARM BF16",
    "sve_bf16": "ARM SVE-BF16",
    "avx512_fp16": "AVX512-FP16",
    "amx_fp16": "AMX-FP16",
    "fp16_arith": "ARM FP16 arithmetic",
    "asimdhp": "ARM ASIMD-HP",
}

_WARNED: set[tuple[torch.dtype, str]] = set()


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    """Return the names of the CPU's features (lower case, torch's cpuinfo names)."""
    get_capabilities = getattr(torch.cpu, "get_capabilities", None)
    if get_capabilities is not None:
        return frozenset(name for name, value in get_capabilities().items() if value is True)
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            text = cpuinfo.read()
    except OSError:
        return frozenset()
    lines = re.findall(r"^(?:flags|Features)\s*:(.*)$", text, flags=re.MULTILINE)
    return frozenset(flag.lower() for line in lines for flag in line.split())


def slow_dtype_reason(dtype: torch.dtype | None, device: str | torch.device = "cpu") -> str | None:
    """Explain why ``dtype`` forward passes on ``device`` are emulated (slow); ``None`` if not.

    Args:
        dtype: the compute dtype (``None`` means full precision).
        device: the device the forward passes run on.

    Returns:
        A message naming the missing feature and what to use instead, or ``None`` when the
        device computes ``dtype`` natively (always for ``None``, float32 and float64).

    Example:
        >>> slow_dtype_reason(torch.float32, "cpu") is None
        True

    """
    if dtype not in NATIVE_CPU_FEATURES:
        return None
    kind = torch.device(device).type
    name = dtype_name(dtype)
    if kind == "cpu":
        wanted = NATIVE_CPU_FEATURES[dtype]
        if any(feature in _cpu_flags() for feature in wanted):
            return None
        features = " or ".join(_FEATURE_NAMES[feature] for feature in wanted)
        return (
            f"this CPU has no native {name} arithmetic (none of {features}), so torch emulates "
            f"it and {name} forward passes run several times slower than float32; use float32 "
            "(no reduced dtype) on this CPU"
        )
    if kind == "cuda" and dtype == torch.bfloat16 and not _cuda_bf16_supported():
        return (
            "this GPU has no native bfloat16 (torch.cuda.is_bf16_supported() is False); use "
            "float16 or float32"
        )
    return None


def _cuda_bf16_supported() -> bool:
    """Whether the current CUDA device computes bf16 natively (False without CUDA)."""
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def has_native_support(dtype: torch.dtype, device: str | torch.device = "cpu") -> bool:
    """Return whether ``device`` computes ``dtype`` natively (see :func:`slow_dtype_reason`).

    Args:
        dtype: a floating dtype; float32 and float64 are always native.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a :class:`torch.device`; other device
            types are assumed native.

    Example:
        >>> has_native_support(torch.float32)
        True

    """
    return slow_dtype_reason(dtype, device) is None


def warn_if_slow_dtype(dtype: torch.dtype | None, device: str | torch.device) -> None:
    """Log a warning, once per process per dtype and device type, when ``dtype`` is emulated."""
    reason = slow_dtype_reason(dtype, device)
    key = (dtype, torch.device(device).type)
    if reason is None or key in _WARNED:
        return
    _WARNED.add(key)
    logger.warning("%s forward passes requested: %s", dtype_name(dtype), reason)
