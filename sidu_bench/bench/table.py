"""Rows of the ``bench`` table and the ``bench-<device>.csv``/``.md`` files.

One row per measured method: ours on the configured backend (``kind`` ``ours``), ours again on
the ``torch`` backend where the configured one ran another engine (``kind`` ``torch-backend``,
``peer_of`` naming our explainer), and each peer (``kind`` ``peer``, ``peer_of`` naming our
explainer it is compared with). Columns:

- ``precision``: float32 CUDA arithmetic the row ran at (``ieee``/``tf32``; peers at torch's
  default, ``tf32`` convolutions; ``ieee`` on the CPU, which has no TF32);
- ``backend``: the engine that ran the row's forwards (``torch``, ``onnxruntime``; empty without
  forwards), ``backend_note`` why a requested ``auto``/``onnxruntime`` ran torch;
- ``seconds_per_image``: the timed call over the explained images; one-time set-up (ONNX export,
  session, warm-up) is outside it, in ``setup_seconds`` (NaN where no warm-up call ran);
- ``images_per_second``: forwarded images (the work, through any engine) per second;
- ``ceiling_*``: the model's best plain batched forward throughput measured in the same run, over
  engines (``ceiling_engine``: ``torch``, ``torch-channels-last``, ``onnxruntime``) and batch
  sizes; ``ratio_to_ceiling`` = images/s over it;
- ``peak_memory_mb``: the peak rise of memory in use over the process's baseline before the
  case's set-up (model and inputs excluded), in a fresh process; resident set size on the CPU,
  allocated device memory on CUDA;
- ``speedup_over_peer``: the peer's seconds per image over ours (equal work for Score-CAM and
  Grad-CAM; for SIDU the peer forwards every mask while we forward each distinct mask once, so
  the gain includes that); ``speedup_over_torch_backend``: the ``torch``-backend row's seconds
  per image over ours (same work).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import torch

from sidu_bench.bench.cases import BenchModel
from sidu_bench.bench.config import BenchConfig
from sidu_bench.bench.perf import Ceiling
from sidu_bench.io import atomic_write_text, environment

if TYPE_CHECKING:
    from sidu_bench.bench.probe import Measurement

__all__ = [
    "BENCH_COLUMNS",
    "BenchRow",
    "bench_markdown",
    "write_tables",
]

NAN = math.nan

KINDS = ("ours", "torch-backend", "peer")
"""Row kinds: our explainer on the configured backend, on the torch backend, a peer package."""


@dataclass(frozen=True)
class BenchRow:
    """One measured method on one model (see the module docstring for the columns)."""

    model: str
    input_size: int
    weights: str
    explainer: str
    kind: str
    peer_of: str
    device: str
    dtype: str
    channels_last: bool
    images: int
    precision: str = "ieee"
    backend: str = ""
    seconds_per_image: float = NAN
    setup_seconds: float = NAN
    forwarded_per_image: float = NAN
    images_per_second: float = NAN
    ceiling_images_per_second: float = NAN
    ceiling_batch_size: int = 0
    ceiling_engine: str = ""
    ratio_to_ceiling: float = NAN
    peak_memory_mb: float = NAN
    peer: str = ""
    speedup_over_peer: float = NAN
    memory_ratio_to_peer: float = NAN
    speedup_over_torch_backend: float = NAN
    backend_note: str = ""
    status: str = "ok"

    @classmethod
    def start(
        cls,
        config: BenchConfig,
        *,
        model: BenchModel,
        label: str,
        peer_of: str,
        ceiling: Ceiling,
        kind: str,
    ) -> BenchRow:
        """A row before measurement: the case's identity and the model's ceiling.

        ``kind`` is ``ours``, ``torch-backend`` or ``peer``.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        peer = kind == "peer"
        cuda = config.device.startswith("cuda")
        return cls(
            model=model.name,
            input_size=model.input_size,
            weights=model.weights,
            explainer=label,
            kind=kind,
            peer_of=peer_of,
            device=config.device,
            dtype="float32" if peer else config.dtype,
            channels_last=config.channels_last and not peer,
            images=config.images,
            precision=("tf32" if peer else config.precision) if cuda else "ieee",
            ceiling_images_per_second=ceiling.images_per_second,
            ceiling_batch_size=ceiling.batch_size,
            ceiling_engine=ceiling.engine,
        )

    def with_status(self, status: str) -> BenchRow:
        """This row, not measured, with ``status`` saying why."""
        return dataclasses.replace(self, status=status)

    def with_measurement(self, measurement: Measurement) -> BenchRow:
        """This row with the probe's numbers (rates need a positive time)."""
        seconds = measurement.seconds_per_image
        forwarded = measurement.forwarded_per_image
        rate = forwarded / seconds if seconds > 0 and forwarded > 0 else NAN
        return dataclasses.replace(
            self,
            seconds_per_image=seconds,
            forwarded_per_image=forwarded,
            images_per_second=rate,
            ratio_to_ceiling=rate / self.ceiling_images_per_second,
            peak_memory_mb=measurement.peak_memory_bytes / 2**20,
            backend=measurement.backend,
            backend_note=measurement.backend_note,
            setup_seconds=measurement.setup_seconds,
        )

    def compared_with_peer(self, peer: BenchRow) -> BenchRow:
        """This (our) row with the speed-up and memory ratio over ``peer``."""
        return dataclasses.replace(
            self,
            peer=peer.explainer,
            speedup_over_peer=peer.seconds_per_image / self.seconds_per_image,
            memory_ratio_to_peer=_ratio(self.peak_memory_mb, peer.peak_memory_mb),
        )

    def compared_with_torch_backend(self, torch_row: BenchRow) -> BenchRow:
        """This (our) row with the speed-up over the same explainer on the ``torch`` backend."""
        return dataclasses.replace(
            self,
            speedup_over_torch_backend=_ratio(torch_row.seconds_per_image, self.seconds_per_image),
        )


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else NAN


