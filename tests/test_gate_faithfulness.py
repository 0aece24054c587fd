"""The CI faithfulness gate: the committed baseline, its tolerance file, and that the gate fails.

`.ci/run` evaluates the offline default with every metric (``--metrics all``) into a temporary
folder and compares it with `results/reference/synthetic-synthetic_cnn/` through
`python -m sidu_bench compare --tolerance-file results/gates/faithfulness.json`. These tests use
only committed files (no evaluation run): the unchanged baseline stands in for a fresh run, and a
doctored copy of the baseline, better than the truth in one cell, makes that unchanged run look
like a regression.
"""

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from sidu_bench.cli import main
from sidu_bench.compare import gated_metrics, load_tolerance_file
from sidu_bench.metrics import get_statistic, list_metrics
from sidu_bench.runner import RunFolder

ROOT = Path(__file__).resolve().parents[1]
GATE_FILE = ROOT / "results" / "gates" / "faithfulness.json"
VARIATION_FILE = ROOT / "results" / "gates" / "faithfulness-variation.csv"
BASELINE = ROOT / "results" / "reference" / "synthetic-synthetic_cnn"
SANITY_BOUND = 0.01
"""No tolerance may reach this: one pointing-game item of the 48 is worth 1/48 ≈ 0.021, and an
AUC tolerance of 0.01 would already hide the regressions measured in results/README.md."""


