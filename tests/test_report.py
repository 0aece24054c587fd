"""``python -m sidu_bench report``: cross tables of finished run folders (nothing recomputed)."""

import hashlib
import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sidu_bench import report as report_module
from sidu_bench.cli import main
from sidu_bench.metrics import list_metrics
from sidu_bench.report import build_report, expand_run_dirs
from sidu_bench.runner import RunFolder
from sidu_bench.runner.folder import record_columns
from sidu_bench.stats import holm
from sidu_bench.tables.statistics import (
    PAIR_COLUMNS,
    compared_statistics,
    rank_groups,
    report_metrics,
    summarise,
)

DEFAULT_METRICS = list_metrics(default_only=True)
"""What the runs of these tests compute (no --metrics)."""
COMPARED_METRICS = [statistic.name for statistic in compared_statistics(DEFAULT_METRICS)]

RUN_NAME = "synthetic-synthetic_cnn"
SMALL = ["--limit", "4", "--steps", "8"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two compatible runs of the same (data set, model) with different explainers."""
    root = tmp_path_factory.mktemp("runs")
    first = ["evaluate", *SMALL, "--explainers", "sidu,center,random", "--out", str(root / "a")]
    assert main(first) == 0
    second = ["evaluate", *SMALL, "--explainers", "gradcam", "--out", str(root / "b")]
    assert main(second) == 0
    return root, root / "a" / RUN_NAME, root / "b" / RUN_NAME


def copy_run(source, target, edit=None):
    shutil.copytree(source, target)
    if edit is not None:
        path = target / "config.json"
        config = json.loads(path.read_text())
        edit(config)
        path.write_text(json.dumps(config))
    return target


def read_report(out):
    return pd.read_csv(out / "report.csv")


def summary_of(run):
    return RunFolder(run).summary()


def test_every_cell_equals_its_runs_summary(runs, tmp_path):
    _, first, second = runs
    renamed = copy_run(first, tmp_path / "renamed", lambda c: c.update(model="other_cnn"))
    written = build_report([first, second, renamed], out=tmp_path / "out")
    assert [p.name for p in written] == [
        "report.csv",
        "report.md",
        "report_pairs.csv",
        "report_agreement.csv",
        "faithfulness_vs_cost.png",
        "agreement.png",
    ]
    table = read_report(tmp_path / "out")
    assert len(table) == (3 + 1 + 3) * len(report_metrics(DEFAULT_METRICS))
    assert set(zip(table["dataset"], table["model"], strict=True)) == {
        ("synthetic", "synthetic_cnn"),
        ("synthetic", "other_cnn"),
    }
    for row in table.itertuples():
        summary = summary_of(row.run_dir).loc[row.explainer]
        if row.metric == "seconds_per_image":
            expected = (summary["seconds_per_image"], np.nan, np.nan, summary["n_images"])
        else:
            expected = tuple(
                summary[f"{row.metric}{suffix}"] for suffix in ("", "_ci_low", "_ci_high", "_n")
            )
        np.testing.assert_equal((row.value, row.ci_low, row.ci_high, row.n), expected)
    assert not table["mixed_protocols"].any()
    assert set(table["sidu_bench_version"]) == {
        json.loads((first / "config.json").read_text())["environment"]["versions"]["sidu-bench"]
    }
    assert table["protocol_id"].nunique() == 1
    assert table.loc[table["metric"] == "seconds_per_image", "rank"].isna().all()
    assert table.loc[table["metric"] == "insertion_auc", "rank"].notna().all()


def test_markdown_shows_cells_versions_and_rankings(runs, tmp_path):
    _, first, second = runs
    build_report([first, second], out=tmp_path)
    text = (tmp_path / "report.md").read_text()
    summary = summary_of(first).loc["sidu"]
    cell = (
        f"{summary['insertion_auc']:.3f} [{summary['insertion_auc_ci_low']:.3f}, "
        f"{summary['insertion_auc_ci_high']:.3f}] (n={int(summary['insertion_auc_n'])})"
    )
    assert cell in text
    assert "| data set | model | sidu | center | random | gradcam |" in text
    assert "- **sidu-bench versions**: " in text
    assert "- `insertion_deletion.steps`: 8" in text
    assert "## Rankings" in text
    assert "| synthetic | synthetic_cnn | insertion_auc | " in text
    assert "WARNING" not in text


def hand_made_run(folder, template, n=20, *, category=None, hit=None):
    """n items: 'good' beats the others by 0.3 insertion AUC; 'same1' and 'same2' agree.

    ``category(i)`` and ``hit(label, i)`` replace the default categories (two) and hits.
    """
    category = category or (lambda i: "a" if i % 2 else "b")
    hit = hit or (lambda label, i: i % 4 != 0)
    rng = np.random.default_rng(3)
    base = rng.uniform(0.2, 0.6, size=n)
    rows = []
    for label, shift in (("same1", 0.0), ("good", 0.3), ("same2", 0.0)):
        for i, value in enumerate(base):
            rows.append(
                {
                    "id": f"item{i:02d}",
                    "category": category(i),
                    "label": 0,
                    "target": 0,
                    "predicted": 0,
                    "predicted_prob": 0.9,
                    "target_prob": 0.9,
                    "explainer": label,
                    "center_miss": i % 3 == 0,
                    "pointing_game_hit": hit(label, i),
                    "pointing_game_valid": True,
                    "energy_pointing_game": 0.5,
                    "region_auc": 0.7,
                    "insertion_auc": value + shift,
                    "deletion_auc": 0.1,
                    "seconds": 0.01,
                    "metric_seconds": 0.02,
                }
            )
    records = pd.DataFrame(rows, columns=list(record_columns()))
    folder.mkdir()
    shutil.copy(template / "config.json", folder / "config.json")
    records.to_csv(folder / "records.csv", index=False)
    summary = summarise(records, ["same1", "good", "same2"], seed=0)
    summary.to_csv(folder / "summary.csv", index=False)
    return folder


def test_ranking_separates_a_clear_winner_and_ties_identical_explainers(runs, tmp_path):
    run = hand_made_run(tmp_path / "hand", runs[1])
    build_report([run], out=tmp_path / "out")
    table = read_report(tmp_path / "out").set_index(["metric", "explainer"])["rank"]
    assert table["insertion_auc"].to_dict() == {"same1": 2, "good": 1, "same2": 2}
    for metric in ("pointing_game", "energy_pointing_game", "region_auc", "deletion_auc"):
        assert table[metric].to_dict() == {"same1": 1, "good": 1, "same2": 1}
    text = (tmp_path / "out" / "report.md").read_text()
    assert "| insertion_auc | 1. good · 2. same1 · 2. same2 |" in text
    assert "synthetic × synthetic_cnn: m = 15" in text
    pairs = pd.read_csv(tmp_path / "out" / "report_pairs.csv")
    verdicts = pairs[pairs["metric"] == "insertion_auc"].set_index(["explainer", "reference"])
    assert verdicts.loc[("good", "same1"), "verdict"] == "better than reference"
    assert verdicts.loc[("same2", "good"), "verdict"] == "worse than reference"
    assert verdicts.loc[("same2", "same1"), "verdict"] == "n too small"  # no item differs
    assert verdicts.loc[("good", "same1"), "diff"] == pytest.approx(0.3)


def test_pointing_game_shows_its_hit_rate_and_marks_singleton_class_means(runs, tmp_path):
    # 24 items: c1..c19 hold one item each, c0 the other five; 'good' hits all, the others half
    run = hand_made_run(
        tmp_path / "hand",
        runs[1],
        n=24,
        category=lambda i: f"c{i}" if i < 20 else "c0",
        hit=lambda label, i: label == "good" or i % 2 == 0,
    )
    build_report([run], out=tmp_path / "out")
    table = read_report(tmp_path / "out").set_index(["metric", "explainer"])
    summary = summary_of(run)
    for label, expected in (("same1", 0.5), ("good", 1.0), ("same2", 0.5)):
        cell = table.loc[("pointing_game_hit_rate", label)]
        assert cell["value"] == pytest.approx(expected)
        np.testing.assert_equal(
            (cell["value"], cell["ci_low"], cell["ci_high"], cell["n"]),
            tuple(
                summary.loc[label, f"pointing_game_hit_rate{suffix}"]
                for suffix in ("", "_ci_low", "_ci_high", "_n")
            ),
        )
    ranks = {"same1": 2, "good": 1, "same2": 2}  # 12 items differ: passes Holm over m = 15
    assert table.loc["pointing_game_hit_rate", "rank"].to_dict() == ranks
    assert table.loc["pointing_game", "rank"].to_dict() == ranks
    text = (tmp_path / "out" / "report.md").read_text()
    assert text.index("### pointing_game_hit_rate (") < text.index("### pointing_game (")
    section = text.split("### pointing_game (")[1].split("###")[0]
    assert section.count(" ‡ |") == 3
    assert "(synthetic × synthetic_cnn: 19 of 20 classes)" in section
    assert "so read pointing_game_hit_rate above" in section
    assert "| pointing_game (on pointing_game_hit_rate) | 1. good · 2. same1 · 2. same2 |" in text
    other = hand_made_run(tmp_path / "two_classes", runs[1])
    build_report([other], out=tmp_path / "plain")
    assert "‡" not in (tmp_path / "plain" / "report.md").read_text()


def test_ranking_needs_the_holm_verdict_not_just_a_small_p(runs, tmp_path):
    # Nine items: 'good' wins on every one (raw p = 2 ** -8 < 0.05, the paired CI excludes 0),
    # but with m = 15 comparisons even the smallest achievable p cannot pass: no rank boundary.
    run = hand_made_run(tmp_path / "hand", runs[1], n=9)
    build_report([run], out=tmp_path / "out")
    table = read_report(tmp_path / "out").set_index(["metric", "explainer"])["rank"]
    assert table["insertion_auc"].to_dict() == {"same1": 1, "good": 1, "same2": 1}
    pairs = pd.read_csv(tmp_path / "out" / "report_pairs.csv").set_index(
        ["metric", "explainer", "reference"]
    )
    row = pairs.loc[("insertion_auc", "good", "same1")]
    assert row["p"] == 2**-8
    assert row["diff_ci_low"] > 0
    assert row["verdict"] == "n too small"


def test_pairs_file_holds_every_pair_with_the_summary_rule(runs, tmp_path):
    _, first, second = runs
    build_report([first, second], out=tmp_path)
    pairs = pd.read_csv(tmp_path / "report_pairs.csv")
    assert tuple(pairs.columns) == ("dataset", "model", *PAIR_COLUMNS)
    labels = ["sidu", "center", "random", "gradcam"]
    expected_pairs = {(a, b) for i, b in enumerate(labels) for a in labels[i + 1 :]}
    assert set(zip(pairs["explainer"], pairs["reference"], strict=True)) == expected_pairs
    assert len(pairs) == len(expected_pairs) * len(COMPARED_METRICS)
    assert set(pairs["metric"]) == set(COMPARED_METRICS)
    np.testing.assert_allclose(pairs["p_holm"], holm(pairs["p"]))
    # n = 4 items, m = 30: even 2 ** (1 - 4) x 30 > 0.05, so nothing can pass
    assert set(pairs["verdict"]) == {"n too small"}
    assert (pairs["n"] == 4).all()
    summary = summary_of(first)
    against_sidu = pairs[pairs["reference"] == "sidu"]
    assert len(against_sidu) == 3 * len(COMPARED_METRICS)
    for row in against_sidu.itertuples():
        if row.explainer == "gradcam":
            continue  # from the other run folder: its summary has no SIDU row
        cells = summary.loc[row.explainer]
        for field in ("diff", "diff_ci_low", "diff_ci_high", "p"):
            np.testing.assert_equal(getattr(row, field), cells[f"{row.metric}_{field}"])


def test_a_protocol_version_1_folder_is_refused_naming_its_version(tmp_path):
    committed = Path(__file__).resolve().parents[1] / "results" / "reference" / RUN_NAME
    older = copy_run(committed, tmp_path / "v1", lambda c: c["protocol"].update(protocol_version=1))
    with pytest.raises(ValueError, match=r"v1/config\.json was written under protocol_version 1"):
        build_report([older], out=tmp_path / "out")
    assert main(["summarise", str(older)]) == 2
    assert main(["plot", str(older)]) == 2


def test_runs_that_differ_only_in_metrics_share_a_table_on_their_common_metrics(tmp_path):
    both = ["--limit", "3", "--steps", "8", "--explainers"]
    shared = ["--metrics", "insertion_deletion,pointing_game"]
    assert (
        main(["evaluate", *SMALL, "--explainers", "center", *shared, "--out", str(tmp_path / "a")])
        == 0
    )
    only = ["--metrics", "pointing_game"]
    assert main(["evaluate", *both, "random", *only, "--out", str(tmp_path / "b")]) == 0
    first, second = tmp_path / "a" / RUN_NAME, tmp_path / "b" / RUN_NAME
    protocols = [
        json.loads((run / "config.json").read_text())["protocol"] for run in (first, second)
    ]
    assert "insertion_deletion" in protocols[0]
    assert "insertion_deletion" not in protocols[1]
    build_report([first, second], out=tmp_path / "out")
    table = read_report(tmp_path / "out").set_index(["metric", "explainer"])
    assert table.loc[("insertion_auc", "center"), "n"] == 4
    assert table.loc[("insertion_auc", "random"), "n"] == 0
    assert table.loc[("pointing_game_hit_rate", "random"), "n"] == 3
    text = (tmp_path / "out" / "report.md").read_text()
    assert "WARNING" not in text
    changed = copy_run(second, tmp_path / "c", set_tolerance_rule)
    with pytest.raises(ValueError, match=r"protocol\.pointing_game\.tolerance_rule"):
        build_report([first, changed], out=tmp_path / "out2")


@pytest.fixture(scope="module")
def with_and_without_emprt(tmp_path_factory):
    """Two cells: synthetic_cnn with pointing_game and eMPRT, "other_cnn" with pointing_game."""
    root = tmp_path_factory.mktemp("emprt")
    common = [*SMALL, "--explainers", "sidu,center"]
    for out, metrics in (("a", "pointing_game,emprt"), ("b", "pointing_game")):
        assert main(["evaluate", *common, "--metrics", metrics, "--out", str(root / out)]) == 0

    def rename_model(config):
        config["model"] = "other_cnn"

    other = copy_run(root / "b" / RUN_NAME, root / "c" / RUN_NAME, rename_model)
    return root / "a" / RUN_NAME, other


def test_a_cell_shows_only_the_metrics_its_runs_computed(with_and_without_emprt, tmp_path):
    """A metric one (data set, model) cell computed is absent, not "undefined", from another."""
    build_report(list(with_and_without_emprt), out=tmp_path / "out")
    assert not (tmp_path / "out" / "faithfulness_vs_cost.png").exists(), "no insertion AUC"
    table = read_report(tmp_path / "out")
    assert set(table[table["model"] == "other_cnn"]["metric"]) == {
        "pointing_game_hit_rate",
        "pointing_game",
        "pointing_game_center_miss",
        "seconds_per_image",
    }
    assert (table[table["model"] == "synthetic_cnn"]["metric"] == "emprt").sum() == 2
    pairs = pd.read_csv(tmp_path / "out" / "report_pairs.csv")
    assert "emprt" not in set(pairs[pairs["model"] == "other_cnn"]["metric"])
    agreement = pd.read_csv(tmp_path / "out" / "report_agreement.csv")
    sanity = agreement[agreement["statistic"] == "sanity"]
    assert set(sanity["model"]) == {"synthetic_cnn"}
    text = (tmp_path / "out" / "report.md").read_text()
    other_section = text[text.index("### synthetic × other_cnn") :]
    assert "emprt" not in other_section
    assert "| synthetic | other_cnn | emprt |" not in text


def test_runs_with_more_metrics_share_each_common_metrics_protocol_id(
    with_and_without_emprt, tmp_path
):
    """The run ids differ (one run also computed eMPRT); each shared statistic has one id."""
    first, _ = with_and_without_emprt
    build_report(list(with_and_without_emprt), out=tmp_path / "out", latex=True)
    table = read_report(tmp_path / "out")
    assert table["protocol_id"].nunique() == 2
    hits = table[table["metric"] == "pointing_game_hit_rate"]
    assert hits["metric_protocol_id"].nunique() == 1
    protocol = json.loads((first / "config.json").read_text())["protocol"]
    scoped = {key: value for key, value in protocol.items() if key != "emprt"}
    canonical = json.dumps(scoped, sort_keys=True, default=str).encode("utf-8")
    assert hits["metric_protocol_id"].iloc[0] == hashlib.sha256(canonical).hexdigest()[:12]
    emprt = table[table["metric"] == "emprt"]["metric_protocol_id"].unique()
    assert len(emprt) == 1
    assert emprt[0] != hits["metric_protocol_id"].iloc[0]
    latex = (tmp_path / "out" / "report.tex").read_text()
    assert f"Protocol id: {hits['metric_protocol_id'].iloc[0]}." in latex
    assert "Protocol ids:" not in latex
    header = (tmp_path / "out" / "report.md").read_text().splitlines()[4]
    assert f"{hits['metric_protocol_id'].iloc[0]} (pointing_game_hit_rate, pointing_game" in header


def set_tolerance_rule(config):
    config["protocol"]["pointing_game"]["tolerance_rule"] = "another rule"


def test_rank_groups_only_ranks_above_when_significantly_better():
    assert rank_groups(["a", "b", "c"], {("a", "b"), ("a", "c")}) == {"a": 1, "b": 2, "c": 2}
    # a beats c but not b, and b does not beat c: no boundary can be drawn
    assert rank_groups(["a", "b", "c"], {("a", "c")}) == {"a": 1, "b": 1, "c": 1}
    assert rank_groups(["a", "b", "c"], {("a", "c"), ("b", "c")}) == {"a": 1, "b": 1, "c": 3}


def set_steps(config):
    config["protocol"]["insertion_deletion"]["steps"] = 16


def test_incompatible_protocols_are_refused(runs, tmp_path):
    _, first, _ = runs
    other = copy_run(first, tmp_path / "other", set_steps)
    with pytest.raises(ValueError, match="different protocols") as error:
        build_report([first, other], out=tmp_path / "out")
    message = str(error.value)
    assert f"{other} differs from {first} in protocol.insertion_deletion.steps" in message
    assert error.value.spelled(lambda name: "--" + name.replace("_", "-")).endswith(
        "(--allow-mixed-protocols lets them through, marked as mixed)"
    )
    assert not list((tmp_path / "out").iterdir()), "nothing is written"


def test_mixed_protocols_are_accepted_with_the_flag_and_marked(runs, tmp_path, caplog):
    _, first, _ = runs
    other = copy_run(first, tmp_path / "other", set_steps)
    other_config = json.loads((other / "config.json").read_text())
    other_config["model"] = "other_cnn"
    (other / "config.json").write_text(json.dumps(other_config))
    with caplog.at_level(logging.WARNING, logger="sidu_bench.report"):
        build_report([first, other], out=tmp_path / "out", allow_mixed_protocols=True)
    assert "insertion_deletion.steps" in caplog.text
    table = read_report(tmp_path / "out")
    assert table["mixed_protocols"].all()
    assert table["protocol_id"].nunique() == 2
    text = (tmp_path / "out" / "report.md").read_text()
    assert "> **WARNING: mixed protocols**" in text
    assert f"> - {other} differs from {first} in protocol.insertion_deletion.steps" in text


def test_same_explainer_from_two_folders_is_refused(runs, tmp_path):
    _, first, _ = runs
    twin = copy_run(first, tmp_path / "twin")
    with pytest.raises(ValueError, match=f"'sidu' .* two run folders: {first} and {twin}"):
        build_report([first, twin], out=tmp_path / "out")


def break_config(folder):
    (folder / "config.json").write_text("{not json")


def break_records(folder):
    (folder / "records.csv").write_text("")


@pytest.mark.parametrize(
    ("damage", "error", "message"),
    [
        (lambda f: shutil.rmtree(f), FileNotFoundError, "run folder {run} does not exist"),
        (lambda f: (f / "config.json").unlink(), FileNotFoundError, "{run} is not a run folder"),
        (break_config, ValueError, "corrupt {run}/config.json"),
        (lambda f: (f / "summary.csv").unlink(), FileNotFoundError, "{run} is not a finished"),
        (lambda f: (f / "records.csv").unlink(), FileNotFoundError, "it has no records.csv"),
        (break_records, ValueError, "corrupt {run}/records.csv"),
    ],
)
def test_missing_or_corrupt_run_folder_is_named(runs, tmp_path, damage, error, message):
    _, first, _ = runs
    run = copy_run(first, tmp_path / "damaged")
    damage(run)
    with pytest.raises(error) as raised:
        build_report([first, run], out=tmp_path / "out")
    assert message.format(run=run) in str(raised.value)


def test_cli_writes_files_and_expands_globs(runs, tmp_path, capsys):
    root, first, second = runs
    out = tmp_path / "out"
    assert main(["report", str(root / "*" / "synthetic-*"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    names = (
        "report.csv",
        "report.md",
        "report_pairs.csv",
        "report_agreement.csv",
        "faithfulness_vs_cost.png",
        "agreement.png",
    )
    assert printed == [str(out / name) for name in names]
    assert (out / "faithfulness_vs_cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(read_report(out)["run_dir"]) == {str(first), str(second)}


def test_cli_errors_exit_2_naming_the_folder(runs, tmp_path, capsys):
    _, first, _ = runs
    other = copy_run(first, tmp_path / "other", set_steps)
    assert main(["report", str(first), str(other), "--out", str(tmp_path / "out")]) == 2
    assert "insertion_deletion.steps" in capsys.readouterr().err
    missing = tmp_path / "missing"
    assert main(["report", str(missing), "--out", str(tmp_path / "out")]) == 2
    assert f"run folder {missing} does not exist" in capsys.readouterr().err
    assert (
        main(
            [
                "report",
                str(other),
                str(first),
                "--allow-mixed-protocols",
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 2
    )  # same explainers, same row: refused
    assert "two run folders" in capsys.readouterr().err


def test_glob_matching_nothing_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run folder matches"):
        expand_run_dirs([str(tmp_path / "nothing-*")])
    assert expand_run_dirs(["plain", "plain"]) == [tmp_path.__class__("plain")]


def test_figure_is_skipped_with_a_warning_without_matplotlib(runs, tmp_path, monkeypatch, caplog):
    _, first, _ = runs
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with caplog.at_level(logging.WARNING):
        written = build_report([first], out=tmp_path)
    assert [p.name for p in written] == [
        "report.csv",
        "report.md",
        "report_pairs.csv",
        "report_agreement.csv",
    ]
    assert "matplotlib is not installed" in caplog.text
    assert not (tmp_path / "faithfulness_vs_cost.png").exists()
    assert not (tmp_path / "agreement.png").exists()


def test_figure_legends_name_each_explainer_and_model_once_beside_the_plots(
    runs, tmp_path, monkeypatch
):
    pytest.importorskip("matplotlib")
    _, first, second = runs
    renamed = copy_run(first, tmp_path / "renamed", lambda c: c.update(model="other_cnn"))
    saved = {}

    def keep(figure):
        if figure.texts and "agreement" in figure.texts[0].get_text():
            return b""  # the agreement figure, drawn after this one
        saved["legends"] = [
            [text.get_text() for text in legend.get_texts()] for legend in figure.legends
        ]
        saved["axis_legends"] = [axis.get_legend() for axis in figure.axes]
        saved["points"] = sum(len(axis.collections) for axis in figure.axes)
        return b""

    monkeypatch.setattr(report_module, "png_bytes", keep)
    build_report([first, second, renamed], out=tmp_path / "out")
    assert saved["legends"] == [
        ["sidu", "center", "random", "gradcam"],
        ["synthetic_cnn", "other_cnn"],
    ]
    assert saved["axis_legends"] == [None]
    assert saved["points"] == 4 + 3  # one point per (model, explainer) cell