BENCH_COLUMNS = tuple(field.name for field in dataclasses.fields(BenchRow))
"""The columns of ``bench-<device>.csv``, in order."""


def write_tables(
    rows: Sequence[BenchRow],
    out: Path,
    config: BenchConfig,
    ceilings: Mapping[str, Ceiling] | None = None,
) -> list[Path]:
    """Write ``bench-<device>.csv`` and ``.md`` under ``out`` atomically; return the paths.

    Args:
        rows: the measured rows.
        out: the output folder.
        config: what was measured (named in the Markdown header).
        ceilings: per model, its :class:`~sidu_bench.bench.perf.Ceiling` (the Markdown lists every
            engine's best throughput); optional.
    """
    device = "cuda" if config.device.startswith("cuda") else "cpu"
    table = pd.DataFrame([dataclasses.asdict(row) for row in rows], columns=list(BENCH_COLUMNS))
    csv_path = Path(out) / f"bench-{device}.csv"
    md_path = Path(out) / f"bench-{device}.md"
    atomic_write_text(csv_path, table.to_csv(index=False))
    atomic_write_text(md_path, bench_markdown(rows, config, ceilings))
    return [csv_path, md_path]


def _number(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}g}"


def bench_markdown(
    rows: Sequence[BenchRow],
    config: BenchConfig,
    ceilings: Mapping[str, Ceiling] | None = None,
) -> str:
    """The human-readable table: a header naming machine and versions, one section per model."""
    env = environment(config.device)
    versions = ", ".join(f"{name} {version}" for name, version in env["versions"].items())
    peer_precision = (
        "TF32 convolutions (torch's default)" if config.device.startswith("cuda") else "-"
    )
    lines = [
        f"# Speed and memory, {config.device}",
        "",
        f"- machine: {env['device_name']}; {platform.machine()}, {env['threads']} threads, "
        f"Python {env['python']}",
        f"- versions: {versions}; git {env['git_commit'] or 'unknown'}",
        f"- date: {datetime.date.today().isoformat()}; torch {torch.__version__}",
        f"- selection: models {', '.join(config.selected_models())}; explainers "
        f"{', '.join(config.explainers)}; peers {'on' if config.peers else 'off'}; torch-backend "
        f"rows {'on' if config.compare_torch_backend else 'off'}",
        f"- our explainers: backend {config.backend}, dtype {config.dtype}, precision "
        f"{config.precision}, channels-last {config.channels_last}, {config.images} image(s) per "
        f"call; peers always float32, precision {peer_precision}",
        "- s/image: the timed call (one-time set-up, e.g. the ONNX export, is outside it, in "
        "'setup s'); images/s counts forwarded images (the work, through any engine); ratio = "
        "images/s over the model's best plain batched forward throughput over engines and batch "
        "sizes (the ceiling, same run); speed-up = the peer's seconds per image over ours; vs "
        "torch = our explainer on the torch backend, its seconds per image over ours",
        "- peak MB added: the peak rise of memory in use over the process's baseline before the "
        "case's set-up (model and inputs excluded), in a fresh process per row; CPU resident set "
        "size, CUDA allocated memory",
        "",
    ]
    for model in dict.fromkeys(row.model for row in rows):
        mine = [row for row in rows if row.model == model]
        first = mine[0]
        lines += [
            f"## {model} ({first.input_size} px, weights {first.weights}; ceiling "
            f"{_number(first.ceiling_images_per_second)} images/s, {first.ceiling_engine or '-'} "
            f"at batch {first.ceiling_batch_size})",
            "",
        ]
        if ceilings is not None and model in ceilings:
            lines += [*_ceiling_lines(ceilings[model]), ""]
        lines += [
            "| method | backend | dtype, precision | s/image | setup s | forwarded/image | "
            "images/s | ratio to ceiling | peak MB added | vs peer | speed-up | memory ratio | "
            "vs torch backend | status |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in mine:
            name = {
                "ours": row.explainer,
                "torch-backend": f"{row.explainer} (torch backend)",
                "peer": f"{row.explainer} (peer)",
            }[row.kind]
            lines.append(
                f"| {name} | {row.backend or '-'} | {row.dtype}, {row.precision} | "
                f"{_number(row.seconds_per_image)} | {_number(row.setup_seconds, 2)} | "
                f"{_number(row.forwarded_per_image, 4)} | {_number(row.images_per_second)} | "
                f"{_fixed(row.ratio_to_ceiling, 2)} | {_megabytes(row.peak_memory_mb)} | "
                f"{row.peer or '-'} | {_fixed(row.speedup_over_peer, 2, 'x')} | "
                f"{_number(row.memory_ratio_to_peer, 2)} | "
                f"{_fixed(row.speedup_over_torch_backend, 2, 'x')} | {row.status} |"
            )
        notes = [row for row in mine if row.backend_note]
        if notes:
            lines.append("")
            lines += [f"- {row.explainer}: ran torch because {row.backend_note}" for row in notes]
        lines.append("")
    return "\n".join(lines)


def _ceiling_lines(ceiling: Ceiling) -> list[str]:
    """One line per ceiling engine: its best throughput and batch size, or why it was skipped."""
    lines = []
    for engine, rates in ceiling.by_engine.items():
        best = max(rates, key=rates.__getitem__)
        setup = ceiling.setup_seconds.get(engine, 0.0)
        extra = f", set-up {setup:.1f} s" if setup >= 0.05 else ""
        lines.append(
            f"- ceiling engine {engine}: {_number(rates[best])} images/s at batch {best}{extra}"
        )
    lines += [f"- ceiling engine {name}: skipped ({why})" for name, why in ceiling.skipped.items()]
    return lines


def _fixed(value: float, decimals: int, unit: str = "") -> str:
    return "-" if math.isnan(value) else f"{value:.{decimals}f}{unit}"


def _megabytes(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"
