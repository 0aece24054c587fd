"""What ``bench`` measures (:class:`BenchConfig`) and the checks its options share with a probe."""

from __future__ import annotations

from dataclasses import dataclass, field

from sidu.backends import BACKENDS
from sidu.precision import DTYPES, PRECISIONS
from sidu_bench.bench.cases import default_models
from sidu_bench.devices import resolve_device
from sidu_bench.errors import ParameterError, check_choice

__all__ = ["DEFAULT_EXPLAINERS", "BenchConfig", "check_engine_options"]

DEFAULT_EXPLAINERS = (
    "sidu",
    "gradcam",
    "scorecam:max_channels=256",
    "rise:masks=256",
    "center",
    "random",
)
"""Score-CAM and RISE with a reduced, named mask count: images/s does not depend on it."""


def check_engine_options(*, dtype: str, backend: str, precision: str, images: int) -> None:
    """Check the options of our explainers' forwards that a config and a probe share.

    Raises:
        ParameterError: naming the bad option (``dtype``, ``backend``, ``precision``, ``images``).
    """
    check_choice("dtype", dtype, DTYPES)
    check_choice("backend", backend, BACKENDS)
    check_choice("precision", precision, PRECISIONS)
    if images < 1:
        raise ParameterError(f"`images` must be >= 1, got {images}")


@dataclass(frozen=True)
class BenchConfig:
    """What ``bench`` measures.

    Attributes:
        device: ``auto`` (CUDA when available, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``;
            resolved on construction (:func:`sidu_bench.devices.resolve_device`: ``cuda`` is
            stored as ``cuda:0``).
        models: bench model names (empty: :func:`~sidu_bench.bench.cases.default_models`).
        explainers: our explainer specs.
        dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"`` for our explainers' forwards.
        channels_last: channels-last masked images for our explainers.
        images: explained images per call.
        peers: measure each explainer's peer where installed.
        imports: modules imported in every probe (they may register explainers).
        backend: forward backend of our explainers: ``auto``, ``torch`` or ``onnxruntime``
            (:func:`sidu.backends.resolve_backend`).
        precision: float32 CUDA arithmetic of our explainers and the ceiling: ``ieee`` or
            ``tf32`` (peers keep torch's default; no effect on the CPU).
        compare_torch_backend: measure each explainer again on the ``torch`` backend where the
            configured backend ran another engine (``speedup_over_torch_backend``).
    """

    device: str = "auto"
    models: tuple[str, ...] = ()
    explainers: tuple[str, ...] = DEFAULT_EXPLAINERS
    dtype: str = "float32"
    channels_last: bool = False
    images: int = 1
    peers: bool = True
    imports: tuple[str, ...] = field(default=())
    backend: str = "auto"
    precision: str = "ieee"
    compare_torch_backend: bool = True

    def __post_init__(self) -> None:
        """Resolve ``device="auto"``; validate the device, backend, precision and dtype names."""
        object.__setattr__(self, "device", str(resolve_device(self.device)))
        check_engine_options(
            dtype=self.dtype, backend=self.backend, precision=self.precision, images=self.images
        )

    def selected_models(self) -> tuple[str, ...]:
        """The named models, or the device's defaults."""
        return self.models or default_models(self.device)
