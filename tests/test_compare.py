"""The faithfulness gate: one-sided absolute tolerances in each metric's bad direction."""

import json
from pathlib import Path

import pandas as pd
import pytest

from sidu_bench.cli import main
from sidu_bench.compare import compare_runs, load_tolerance_file, parse_tolerances

COMMITTED = (
    Path(__file__).resolve().parents[1] / "results" / "reference" / "synthetic-synthetic_cnn"
)


def write_summary(folder, rows, **config_changes):
    """A run folder holding ``rows`` as its summary and the committed run's configuration."""
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / "summary.csv", index=False)
    config = json.loads((COMMITTED / "config.json").read_text())
    for key, value in config_changes.items():
        target = config["protocol"] if key in config["protocol"] else config
        target[key] = value
    (folder / "config.json").write_text(json.dumps(config))
    return folder


BASE = [
    {"explainer": "sidu", "insertion_auc": 0.60, "deletion_auc": 0.20, "pointing_game": 0.9},
    {"explainer": "center", "insertion_auc": 0.50, "deletion_auc": 0.30, "pointing_game": 0.95},
]


def test_identical_runs_pass(tmp_path):
    base = write_summary(tmp_path / "base", BASE)
    passed, report = compare_runs(base, base, {})
    assert passed
    assert "0 failing of 6 compared cells" in report


@pytest.mark.parametrize(
    ("metric", "value", "tolerance", "passed"),
    [
        ("insertion_auc", 0.58, 0.01, False),  # lower insertion is worse
        ("insertion_auc", 0.595, 0.01, True),
        ("insertion_auc", 0.70, 0.0, True),  # better never fails
        ("deletion_auc", 0.22, 0.01, False),  # higher deletion is worse
        ("deletion_auc", 0.10, 0.0, True),
        ("pointing_game", 0.85, 0.04, False),
    ],
)
def test_one_sided_tolerances(tmp_path, metric, value, tolerance, passed):
    base = write_summary(tmp_path / "base", BASE)
    rows = [dict(row) for row in BASE]
    rows[0][metric] = value
    new = write_summary(tmp_path / "new", rows)
    ok, report = compare_runs(new, base, {metric: tolerance})
    assert ok is passed
    if not passed:
        assert f"sidu                         {metric}" in report
        assert "REGRESSION" in report


def test_missing_explainer_fails(tmp_path):
    base = write_summary(tmp_path / "base", BASE)
    new = write_summary(tmp_path / "new", BASE[:1])
    ok, report = compare_runs(new, base, {})
    assert not ok
    assert report.splitlines()[1].startswith("center")
    assert "MISSING" in report


def test_bad_tolerances_and_folders(tmp_path):
    assert parse_tolerances("insertion_auc=0.01,deletion_auc=0.02") == {
        "insertion_auc": 0.01,
        "deletion_auc": 0.02,
    }
    with pytest.raises(ValueError, match=r"'accuracy=0\.1': unknown metric, expected one of"):
        parse_tolerances("accuracy=0.1")
    with pytest.raises(ValueError, match="entry 'insertion_auc' must be METRIC=VALUE"):
        parse_tolerances("insertion_auc")
    with pytest.raises(ValueError, match="must be a number"):
        parse_tolerances("insertion_auc=abc")
    with pytest.raises(ValueError, match="must be finite and >= 0"):
        parse_tolerances("insertion_auc=-1")
    with pytest.raises(ValueError, match="must be finite and >= 0"):
        parse_tolerances("insertion_auc=inf")
    with pytest.raises(FileNotFoundError, match="nothing does not exist"):
        compare_runs(tmp_path / "nothing", tmp_path / "nothing", {})
    bad = write_summary(tmp_path / "bad", BASE)
    (bad / "summary.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="no 'explainer' column"):
        compare_runs(bad, bad, {})


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"dataset": "folder"}, "dataset"),
        ({"model": "efficientnet_lite0"}, "model"),
        ({"target": "label"}, "protocol.target"),
    ],
)
def test_runs_of_another_data_set_model_or_protocol_are_not_compared(tmp_path, change, field):
    base = write_summary(tmp_path / "base", BASE)
    new = write_summary(tmp_path / "new", BASE, **change)
    with pytest.raises(ValueError, match="runs with different protocols cannot be compared") as err:
        compare_runs(new, base, {})
    assert f"{new} differs from {base} in {field}" in str(err.value)
    passed, report = compare_runs(new, base, {}, allow_mixed_protocols=True)
    assert passed
    assert report.startswith(f"WARNING: mixed protocols: {new} differs from {base} in {field}")


def test_the_cli_names_the_protocol_difference_and_exits_2(tmp_path, capsys):
    base = write_summary(tmp_path / "base", BASE)
    steps = {
        "insertion_deletion": {
            **json.loads((COMMITTED / "config.json").read_text())["protocol"]["insertion_deletion"],
            "steps": 16,
        }
    }
    new = write_summary(tmp_path / "new", BASE, **steps)
    assert main(["compare", str(new), str(base)]) == 2
    error = capsys.readouterr().err
    assert "protocol.insertion_deletion.steps" in error
    assert "--allow-mixed-protocols lets them through" in error
    assert main(["compare", str(new), str(base), "--allow-mixed-protocols"]) == 0
    assert "WARNING: mixed protocols" in capsys.readouterr().out


def test_tolerance_file(tmp_path):
    path = tmp_path / "gate.json"
    path.write_text('{"date": "x", "tolerances": {"insertion_auc": 0.01, "deletion_auc": 0}}')
    assert load_tolerance_file(path) == {"insertion_auc": 0.01, "deletion_auc": 0.0}
    for content, message in [
        ("[1, 2]", "must be a JSON object with a 'tolerances' object"),
        ('{"tolerances": [0.1]}', "must be a JSON object with a 'tolerances' object"),
        (
            '{"tolerances": {"insertion_auc": true}}',
            "'insertion_auc': True: the tolerance must be a",
        ),
        (
            '{"tolerances": {"insertion_auc": NaN}}',
            "'insertion_auc': nan: the tolerance must be fin",
        ),
        ('{"tolerances": {"insertion_auc": Infinity}}', "the tolerance must be finite and >= 0"),
        ('{"tolerances": {"accuracy": 1}}', "'accuracy': 1: unknown metric, expected one of"),
        ("\xff", "is not valid JSON"),
    ]:
        path.write_text(content, encoding="latin-1")
        with pytest.raises(ValueError, match=r"tolerance file .*gate\.json") as error:
            load_tolerance_file(path)
        assert message in str(error.value), content
    with pytest.raises(FileNotFoundError, match=r"tolerance file .* does not exist"):
        load_tolerance_file(tmp_path / "absent.json")
