"""``python -m sidu_bench bench``: every (model, explainer) case, its peer and the ceiling.

For each model the ceiling (best plain batched forward throughput, :func:`sidu_bench.perf.
forward_ceiling`) is measured first; then every explainer and, where one exists, its peer run in
a fresh process each (:func:`sidu_bench.bench.probe.measure`). Rows are written after every case
(atomically), so an interrupted run keeps what it measured. A case that fails is recorded with
its error and the run goes on; the command then exits non-zero.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sidu_bench.bench.cases import build_case, default_models, lookup_model
from sidu_bench.bench.methods import PEER_OF, peer_available, peer_label
from sidu_bench.bench.probe import DTYPES, Measurement, ProbeRequest, measure
from sidu_bench.bench.table import BenchRow, write_tables
from sidu_bench.explainers import parse_spec
from sidu_bench.perf import forward_ceiling

__all__ = ["DEFAULT_EXPLAINERS", "BenchConfig", "run_bench"]

logger = logging.getLogger(__name__)

DEFAULT_EXPLAINERS = (
    "sidu",
    "gradcam",
    "scorecam:max_channels=256",
    "rise:masks=256",
    "center",
    "random",
)
"""Score-CAM and RISE with a reduced, named mask count: images/s does not depend on it."""

PEER_MEMORY_SHARE = 0.5
"""A peer whose estimated memory exceeds this share of the free memory is skipped."""


@dataclass(frozen=True)
class BenchConfig:
    """What ``bench`` measures.

    Attributes:
        device: ``"cpu"`` or a CUDA device.
        models: bench model names (empty: :func:`~sidu_bench.bench.cases.default_models`).
        explainers: our explainer specs.
        dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"`` for our explainers' forwards.
        channels_last: channels-last masked images for our explainers.
        images: explained images per call.
        peers: measure each explainer's peer where installed.
        imports: modules imported in every probe (they may register explainers).
    """

    device: str = "cpu"
    models: tuple[str, ...] = ()
    explainers: tuple[str, ...] = DEFAULT_EXPLAINERS
    dtype: str = "float32"
    channels_last: bool = False
    images: int = 1
    peers: bool = True
    imports: tuple[str, ...] = field(default=())

    def selected_models(self) -> tuple[str, ...]:
        """The named models, or the device's defaults."""
        return self.models or default_models(self.device)


def run_bench(
    config: BenchConfig,
    out: Path,
    *,
    on_row: Callable[[BenchRow], None] | None = None,
) -> list[BenchRow]:
    """Measure every case of ``config``; write ``bench-<device>.csv``/``.md`` under ``out``.

    Args:
        config: the selection.
        out: output folder (the tables are rewritten after every case).
        on_row: called with each finished row (progress display).

    Returns:
        The rows, ours and peers, in measurement order.
    """
    _check(config)
    rows: list[BenchRow] = []
    for model_name in config.selected_models():
        case = build_case(model_name, config.device, images=config.images)
        ceiling = forward_ceiling(
            case.module,
            case.images[:1],
            dtype=DTYPES[config.dtype],
            channels_last=config.channels_last,
        )
        channels = _layer_channels(case.module, case.model.layer, case.images[:1])
        logger.info(
            "%s: ceiling %.1f images/s (batch %d)",
            model_name,
            ceiling.images_per_second,
            ceiling.batch_size,
        )
        del case
        for spec in config.explainers:
            ours = _row(config, model_name, spec, peer=False, ceiling=ceiling)
            peer = None
            if config.peers and peer_label(spec) is not None:
                skip = _peer_skip_reason(parse_spec(spec).name, channels, config.device)
                peer = _row(config, model_name, spec, peer=True, ceiling=ceiling, skip=skip)
                ours = ours.compared_with_peer(peer)
            for row in (ours, peer):
                if row is not None:
                    rows.append(row)
                    write_tables(rows, out, config)
                    if on_row is not None:
                        on_row(row)
    return rows


def _check(config: BenchConfig) -> None:
    for name in config.selected_models():
        lookup_model(name)
    for spec in config.explainers:
        parse_spec(spec)
    if config.dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {', '.join(DTYPES)}, got {config.dtype!r}")
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {config.device} asked for, but CUDA is not available")


def _row(
    config: BenchConfig,
    model_name: str,
    spec: str,
    *,
    peer: bool,
    ceiling: object,
    skip: str | None = None,
) -> BenchRow:
    label = peer_label(spec) if peer else parse_spec(spec).label
    base = BenchRow.start(
        config,
        model=lookup_model(model_name),
        label=label,
        peer_of=parse_spec(spec).label if peer else "",
        ceiling=ceiling,
    )
    if skip is not None:
        logger.info("%s / %s: %s", model_name, label, skip)
        return base.with_status(skip)
    request = ProbeRequest(
        model=model_name,
        spec=spec,
        peer=peer,
        device=config.device,
        dtype=config.dtype,
        channels_last=config.channels_last,
        images=config.images,
        imports=config.imports,
    )
    try:
        measurement: Measurement = measure(request)
    except RuntimeError as error:
        logger.error("%s / %s failed: %s", model_name, label, error)
        return base.with_status(f"failed: {str(error).splitlines()[-1][:200]}")
    return base.with_measurement(measurement)


def _layer_channels(module: torch.nn.Module, layer: str, image: torch.Tensor) -> int:
    shapes: list[torch.Size] = []
    handle = dict(module.named_modules())[layer].register_forward_hook(
        lambda _m, _i, output: shapes.append(output.shape)
    )
    try:
        with torch.inference_mode():
            module(image)
    finally:
        handle.remove()
    return int(shapes[0][1])


def pytorch_sidu_memory_estimate(channels: int) -> int:
    """Bytes of pytorch-sidu's largest tensor: ``cdist`` of ``K`` maps of ``C`` channels (K = C).

    Example:
        >>> round(pytorch_sidu_memory_estimate(2048) / 1e9, 1)  # ResNet-50's layer4
        34.4
    """
    return channels**3 * 4


def _peer_skip_reason(name: str, channels: int, device: str) -> str | None:
    peer = PEER_OF[name]
    if not peer_available(peer):
        return f"skipped: {peer} is not installed"
    if peer != "pytorch-sidu":
        return None
    needed = pytorch_sidu_memory_estimate(channels)
    free = _free_memory(device)
    if needed > PEER_MEMORY_SHARE * free:
        return (
            f"skipped: pytorch-sidu needs ~{needed / 1e9:.0f} GB for {channels} channels "
            f"(cdist K x C x C), {free / 1e9:.0f} GB free"
        )
    return None


def _free_memory(device: str) -> int:
    if device.startswith("cuda"):
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    with open("/proc/meminfo", encoding="ascii") as info:
        for line in info:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
