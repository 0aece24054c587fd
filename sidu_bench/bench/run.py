"""``python -m sidu_bench bench``: every (model, explainer) case, its peer and the ceiling.

For each model the ceiling (best plain batched forward throughput over engines and batch sizes,
:func:`sidu_bench.bench.perf.best_forward_ceiling`) is measured first; then every explainer on the
configured backend, the same explainer on the ``torch`` backend where the configured one ran
another engine (the speed-up of the backend), and, where one exists, its peer run in a fresh
process each (:func:`sidu_bench.bench.probe.measure`). The torch-backend row is measured for
every explainer whose forwards ran on ONNX Runtime (SIDU, Score-CAM and RISE with ``auto`` on the
CPU), not only SIDU: the table then says what the backend buys for each, at the cost of one more
run of each of them. Rows are written after every case (atomically), so an interrupted run keeps
what it measured. A case that fails is recorded with its error and the run goes on; the command
then exits non-zero.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch

from sidu.capture import forward_hooks
from sidu.precision import parse_dtype
from sidu_bench.bench.cases import BENCH_MODELS, BenchModel, build_case
from sidu_bench.bench.config import BenchConfig
from sidu_bench.bench.methods import PEER_OF, peer_available, peer_label
from sidu_bench.bench.perf import Ceiling, best_forward_ceiling
from sidu_bench.bench.probe import Measurement, ProbeRequest, measure
from sidu_bench.bench.table import BenchRow, write_tables
from sidu_bench.explainers import parse_spec

__all__ = ["run_bench"]

logger = logging.getLogger(__name__)

PEER_MEMORY_SHARE = 0.5
"""A peer whose estimated memory exceeds this share of the free memory is skipped."""


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
        The rows, ours, torch-backend and peers, in measurement order.
    """
    _check(config)
    rows: list[BenchRow] = []
    ceilings: dict[str, Ceiling] = {}

    def add(row: BenchRow) -> None:
        rows.append(row)
        write_tables(rows, out, config, ceilings)
        if on_row is not None:
            on_row(row)

    for model_name in config.selected_models():
        case = build_case(model_name, config.device, images=config.images)
        ceiling = best_forward_ceiling(
            case.module,
            case.images[:1],
            dtype=parse_dtype(config.dtype),
            precision=config.precision,
        )
        ceilings[model_name] = ceiling
        model = case.model
        channels = _layer_channels(case.module, model.layer, case.images[:1])
        logger.info(
            "%s: ceiling %.1f images/s (%s, batch %d)",
            model_name,
            ceiling.images_per_second,
            ceiling.engine,
            ceiling.batch_size,
        )
        del case
        for spec in config.explainers:
            ours = _row(config, model, spec, kind="ours", ceiling=ceiling)
            torch_row = None
            if config.compare_torch_backend and ours.backend not in ("", "torch"):
                torch_row = _row(config, model, spec, kind="torch-backend", ceiling=ceiling)
                ours = ours.compared_with_torch_backend(torch_row)
            peer = None
            if config.peers and peer_label(spec) is not None:
                skip = _peer_skip_reason(parse_spec(spec).name, channels, config.device)
                peer = _row(config, model, spec, kind="peer", ceiling=ceiling, skip=skip)
                ours = ours.compared_with_peer(peer)
            for row in (ours, torch_row, peer):
                if row is not None:
                    add(row)
    return rows


def _check(config: BenchConfig) -> None:
    for name in config.selected_models():
        BENCH_MODELS.get(name)
    for spec in config.explainers:
        parse_spec(spec)


def _row(
    config: BenchConfig,
    model: BenchModel,
    spec: str,
    *,
    kind: str,
    ceiling: Ceiling,
    skip: str | None = None,
) -> BenchRow:
    peer = kind == "peer"
    label = peer_label(spec) if peer else parse_spec(spec).label
    base = BenchRow.start(
        config,
        model=model,
        label=label,
        peer_of="" if kind == "ours" else parse_spec(spec).label,
        ceiling=ceiling,
        kind=kind,
    )
    if skip is not None:
        logger.info("%s / %s: %s", model.name, label, skip)
        return base.with_status(skip)
    request = ProbeRequest(
        model=model.name,
        spec=spec,
        peer=peer,
        device=config.device,
        dtype=config.dtype,
        channels_last=config.channels_last,
        images=config.images,
        imports=config.imports,
        backend="torch" if kind == "torch-backend" else config.backend,
        precision=config.precision,
    )
    try:
        measurement: Measurement = measure(request)
    except RuntimeError as error:
        logger.error("%s / %s (%s) failed: %s", model.name, label, kind, error)
        return base.with_status(f"failed: {str(error).splitlines()[-1][:200]}")
    return base.with_measurement(measurement)


def _layer_channels(module: torch.nn.Module, layer: str, image: torch.Tensor) -> int:
    shapes: list[torch.Size] = []
    with (
        forward_hooks([module.get_submodule(layer)], lambda _m, _i, out: shapes.append(out.shape)),
        torch.inference_mode(),
    ):
        module(image)
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
