"""The faithfulness gate: one-sided absolute tolerances in each metric's bad direction."""

import pandas as pd
import pytest

from sidu_bench.compare import compare_runs, load_tolerance_file, parse_tolerances


def write_summary(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / "summary.csv", index=False)
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
    with pytest.raises(FileNotFoundError, match="is not a finished run folder"):
        compare_runs(tmp_path / "nothing", tmp_path / "nothing", {})
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "summary.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="no 'explainer' column"):
        compare_runs(tmp_path / "bad", tmp_path / "bad", {})


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
