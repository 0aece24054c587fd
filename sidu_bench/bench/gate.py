"""The CI speed gate: ratios measured in one run against committed thresholds.

A gate file (JSON, e.g. ``results/gates/speed.json``) names the device, dtype, forward backend
and precision it was derived at (defaults ``cpu``, ``float32``, ``auto``, ``ieee``), the cases
and, per (model, explainer), the thresholds; only ratios of numbers measured in the same run are
gated, so a slow or busy machine moves both sides together:

- ``min_ratio_to_ceiling``: our forwarded images/s over the model's forward ceiling, the best
  plain batched throughput over engines (on the CPU torch eager, channels-last and ONNX Runtime)
  and batch sizes;
- ``min_speedup_over_peer``: the peer's seconds per image over ours;
- ``max_memory_ratio_to_peer``: our peak memory over the peer's (both the rise over the
  process's baseline, on every device);
- ``min_speedup_over_torch_backend``: our explainer on the ``torch`` backend, its seconds per
  image over ours on the configured backend.

A case that is missing, failed, or has a NaN where a threshold applies fails the gate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sidu.backends import BACKENDS
from sidu.precision import PRECISIONS
from sidu_bench.bench.table import BenchRow
from sidu_bench.explainers import parse_spec
from sidu_bench.io import read_json

__all__ = [
    "GateFile",
    "GateResult",
    "SpeedThreshold",
    "check_speed",
    "format_gate",
    "read_gate_file",
]

CRITERIA = {
    "min_ratio_to_ceiling": ("ratio_to_ceiling", True),
    "min_speedup_over_peer": ("speedup_over_peer", True),
    "max_memory_ratio_to_peer": ("memory_ratio_to_peer", False),
    "min_speedup_over_torch_backend": ("speedup_over_torch_backend", True),
}
"""Threshold key: (row field, whether the value must be at least the threshold)."""
SELECTION = {"device": "cpu", "dtype": "float32", "backend": "auto", "precision": "ieee"}
"""What a gate file names besides its thresholds, with the value when it names none."""


@dataclass(frozen=True)
class SpeedThreshold:
    """The thresholds of one (model, explainer) case; ``None`` leaves a criterion ungated."""

    model: str
    explainer: str
    limits: dict[str, float]


@dataclass(frozen=True)
class GateFile:
    """A parsed gate file: the selection it measures and its thresholds."""

    path: Path
    device: str
    dtype: str
    thresholds: tuple[SpeedThreshold, ...]
    backend: str = "auto"
    precision: str = "ieee"

    @property
    def models(self) -> tuple[str, ...]:
        """The gated models, in file order."""
        return tuple(dict.fromkeys(t.model for t in self.thresholds))

    @property
    def explainers(self) -> tuple[str, ...]:
        """The gated explainer specs, in file order."""
        return tuple(dict.fromkeys(t.explainer for t in self.thresholds))

    @property
    def needs_torch_backend(self) -> bool:
        """Whether a threshold needs the torch-backend rows (``speedup_over_torch_backend``)."""
        return any("min_speedup_over_torch_backend" in t.limits for t in self.thresholds)


@dataclass(frozen=True)
class GateResult:
    """One checked criterion."""

    model: str
    explainer: str
    criterion: str
    threshold: float
    value: float
    passed: bool
    ceiling: str = ""

    def describe(self) -> str:
        """One line: the case, the criterion, the value against the threshold and the verdict."""
        relation = ">=" if CRITERIA.get(self.criterion, ("", True))[1] else "<="
        verdict = "ok" if self.passed else "FAIL"
        against = f"; ceiling {self.ceiling}" if self.ceiling else ""
        return (
            f"{verdict:<4} {self.model} / {self.explainer}: {self.criterion} "
            f"{self.value:.3g} (needs {relation} {self.threshold:g}{against})"
        )


def read_gate_file(path: Path) -> GateFile:
    """Read and validate a gate file; errors name the file and the bad entry."""
    path = Path(path)
    content = read_json(path, "gate file")
    if not isinstance(content, dict) or not isinstance(content.get("thresholds"), list):
        raise ValueError(f"gate file {path} needs a 'thresholds' list")
    thresholds = []
    for index, entry in enumerate(content["thresholds"]):
        where = f"gate file {path}, thresholds[{index}]"
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(key), str) for key in ("model", "explainer")
        ):
            raise ValueError(f"{where} needs string 'model' and 'explainer'")
        limits = {key: value for key, value in entry.items() if key not in ("model", "explainer")}
        unknown = sorted(set(limits) - set(CRITERIA))
        if unknown:
            raise ValueError(f"{where}: unknown criteria {unknown}; known: {sorted(CRITERIA)}")
        for key, value in limits.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{where}: {key} must be a positive number, got {value!r}")
        if not limits:
            raise ValueError(f"{where} sets no threshold")
        thresholds.append(SpeedThreshold(entry["model"], entry["explainer"], limits))
    if not thresholds:
        raise ValueError(f"gate file {path} has no thresholds")
    names = {key: content.get(key, default) for key, default in SELECTION.items()}
    if not all(isinstance(value, str) for value in names.values()):
        raise ValueError(
            f"gate file {path}: 'device', 'dtype', 'backend' and 'precision' must be strings"
        )
    for key, allowed in (("backend", BACKENDS), ("precision", PRECISIONS)):
        if names[key] not in allowed:
            raise ValueError(f"gate file {path}: {key} must be one of {allowed}")
    return GateFile(path, thresholds=tuple(thresholds), **names)


def check_speed(rows: Sequence[BenchRow], gate: GateFile) -> list[GateResult]:
    """Check every threshold of ``gate`` against the measured ``rows`` (our rows only)."""
    ours = {(row.model, row.explainer): row for row in rows if row.kind == "ours"}
    results = []
    for threshold in gate.thresholds:
        row = ours.get((threshold.model, parse_spec(threshold.explainer).label))
        for criterion, limit in threshold.limits.items():
            field, at_least = CRITERIA[criterion]
            value = math.nan if row is None or row.status != "ok" else getattr(row, field)
            passed = not math.isnan(value) and (value >= limit if at_least else value <= limit)
            ceiling = ""
            if criterion == "min_ratio_to_ceiling" and row is not None and row.ceiling_engine:
                ceiling = f"{row.ceiling_engine} at batch {row.ceiling_batch_size}"
            results.append(
                GateResult(
                    threshold.model, threshold.explainer, criterion, limit, value, passed, ceiling
                )
            )
    return results


def format_gate(results: Sequence[GateResult]) -> str:
    """The gate report: one line per criterion and a verdict line."""
    failed = sum(not result.passed for result in results)
    lines = [result.describe() for result in results]
    lines.append(
        f"speed gate: {failed} failing of {len(results)} criteria"
        + (" (a missing or failed case counts as failing)" if failed else "")
    )
    return "\n".join(lines)