@pytest.fixture(scope="module")
def gate():
    return json.loads(GATE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def tolerances():
    return load_tolerance_file(GATE_FILE)


def doctor(tmp_path, explainer, metric, shift):
    """A copy of the baseline's summary with one cell moved by ``shift`` in the good direction."""
    table = pd.read_csv(BASELINE / "summary.csv")
    row = table.index[table["explainer"] == explainer]
    assert len(row) == 1, explainer
    sign = 1.0 if get_statistic(metric).higher_is_better else -1.0
    table.loc[row, metric] = table.loc[row, metric] + sign * shift
    folder = tmp_path / "doctored"
    folder.mkdir()
    shutil.copy(BASELINE / "config.json", folder / "config.json")
    table.to_csv(folder / "summary.csv", index=False)
    return folder


def compare(*extra):
    return main(["compare", str(BASELINE), *map(str, extra)])


def failing_lines(report):
    return [line for line in report.splitlines() if line.endswith(("REGRESSION", "MISSING"))]


def test_committed_baseline_passes_against_itself(capsys):
    assert compare(BASELINE, "--tolerance-file", GATE_FILE) == 0
    report = capsys.readouterr().out
    assert failing_lines(report) == []
    assert "0 failing of 90 compared cells" in report  # 6 explainers x 15 gated statistics


@pytest.mark.parametrize(
    ("explainer", "metric"),
    [("sidu", metric) for metric in gated_metrics()]
    + [("rise", "deletion_auc"), ("center", "region_auc"), ("gradcam", "insertion_auc")],
)
def test_doctored_baseline_fails_naming_the_cell(tmp_path, capsys, tolerances, explainer, metric):
    doctored = doctor(tmp_path, explainer, metric, 2 * tolerances[metric])
    assert compare(doctored, "--tolerance-file", GATE_FILE) == 1
    report = capsys.readouterr().out
    failing = failing_lines(report)
    assert len(failing) == 1, report
    assert failing[0].split()[:2] == [explainer, metric]
    assert failing[0].endswith("REGRESSION")
    assert "1 failing of 90 compared cells" in report


@pytest.mark.parametrize("metric", gated_metrics())
def test_changes_within_tolerance_pass(tmp_path, capsys, tolerances, metric):
    doctored = doctor(tmp_path, "sidu", metric, 0.5 * tolerances[metric])
    assert compare(doctored, "--tolerance-file", GATE_FILE) == 0
    assert failing_lines(capsys.readouterr().out) == []


def test_improvements_never_fail(tmp_path, capsys, tolerances):
    # The baseline worse by a lot is the new run better by a lot: reported, not failed.
    doctored = doctor(tmp_path, "sidu", "insertion_auc", -0.2)
    assert compare(doctored, "--tolerance-file", GATE_FILE) == 0
    assert "IMPROVED" in capsys.readouterr().out


def test_command_line_tolerance_overrides_the_file(tmp_path, capsys, tolerances):
    doctored = doctor(tmp_path, "sidu", "deletion_auc", 2 * tolerances["deletion_auc"])
    assert compare(doctored, "--tolerance-file", GATE_FILE) == 1
    wider = f"deletion_auc={3 * tolerances['deletion_auc']!r}"
    assert compare(doctored, "--tolerance-file", GATE_FILE, "--tolerance", wider) == 0
    capsys.readouterr()


def test_tolerance_file_covers_every_gated_metric_with_sane_values(tolerances):
    assert set(tolerances) == set(gated_metrics())
    for metric, value in tolerances.items():
        assert 0 < value < SANITY_BOUND, (metric, value)


def test_tolerances_follow_the_stated_rule_over_the_measured_variation(gate, tolerances):
    rule = gate["tolerance_rule"]
    variation = pd.read_csv(VARIATION_FILE)
    assert set(variation["metric"]) == set(gated_metrics())
    assert variation["variant"].nunique() >= 10
    assert set(variation["backend"]) == {"auto", "torch"}
    assert set(variation["aten_cpu_capability"]) >= {"DEFAULT", "AVX2", "AVX512"}
    assert set(variation["torch_threads"]) >= {1, 2}
    for metric in gated_metrics():
        rows = variation[variation["metric"] == metric]
        vs_baseline = rows["diff_vs_baseline"].abs().max()
        # The range over the baseline (difference 0) and every variant, per explainer.
        ranges = rows.groupby("explainer")["diff_vs_baseline"].agg(
            lambda d: max(d.max(), 0) - min(d.min(), 0)
        )
        measured = max(vs_baseline, ranges.max())
        recorded = gate["measured_max_abs_diff"][metric]
        assert math.isclose(recorded["value"], measured, rel_tol=1e-9, abs_tol=1e-15), metric
        assert math.isclose(recorded["vs_baseline"], vs_baseline, rel_tol=1e-9, abs_tol=1e-15)
        expected = max(rule["safety_factor"] * measured, rule["floor"])
        # Rounded up to two significant figures.
        assert expected <= tolerances[metric] <= expected * 1.1, metric
        assert tolerances[metric] > measured


def test_gate_file_names_the_baseline_commands_and_ci_agrees(gate):
    assert (ROOT / gate["baseline"] / "summary.csv").is_file()
    # The baseline computed every built-in metric, the opt-in sanity checks included.
    assert RunFolder(ROOT / gate["baseline"]).run_config().metrics == tuple(list_metrics())
    assert gate["commands"]["refresh_baseline"] == (
        "python -m sidu_bench evaluate --device cpu --metrics all --out results/reference --fresh"
    )
    assert gate["commands"]["evaluate"] == (
        'python -m sidu_bench evaluate --device cpu --metrics all --out "$gate_dir" --fresh'
    )
    assert gate["commands"]["compare"].endswith(
        f"{gate['baseline']} --tolerance-file results/gates/faithfulness.json"
    )
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    evaluate, compare_line = (
        ci.index(gate["commands"]["evaluate"]),
        ci.index(gate["commands"]["compare"]),
    )
    assert ci.index("\npytest\n") < evaluate < compare_line


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ('{"insertion_auc": 0.01}', "must be a JSON object with a 'tolerances' object"),
        ('{"tolerances": {"accuracy": 0.01}}', "entry 'accuracy': 0.01: unknown metric"),
        ('{"tolerances": {"deletion_auc": "0.01"}}', "entry 'deletion_auc': '0.01': the toler"),
        ('{"tolerances": {"region_auc": -0.5}}', "entry 'region_auc': -0.5: the tolerance must"),
    ],
)
def test_corrupt_tolerance_file_is_a_clear_error(tmp_path, capsys, content, message):
    path = tmp_path / "gate.json"
    path.write_text(content, encoding="utf-8")
    assert compare(BASELINE, "--tolerance-file", path) == 2
    error = capsys.readouterr().err
    assert f"tolerance file {path}" in error
    assert message in error


def test_missing_tolerance_file_is_a_clear_error(tmp_path, capsys):
    assert compare(BASELINE, "--tolerance-file", tmp_path / "absent.json") == 2
    assert f"tolerance file {tmp_path / 'absent.json'} does not exist" in capsys.readouterr().err
