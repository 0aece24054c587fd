"""The CI speed gate: ratios measured in one run against committed thresholds.

A gate file (JSON, e.g. ``results/gates/speed.json``) names the device, the cases and, per
(model, explainer), the thresholds; only ratios of numbers measured in the same run are gated,
so a slow or busy machine moves both sides together:

- ``min_ratio_to_ceiling``: our forwarded images/s over the model's plain forward ceiling;
- ``min_speedup_over_peer``: the peer's seconds per image over ours;
- ``max_memory_ratio_to_peer``: our peak memory over the peer's.

A case that is missing, failed, or has a NaN where a threshold applies fails the gate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sidu_bench.bench.table import BenchRow
from sidu_bench.explainers import parse_spec
from sidu_bench.runner.storage import read_json

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
}
"""Threshold key: (row field, whether the value must be at least the threshold)."""


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

    @property
    def models(self) -> tuple[str, ...]:
        """The gated models, in file order."""
        return tuple(dict.fromkeys(t.model for t in self.thresholds))

    @property
    def explainers(self) -> tuple[str, ...]:
        """The gated explainer specs, in file order."""
        return tuple(dict.fromkeys(t.explainer for t in self.thresholds))


@dataclass(frozen=True)
class GateResult:
    """One checked criterion."""

    model: str
    explainer: str
    criterion: str
    threshold: float
    value: float
    passed: bool

    def describe(self) -> str:
        """One line: the case, the criterion, the value against the threshold and the verdict."""
        relation = ">=" if CRITERIA.get(self.criterion, ("", True))[1] else "<="
        verdict = "ok" if self.passed else "FAIL"
        return (
            f"{verdict:<4} {self.model} / {self.explainer}: {self.criterion} "
            f"{self.value:.3g} (needs {relation} {self.threshold:g})"
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
    device = content.get("device", "cpu")
    dtype = content.get("dtype", "float32")
    if not isinstance(device, str) or not isinstance(dtype, str):
        raise ValueError(f"gate file {path}: 'device' and 'dtype' must be strings")
    return GateFile(path, device, dtype, tuple(thresholds))


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
            results.append(
                GateResult(threshold.model, threshold.explainer, criterion, limit, value, passed)
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
