"""Summarise a run's records: per-explainer means with CIs, and paired comparisons with SIDU."""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np
import pandas as pd

from sidu_bench.stats import Estimate, bootstrap_class_mean, bootstrap_mean, paired_difference

SUMMARY_METRICS = (
    "pointing_game",
    "pointing_game_hit_rate",
    "pointing_game_center_miss",
    "energy_pointing_game",
    "region_auc",
    "insertion_auc",
    "deletion_auc",
)
"""Metric columns of ``summary.csv``, each with ``_ci_low``, ``_ci_high`` and ``_n``."""

RECORD_COLUMNS = (
    "id",
    "category",
    "label",
    "target",
    "predicted",
    "predicted_prob",
    "target_prob",
    "explainer",
    "center_miss",
    "pointing_game_hit",
    "pointing_game_valid",
    "energy_pointing_game",
    "region_auc",
    "insertion_auc",
    "deletion_auc",
    "seconds",
    "metric_seconds",
)
"""Columns of ``records.csv``, one row per (item, explainer)."""


def metric_seed(seed: int, metric: str) -> int:
    """The bootstrap seed of one metric: stable across runs, processes and platforms."""
    return (seed * 1_000_003 + zlib.crc32(metric.encode("utf-8"))) % 2**32


def _scored(records: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The rows that score ``metric`` (pointing game: valid items; subset for center-miss)."""
    if metric.startswith("pointing_game"):
        rows = records[records["pointing_game_valid"].astype(bool)]
        if metric == "pointing_game_center_miss":
            rows = rows[rows["center_miss"].astype(bool)]
        return rows
    return records[records[metric].notna()]


def _values(rows: pd.DataFrame, metric: str) -> np.ndarray:
    column = "pointing_game_hit" if metric.startswith("pointing_game") else metric
    return rows[column].astype(float).to_numpy()


def estimate(records: pd.DataFrame, metric: str, *, seed: int) -> Estimate:
    """The summary estimate of ``metric`` over one explainer's records."""
    rows = _scored(records, metric)
    values = _values(rows, metric)
    if metric in ("pointing_game", "pointing_game_center_miss"):
        return bootstrap_class_mean(
            values, rows["category"].astype(str).tolist(), seed=metric_seed(seed, metric)
        )
    return bootstrap_mean(values, seed=metric_seed(seed, metric))


def summarise(records: pd.DataFrame, explainers: list[str], *, seed: int) -> pd.DataFrame:
    """One row per explainer: ``n_images``, each metric with CI and n, and the time per image."""
    rows = []
    for label in explainers:
        part = records[records["explainer"] == label]
        row: dict[str, object] = {"explainer": label, "n_images": len(part)}
        for metric in SUMMARY_METRICS:
            result = estimate(part, metric, seed=seed)
            row[metric] = result.mean
            row[f"{metric}_ci_low"] = result.low
            row[f"{metric}_ci_high"] = result.high
            row[f"{metric}_n"] = result.n
        row["seconds_per_image"] = float(part["seconds"].mean()) if len(part) else float("nan")
        row["metric_seconds_per_image"] = (
            float(part["metric_seconds"].mean()) if len(part) else float("nan")
        )
        rows.append(row)
    return pd.DataFrame(rows)


def paired_comparisons(
    records: pd.DataFrame, reference: str, explainers: list[str], *, seed: int
) -> pd.DataFrame:
    """Per-item differences ``explainer - reference`` with paired bootstrap CIs.

    Pointing-game differences use the items both explainers score (hits as 0/1), so the
    comparison is on the same images.
    """
    base = records[records["explainer"] == reference].set_index("id")
    rows = []
    for label in explainers:
        if label == reference:
            continue
        other = records[records["explainer"] == label].set_index("id")
        for metric in SUMMARY_METRICS:
            if metric in ("pointing_game", "pointing_game_center_miss"):
                continue
            joined = _paired_values(base, other, metric)
            result = paired_difference(
                joined["other"], joined["base"], seed=metric_seed(seed, metric)
            )
            rows.append(
                {
                    "explainer": label,
                    "metric": metric,
                    "difference": result.mean,
                    "ci_low": result.low,
                    "ci_high": result.high,
                    "n": result.n,
                    "verdict": _verdict(result, metric),
                }
            )
    return pd.DataFrame(rows)


def _paired_values(base: pd.DataFrame, other: pd.DataFrame, metric: str) -> pd.DataFrame:
    scored_base = _scored(base.reset_index(), metric).set_index("id")
    scored_other = _scored(other.reset_index(), metric).set_index("id")
    shared = scored_base.index.intersection(scored_other.index)
    return pd.DataFrame(
        {
            "base": _values(scored_base.loc[shared], metric),
            "other": _values(scored_other.loc[shared], metric),
        }
    )


def _verdict(result: Estimate, metric: str) -> str:
    if result.n == 0:
        return "n/a"
    if result.is_tie:
        return "tie"
    better = result.mean < 0 if metric == "deletion_auc" else result.mean > 0
    return "better than reference" if better else "worse than reference"


def format_cell(value: float, low: float, high: float, n: int, fmt: Callable[[float], str]) -> str:
    """Format ``value [low, high] (n=N)``; a dash when nothing was scored, no CI when undefined."""
    if n == 0 or np.isnan(value):
        return "–"
    if np.isnan(low):
        return f"{fmt(value)} (n={n})"
    return f"{fmt(value)} [{fmt(low)}, {fmt(high)}] (n={n})"


def summary_markdown(
    summary: pd.DataFrame, comparisons: pd.DataFrame | None, header: dict[str, object]
) -> str:
    """The Markdown summary: run header, the metric table with 95 % CIs, paired comparisons."""
    lines = [f"# {header.get('dataset')} × {header.get('model')}", ""]
    lines += [f"- **{key}**: {value}" for key, value in header.items()]
    lines += ["", "Mean [95 % bootstrap CI] (n scored). Higher is better except deletion AUC.", ""]
    names = ["explainer", *SUMMARY_METRICS, "s/image"]
    lines.append("| " + " | ".join(names) + " |")
    lines.append("|" + "---|" * len(names))
    for _, row in summary.iterrows():
        cells = [str(row["explainer"])]
        for metric in SUMMARY_METRICS:
            cells.append(
                format_cell(
                    row[metric],
                    row[f"{metric}_ci_low"],
                    row[f"{metric}_ci_high"],
                    int(row[f"{metric}_n"]),
                    lambda v: f"{v:.3f}",
                )
            )
        cells.append(f"{row['seconds_per_image']:.3g}")
        lines.append("| " + " | ".join(cells) + " |")
    if comparisons is not None and len(comparisons):
        lines += [
            "",
            "## Paired comparison with the reference explainer",
            "",
            "Mean per-item difference (explainer − reference) with its paired bootstrap 95 % CI; "
            "a CI containing 0 is a tie.",
            "",
            "| explainer | metric | difference [95 % CI] | n | verdict |",
            "|---|---|---|---|---|",
        ]
        for _, row in comparisons.iterrows():
            cell = format_cell(
                row["difference"], row["ci_low"], row["ci_high"], 1, lambda v: f"{v:+.3f}"
            )
            cell = cell.replace(" (n=1)", "")
            lines.append(
                f"| {row['explainer']} | {row['metric']} | {cell} | {row['n']} | {row['verdict']} |"
            )
    return "\n".join(lines) + "\n"
