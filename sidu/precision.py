"""Precision of the forward passes: reduced-precision dtypes by name, and float32 as IEEE or TF32.

**Forward dtypes.** A forward pass runs in full precision (the inputs' dtype; named
``"float32"``, given as ``None``) or under autocast to ``torch.bfloat16``/``torch.float16``
(:data:`DTYPES`, :func:`parse_dtype`, :func:`dtype_name`, :func:`autocast`); the arithmetic after
the forwards is float64 either way. :func:`check_dtype` is the one check of a ``dtype`` argument.

**float32 on CUDA.** Since Ampere, cuDNN convolutions may run float32 inputs through
TensorFloat-32 (10-bit mantissa); torch >= 2.9 does so by default
(``torch.backends.cudnn.conv.fp32_precision == "tf32"``), which moves logits by ~1e-3 relative
and is far outside the project's faithfulness tolerances.
:func:`fp32_precision` pins the choice for the duration of a call and restores the caller's
settings afterwards.

torch >= 2.9 keeps two views of the same choice: the ``fp32_precision`` attributes and the legacy
``allow_tf32`` flags, and reading a legacy flag raises while the two views disagree. The context
therefore moves both views together: the legacy flags (when the caller's state lets them be read)
and then the three ``fp32_precision`` attributes
(``torch.backends.cudnn.conv``, ``torch.backends.cudnn.rnn``, ``torch.backends.cuda.matmul``).
On torch < 2.9, which has no ``fp32_precision`` attributes, only the legacy flags exist.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch

__all__ = [
    "DTYPES",
    "FORWARD_DTYPES",
    "PRECISIONS",
    "REDUCED_DTYPES",
    "autocast",
    "check_dtype",
    "check_precision",
    "dtype_name",
    "fp32_precision",
    "parse_dtype",
]

DTYPES: dict[str, torch.dtype | None] = {
    "float32": None,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
"""Forward precisions by name: ``"float32"`` (``None``: full precision, the inputs' dtype) and
the two autocast dtypes. The names are those of a run's ``config.json``."""

REDUCED_DTYPES = (torch.bfloat16, torch.float16)
"""The dtypes a forward pass runs under autocast."""

FORWARD_DTYPES = (None, torch.float32, torch.float64, *REDUCED_DTYPES)
"""The values a ``dtype`` argument accepts: full precision (``None`` or the inputs' float32 /
float64) or a reduced one."""

PRECISIONS = ("ieee", "tf32")
"""The float32 modes: ``"ieee"`` (full float32, the default of the project) and ``"tf32"``."""

_T = TypeVar("_T")


def parse_dtype(name: str) -> torch.dtype | None:
    """Return the forward dtype named ``name`` (a key of :data:`DTYPES`).

    Raises:
        ValueError: naming ``dtype`` and the accepted names.

    Example:
        >>> parse_dtype("bfloat16"), parse_dtype("float32")
        (torch.bfloat16, None)

    """
    if not isinstance(name, str) or name not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    return DTYPES[name]


def dtype_name(dtype: torch.dtype | None) -> str:
    """Return the name of a forward dtype: ``"float32"`` for ``None`` (full precision).

    ``torch.float32`` is full precision too and is named ``"float32"``.

    Raises:
        ValueError: ``dtype`` has no name in :data:`DTYPES`.

    Example:
        >>> dtype_name(None), dtype_name(torch.float16)
        ('float32', 'float16')

    """
    if dtype is torch.float32:
        return "float32"
    for name, value in DTYPES.items():
        if value is dtype:
            return name
    raise ValueError(
        f"dtype must be None, torch.float32, torch.bfloat16 or torch.float16, got {dtype!r}"
    )


def check_dtype(dtype: object) -> torch.dtype | None:
    """Return ``dtype`` if it is one of :data:`FORWARD_DTYPES`, else raise a ``ValueError``."""
    if not any(dtype is allowed for allowed in FORWARD_DTYPES):
        raise ValueError(
            "dtype must be None, torch.float32, torch.float64, torch.bfloat16 or "
            f"torch.float16, got {dtype!r}"
        )
    return dtype


def check_precision(mode: object) -> str:
    """Return ``mode`` if it is one of :data:`PRECISIONS`, else raise a ``ValueError``."""
    if mode not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {mode!r}")
    return mode


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Return autocast to ``dtype`` on ``device`` for a reduced dtype, else a context doing nothing.

    Example:
        >>> with autocast(torch.device("cpu"), torch.bfloat16):
        ...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
        torch.bfloat16

    """
    if dtype in REDUCED_DTYPES:
        return torch.autocast(device_type=device.type, dtype=dtype)
    return contextlib.nullcontext()


def _has_fp32_precision_api() -> bool:
    """Whether this torch has the ``fp32_precision`` attributes (torch >= 2.9)."""
    backends = torch.backends
    return all(
        hasattr(owner, "fp32_precision")
        for owner in (
            getattr(backends.cudnn, "conv", None),
            getattr(backends.cudnn, "rnn", None),
            backends.cuda.matmul,
            getattr(backends.mkldnn, "matmul", None),
        )
    )


def _read(getter: Callable[[], _T]) -> _T | None:
    """Read a legacy flag; ``None`` when torch refuses because the two views disagree."""
    try:
        return getter()
    except RuntimeError:
        return None


@dataclass(frozen=True)
class _State:
    """Every setting :func:`fp32_precision` may change, as the caller left it.

    ``None`` marks a legacy value torch refused to read (the caller's views already disagreed);
    such a value is neither changed nor restored.
    """

    conv: str
    rnn: str
    matmul: str
    mkldnn_matmul: str
    cudnn_allow_tf32: bool | None
    matmul_precision: str | None

    @classmethod
    def capture(cls) -> _State:
        """Read the current settings."""
        backends = torch.backends
        return cls(
            conv=backends.cudnn.conv.fp32_precision,
            rnn=backends.cudnn.rnn.fp32_precision,
            matmul=backends.cuda.matmul.fp32_precision,
            mkldnn_matmul=backends.mkldnn.matmul.fp32_precision,
            cudnn_allow_tf32=_read(lambda: backends.cudnn.allow_tf32),
            matmul_precision=_read(torch.get_float32_matmul_precision),
        )

    def apply(self, mode: str) -> None:
        """Switch the legacy flags and the three ``fp32_precision`` attributes to ``mode``."""
        tf32 = mode == "tf32"
        backends = torch.backends
        if self.cudnn_allow_tf32 is not None:
            # Sets the legacy cuDNN flag together with conv and rnn, so later reads agree.
            backends.cudnn.allow_tf32 = tf32
        if self.matmul_precision is not None and (self.matmul_precision != "highest") != tf32:
            # "highest" <-> "high": the legacy matmul view follows; mkldnn is left alone.
            backends.cuda.matmul.allow_tf32 = tf32
        backends.cudnn.conv.fp32_precision = mode
        backends.cudnn.rnn.fp32_precision = mode
        backends.cuda.matmul.fp32_precision = mode

    def restore(self) -> None:
        """Put every setting back as captured (legacy views first, then the attributes)."""
        backends = torch.backends
        if self.cudnn_allow_tf32 is not None:
            backends.cudnn.allow_tf32 = self.cudnn_allow_tf32
        if self.matmul_precision is not None:
            torch.set_float32_matmul_precision(self.matmul_precision)
        backends.cudnn.conv.fp32_precision = self.conv
        backends.cudnn.rnn.fp32_precision = self.rnn
        backends.cuda.matmul.fp32_precision = self.matmul
        backends.mkldnn.matmul.fp32_precision = self.mkldnn_matmul


@contextlib.contextmanager
def _legacy_fp32_precision(mode: str) -> Iterator[None]:
    """:func:`fp32_precision` for torch < 2.9: only the two ``allow_tf32`` flags exist."""
    backends = torch.backends
    saved = (backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32)
    backends.cudnn.allow_tf32 = mode == "tf32"
    backends.cuda.matmul.allow_tf32 = mode == "tf32"
    try:
        yield
    finally:
        backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32 = saved


@contextlib.contextmanager
def fp32_precision(mode: str) -> Iterator[None]:
    """Run float32 CUDA convolutions, RNNs and matmuls at ``mode`` within the block.

    ``"ieee"`` computes in full float32; ``"tf32"`` lets cuDNN and cuBLAS use TensorFloat-32
    (torch's own default for cuDNN since 2.9). The setting is process-wide (torch has no
    per-thread one); the caller's settings, including the legacy ``allow_tf32`` flags and the
    float32 matmul precision, are restored on exit, also after an exception. CPU arithmetic is
    not affected.

    Args:
        mode: one of :data:`PRECISIONS`.

    Raises:
        ValueError: if ``mode`` is not one of :data:`PRECISIONS`.

    Example:
        >>> with fp32_precision("ieee"):
        ...     torch.backends.cudnn.conv.fp32_precision
        'ieee'

    """
    check_precision(mode)
    if not _has_fp32_precision_api():
        with _legacy_fp32_precision(mode):
            yield
        return
    state = _State.capture()
    try:
        state.apply(mode)
        yield
    finally:
        state.restore()
