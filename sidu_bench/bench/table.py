"""Rows of the ``bench`` table and the ``bench-<device>.csv``/``.md`` files.

One row per measured method: ours (``kind`` ``ours``) and each peer (``kind`` ``peer``, with
``peer_of`` naming our explainer it is compared with). ``images_per_second`` counts forwarded
images (the work), ``ratio_to_ceiling`` divides it by the model's best plain batched forward
throughput measured in the same run, and ``speedup_over_peer`` is the peer's seconds per image
over ours (equal work for Score-CAM and Grad-CAM; for SIDU the peer forwards every mask while we
forward each distinct mask once, so the gain includes that).
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import math
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import torch

from sidu_bench.bench.cases import BenchModel
from sidu_bench.perf import Ceiling
from sidu_bench.runner.config import environment
from sidu_bench.runner.storage import atomic_write_text

if TYPE_CHECKING:
    from sidu_bench.bench.probe import Measurement
    from sidu_bench.bench.run import BenchConfig

__all__ = [
    "BENCH_COLUMNS",
    "BenchRow",
    "bench_markdown",
    "read_bench_csv",
    "read_bench_rows",
    "write_tables",
]

NAN = math.nan


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
    seconds_per_image: float = NAN
    forwarded_per_image: float = NAN
    images_per_second: float = NAN
    ceiling_images_per_second: float = NAN
    ceiling_batch_size: int = 0
    ratio_to_ceiling: float = NAN
    peak_memory_mb: float = NAN
    peer: str = ""
    speedup_over_peer: float = NAN
    memory_ratio_to_peer: float = NAN
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
    ) -> BenchRow:
        """A row before measurement: the case's identity and the model's ceiling."""
        return cls(
            model=model.name,
            input_size=model.input_size,
            weights=model.weights,
            explainer=label,
            kind="peer" if peer_of else "ours",
            peer_of=peer_of,
            device=config.device,
            dtype="float32" if peer_of else config.dtype,
            channels_last=config.channels_last and not peer_of,
            images=config.images,
            ceiling_images_per_second=ceiling.images_per_second,
            ceiling_batch_size=ceiling.batch_size,
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
        )

    def compared_with_peer(self, peer: BenchRow) -> BenchRow:
        """This (our) row with the speed-up and memory ratio over ``peer``."""
        return dataclasses.replace(
            self,
            peer=peer.explainer,
            speedup_over_peer=peer.seconds_per_image / self.seconds_per_image,
            memory_ratio_to_peer=_ratio(self.peak_memory_mb, peer.peak_memory_mb),
        )


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else NAN


BENCH_COLUMNS = tuple(field.name for field in dataclasses.fields(BenchRow))
"""The columns of ``bench-<device>.csv``, in order."""


def write_tables(rows: Sequence[BenchRow], out: Path, config: BenchConfig) -> list[Path]:
    """Write ``bench-<device>.csv`` and ``.md`` under ``out`` atomically; return the paths."""
    device = "cuda" if config.device.startswith("cuda") else "cpu"
    table = pd.DataFrame([dataclasses.asdict(row) for row in rows], columns=list(BENCH_COLUMNS))
    csv_path = Path(out) / f"bench-{device}.csv"
    md_path = Path(out) / f"bench-{device}.md"
    buffer = io.StringIO()
    table.to_csv(buffer, index=False)
    atomic_write_text(csv_path, buffer.getvalue())
    atomic_write_text(md_path, bench_markdown(rows, config))
    return [csv_path, md_path]


def read_bench_csv(path: Path) -> pd.DataFrame:
    """Read a ``bench-<device>.csv``, checking its columns (clear error naming the file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"bench table {path} does not exist")
    try:
        table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ValueError(f"corrupt bench table {path}: {error}") from error
    missing = [column for column in BENCH_COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(f"corrupt bench table {path}: missing columns {missing}")
    return table


def read_bench_rows(path: Path) -> list[BenchRow]:
    """Read a ``bench-<device>.csv`` back into rows (empty text cells stay empty strings)."""
    table = read_bench_csv(path)
    text = [field.name for field in dataclasses.fields(BenchRow) if field.type == "str"]
    for column in text:
        table[column] = table[column].astype(object).where(table[column].notna(), "")
    return [BenchRow(**record) for record in table[list(BENCH_COLUMNS)].to_dict("records")]


def _number(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}g}"


def bench_markdown(rows: Sequence[BenchRow], config: BenchConfig) -> str:
    """The human-readable table: a header naming machine and versions, one section per model."""
    env = environment(config.device)
    versions = ", ".join(f"{name} {version}" for name, version in env["versions"].items())
    lines = [
        f"# Speed and memory, {config.device}",
        "",
        f"- machine: {env['device_name']}; {platform.machine()}, {env['threads']} threads, "
        f"Python {env['python']}",
        f"- versions: {versions}; git {env['git_commit'] or 'unknown'}",
        f"- date: {datetime.date.today().isoformat()}; torch {torch.__version__}",
        f"- selection: models {', '.join(config.selected_models())}; explainers "
        f"{', '.join(config.explainers)}; peers {'on' if config.peers else 'off'}",
        f"- our explainers: dtype {config.dtype}, channels-last {config.channels_last}, "
        f"{config.images} image(s) per call; peers always float32",
        "- images/s counts forwarded images (the work); ratio = images/s over the model's best "
        "plain batched forward throughput (the ceiling, same run); speed-up = the peer's seconds "
        "per image over ours; memory: CPU peak resident set added by the call (fresh process), "
        "CUDA peak allocated",
        "",
    ]
    for model in dict.fromkeys(row.model for row in rows):
        mine = [row for row in rows if row.model == model]
        first = mine[0]
        lines += [
            f"## {model} ({first.input_size} px, weights {first.weights}; ceiling "
            f"{_number(first.ceiling_images_per_second)} images/s at batch "
            f"{first.ceiling_batch_size})",
            "",
            "| method | s/image | forwarded/image | images/s | ratio to ceiling | peak MB | "
            "vs peer | speed-up | memory ratio | status |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in mine:
            name = row.explainer if row.kind == "ours" else f"{row.explainer} (peer)"
            lines.append(
                f"| {name} | {_number(row.seconds_per_image)} | "
                f"{_number(row.forwarded_per_image, 4)} | {_number(row.images_per_second)} | "
                f"{_fixed(row.ratio_to_ceiling, 2)} | {_megabytes(row.peak_memory_mb)} | "
                f"{row.peer or '-'} | {_speedup(row.speedup_over_peer)} | "
                f"{_number(row.memory_ratio_to_peer, 2)} | {row.status} |"
            )
        lines.append("")
    return "\n".join(lines)


def _speedup(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}x"


def _fixed(value: float, decimals: int) -> str:
    return "-" if math.isnan(value) else f"{value:.{decimals}f}"


def _megabytes(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"
