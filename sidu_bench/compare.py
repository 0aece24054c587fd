"""Compare a fresh run's summary with a baseline run: the CI gate on faithfulness.

Every ``summary.csv`` statistic of the registered metrics is gated
(:func:`sidu_bench.metrics.summary_statistics`). Tolerances are absolute and one-sided, in each
statistic's bad direction: where higher is better it regresses when
``new < baseline - tolerance``; where lower is better (deletion AUC) when
``new > baseline + tolerance``. An explainer of the baseline missing from the new run, or a
metric that was scored before and is not now, is a failure. The tolerances come from
``--tolerance METRIC=VALUE`` (:func:`parse_tolerances`) or a JSON tolerance file
(:func:`load_tolerance_file`; the CI gate's is ``results/gates/faithfulness.json``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sidu_bench.io import read_json
from sidu_bench.metrics import summary_statistics
from sidu_bench.runner.config import check_protocols
from sidu_bench.runner.folder import RunFolder

DEFAULT_TOLERANCE = 1e-6
"""Repeatability of AUCs across batching (docs/protocol.md, item 12)."""
TOLERANCES_KEY = "tolerances"
"""The key of a tolerance file's ``{metric: value}`` object (see ``results/gates/``)."""


@dataclass(frozen=True)
class Comparison:
    """One (explainer, metric) cell of the comparison."""

    explainer: str
    metric: str
    baseline: float
    new: float
    tolerance: float
    status: str

    @property
    def failed(self) -> bool:
        """Whether this cell fails the gate."""
        return self.status in ("regression", "missing")


def gated_metrics() -> list[str]:
    """The statistics a tolerance may name: those of every registered metric, in table order.

    A run is compared on the statistics both summaries hold (the metrics both computed); a
    statistic of the baseline missing from the new run is a failure.
    """
    return [statistic.name for statistic in summary_statistics()]


def parse_tolerances(text: str | None) -> dict[str, float]:
    """Parse ``METRIC=VALUE[,METRIC=VALUE]`` into a dict, checking names and values."""
    tolerances: dict[str, float] = {}
    for part in text.split(",") if text else ():
        name, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"--tolerance entry {part!r} must be METRIC=VALUE")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(
                f"--tolerance entry {part!r}: the tolerance must be a number"
            ) from None
        name = name.strip()
        tolerances[name] = _checked(name, number, f"--tolerance entry {part!r}")
    return tolerances


def load_tolerance_file(path: Path) -> dict[str, float]:
    """Read the absolute tolerances of a JSON tolerance file.

    The file is a JSON object whose ``"tolerances"`` entry maps gated metric names
    (:func:`gated_metrics`) to non-negative finite numbers; other top-level entries (how the
    tolerances were measured, the commands) are ignored. Metrics it leaves out keep
    :data:`DEFAULT_TOLERANCE`.

    Args:
        path: The JSON file, e.g. ``results/gates/faithfulness.json``.

    Returns:
        ``{metric: tolerance}`` for every metric the file names.

    Raises:
        FileNotFoundError: If ``path`` is not a file.
        ValueError: If the file is not valid JSON, has no ``"tolerances"`` object, or has an entry
            with an unknown metric or a value that is not a finite number >= 0; the message names
            the file and the entry.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = Path(folder) / "gate.json"
        ...     _ = path.write_text('{"tolerances": {"insertion_auc": 0.001}}')
        ...     load_tolerance_file(path)
        {'insertion_auc': 0.001}
    """
    path = Path(path)
    content = read_json(path, "tolerance file")
    if not isinstance(content, dict) or not isinstance(content.get(TOLERANCES_KEY), dict):
        raise ValueError(
            f"tolerance file {path} must be a JSON object with a {TOLERANCES_KEY!r} object "
            "mapping metric names to numbers"
        )
    return {
        name: _checked(name, value, f"tolerance file {path}: entry {name!r}: {value!r}")
        for name, value in content[TOLERANCES_KEY].items()
    }


def _checked(name: str, value: object, entry: str) -> float:
    """``value`` as the tolerance of gated metric ``name``; errors start with ``entry``."""
    names = gated_metrics()
    if name not in names:
        raise ValueError(f"{entry}: unknown metric, expected one of {', '.join(names)}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{entry}: the tolerance must be a number")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{entry}: the tolerance must be finite and >= 0")
    return float(value)


def compare_summaries(
    new: pd.DataFrame, baseline: pd.DataFrame, tolerances: dict[str, float]
) -> list[Comparison]:
    """Compare every (explainer, metric) of the baseline with the new run."""
    cells = []
    for explainer in baseline.index:
        for statistic in summary_statistics():
            metric, higher = statistic.name, statistic.higher_is_better
            if metric not in baseline.columns:
                continue
            old = float(baseline.at[explainer, metric])
            tolerance = tolerances.get(metric, DEFAULT_TOLERANCE)
            if explainer not in new.index or metric not in new.columns:
                cells.append(Comparison(explainer, metric, old, math.nan, tolerance, "missing"))
                continue
            value = float(new.at[explainer, metric])
            cells.append(
                Comparison(
                    explainer, metric, old, value, tolerance, _status(old, value, tolerance, higher)
                )
            )
    return cells


def _status(old: float, new: float, tolerance: float, higher: bool) -> str:
    if math.isnan(old):
        return "ok"
    if math.isnan(new):
        return "missing"
    change = new - old if higher else old - new
    if change < -tolerance:
        return "regression"
    if change > tolerance:
        return "improved"
    return "ok"


def format_comparison(cells: list[Comparison]) -> str:
    """A readable table of the comparison, regressions first."""
    order = {"missing": 0, "regression": 1, "improved": 2, "ok": 3}
    lines = [
        f"{'explainer':<28} {'metric':<26} {'baseline':>10} {'new':>10} {'change':>10} "
        f"{'tolerance':>10}  status"
    ]
    for cell in sorted(cells, key=lambda c: (order[c.status], c.explainer, c.metric)):
        change = cell.new - cell.baseline
        lines.append(
            f"{cell.explainer:<28} {cell.metric:<26} {cell.baseline:>10.4f} {cell.new:>10.4f} "
            f"{change:>+10.3g} {cell.tolerance:>10.2g}  {cell.status.upper()}"
        )
    failed = sum(cell.failed for cell in cells)
    lines.append(
        f"{failed} failing of {len(cells)} compared cells"
        + (" (regression beyond tolerance or missing)" if failed else "")
    )
    return "\n".join(lines)


def compare_runs(
    new_run: Path,
    baseline_run: Path,
    tolerances: dict[str, float],
    *,
    allow_mixed_protocols: bool = False,
) -> tuple[bool, str]:
    """Compare two run folders; return ``(passed, report)``.

    The runs must share the data set, the model and the protocol (the run-wide fields and the
    entries of the metrics both computed), as runs that share a report table do.

    Raises:
        ParameterError: they differ (the fields named), unless ``allow_mixed_protocols``; then
            the report starts with a warning naming them.
    """
    new, baseline = RunFolder(new_run), RunFolder(baseline_run)
    mismatches = check_protocols(
        [(baseline, baseline.config()), (new, new.config())],
        allow_mixed=allow_mixed_protocols,
        purpose="be compared",
        also=("dataset", "model"),
    )
    cells = compare_summaries(new.summary(), baseline.summary(), tolerances)
    warning = [f"WARNING: mixed protocols: {line}" for line in mismatches]
    return not any(cell.failed for cell in cells), "\n".join([*warning, format_comparison(cells)])
