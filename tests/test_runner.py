"""End-to-end runs of ``python -m sidu_bench evaluate`` on the synthetic set (small settings)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sidu_bench.cli import main
from sidu_bench.metrics import list_metrics, summary_statistics
from sidu_bench.runner import config as config_module
from sidu_bench.runner import run as run_module
from sidu_bench.runner.folder import RunFolder, record_columns

EXPLAINERS = "sidu,gradcam,rise:masks=64,center,random"
LABELS = ["sidu", "gradcam", "rise:masks=64", "center", "random"]
SMALL = ["--limit", "6", "--steps", "16", "--explainers", EXPLAINERS]
RUN_NAME = "synthetic-synthetic_cnn"


def evaluate(out, *extra):
    return main(["evaluate", *SMALL, "--out", str(out), *extra])


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert evaluate(out) == 0
    return out / RUN_NAME


def read_records(run_dir):
    return pd.read_csv(run_dir / "records.csv", dtype={"id": str})


def test_run_writes_records_summary_config_and_figures(finished_run):
    records = read_records(finished_run)
    assert list(records.columns) == list(record_columns(list_metrics(default_only=True)))
    assert len(records) == 6 * len(LABELS)
    assert sorted(records["explainer"].unique()) == sorted(LABELS)
    assert records["insertion_auc"].between(0, 1).all()
    assert records["pointing_game_valid"].all()
    summary = pd.read_csv(finished_run / "summary.csv")
    assert summary["explainer"].tolist() == LABELS
    for metric in (s.name for s in summary_statistics(list_metrics(default_only=True))):
        for suffix in ("", "_ci_low", "_ci_high", "_n"):
            assert f"{metric}{suffix}" in summary.columns
    config = json.loads((finished_run / "config.json").read_text())
    assert config["protocol"]["protocol_version"] == 4
    assert config["protocol"]["precision"] == "ieee"
    assert "statistics" not in config["protocol"]
    assert config["environment"]["backend"]["name"] in ("torch", "onnxruntime")
    assert config["protocol"]["insertion_deletion"]["steps"] == 16
    assert config["explainers"] == LABELS
    assert (finished_run / "figures" / "curves.png").stat().st_size > 1000
    assert (finished_run / "figures" / "overlays.png").stat().st_size > 1000
    markdown = (finished_run / "summary.md").read_text()
    assert "Paired comparison with the reference explainer" in markdown
    assert "| rise:masks=64 | insertion_auc |" in markdown


def test_summary_cells_equal_the_records(finished_run):
    records = read_records(finished_run)
    summary = pd.read_csv(finished_run / "summary.csv").set_index("explainer")
    for label in LABELS:
        mine = records[records["explainer"] == label]
        assert summary.at[label, "insertion_auc"] == pytest.approx(
            mine["insertion_auc"].mean(), abs=1e-12
        )
        assert summary.at[label, "deletion_auc"] == pytest.approx(
            mine["deletion_auc"].mean(), abs=1e-12
        )
        assert summary.at[label, "pointing_game_hit_rate"] == pytest.approx(
            mine["pointing_game_hit"].mean()
        )
        per_class = mine.groupby("category")["pointing_game_hit"].mean().mean()
        assert summary.at[label, "pointing_game"] == pytest.approx(per_class)
        assert summary.at[label, "n_images"] == 6
        assert summary.at[label, "insertion_auc_ci_low"] <= summary.at[label, "insertion_auc"]
        assert summary.at[label, "insertion_auc"] <= summary.at[label, "insertion_auc_ci_high"]


def test_item_arrays_hold_maps_and_curves(finished_run):
    files = sorted((finished_run / "items").glob("*.npz"))
    assert len(files) == 6
    with np.load(files[0]) as archive:
        assert archive["map@sidu"].dtype == np.float16
        assert archive["insertion@sidu"].shape == (17,)
        assert archive["deletion@gradcam"].shape == (17,)


def interrupt_at_the_fourth_item(monkeypatch):
    """Make the runner stop (KeyboardInterrupt) when it starts its fourth item; return the ids.

    Only the first run is stopped: a resumed run has three items left, so it never reaches a
    fourth call once the list is cleared.
    """
    calls = []
    original = run_module.evaluate_item

    def interrupted(context, item, labels, stored):
        calls.append(item.id)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return original(context, item, labels, stored)

    monkeypatch.setattr(run_module, "evaluate_item", interrupted)
    return calls


def test_interrupted_run_resumes_without_losing_work(tmp_path, monkeypatch, finished_run):
    calls = interrupt_at_the_fourth_item(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        evaluate(tmp_path)
    run_dir = tmp_path / RUN_NAME
    assert len(list((run_dir / "items").glob("*.npz"))) == 3
    assert not (run_dir / "records.csv").exists()
    assert not list(run_dir.rglob("*.tmp"))
    calls.clear()
    first_session = json.loads((run_dir / "config.json").read_text())["environment"]
    later = {**first_session, "git_commit": "later-commit"}
    monkeypatch.setattr(config_module, "environment", lambda device: later)
    assert evaluate(tmp_path) == 0
    assert len(calls) == 3, "only the three unfinished items are computed"
    resumed, reference = read_records(run_dir), read_records(finished_run)
    assert_same_records(resumed, reference)
    stored = json.loads((run_dir / "config.json").read_text())
    assert stored["environment"]["git_commit"] == "later-commit"
    assert stored["earlier_environments"] == [first_session], "the first session is kept"


def test_a_run_resumes_from_its_committed_files_alone(tmp_path, monkeypatch, finished_run):
    """Stop a run, delete items/ (not committed), resume: same records, summary and figures."""
    calls = interrupt_at_the_fourth_item(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        evaluate(tmp_path)
    run_dir = tmp_path / RUN_NAME
    partial = pd.read_csv(run_dir / "records.partial.csv", dtype={"id": str})
    assert sorted(partial["id"].unique()) == sorted(calls[:3])
    assert (run_dir / "figure_data.npz").stat().st_size < 200_000
    shutil.rmtree(run_dir / "items")
    calls.clear()
    assert evaluate(tmp_path) == 0
    assert len(calls) == 3, "only the three unfinished items are computed"
    assert not list(run_dir.glob("records.partial*.csv"))
    stored = RunFolder(run_dir).figure_data()
    assert len(stored) == 6, "every item's arrays are kept"
    assert all("insertion@sidu" in arrays and "thumbnail" in arrays for arrays in stored.values())
    assert sum("rgb" in arrays for arrays in stored.values()) == 6
    shutil.rmtree(run_dir / "items")
    (run_dir / "figures" / "curves.png").unlink()
    assert main(["summarise", str(run_dir)]) == 0
    assert (run_dir / "figures" / "curves.png").stat().st_size > 1000
    assert_same_records(read_records(run_dir), read_records(finished_run))
    resumed = pd.read_csv(run_dir / "summary.csv").drop(columns=SECONDS)
    reference = pd.read_csv(finished_run / "summary.csv").drop(columns=SECONDS)
    pd.testing.assert_frame_equal(resumed, reference, check_exact=False, atol=1e-6)


SECONDS = ["seconds_per_image", "metric_seconds_per_image"]


def assert_same_records(first, second):
    key = ["id", "explainer"]
    first = first.sort_values(key).reset_index(drop=True)
    second = second.sort_values(key).reset_index(drop=True)
    assert first[key].equals(second[key])
    for column in ("insertion_auc", "deletion_auc", "energy_pointing_game", "region_auc"):
        np.testing.assert_allclose(first[column], second[column], rtol=0, atol=1e-6)
    assert first["pointing_game_hit"].equals(second["pointing_game_hit"])
    assert first["predicted"].equals(second["predicted"])


@pytest.mark.parametrize("keep_items", [True, False], ids=["items", "committed-files-only"])
def test_a_resume_with_nothing_left_leaves_the_folder_as_it_was(
    tmp_path, monkeypatch, finished_run, keep_items
):
    """A finished folder resumed in a later session keeps its config (commit, machine) as is."""
    run_dir = tmp_path / RUN_NAME
    shutil.copytree(finished_run, run_dir)
    if not keep_items:
        shutil.rmtree(run_dir / "items")
    before = {name: (run_dir / name).read_bytes() for name in ("config.json", "summary.md")}
    first_session = json.loads(before["config.json"])["environment"]
    later = {**first_session, "git_commit": "later-commit"}
    monkeypatch.setattr(config_module, "environment", lambda device: later)
    calls = interrupt_at_the_fourth_item(monkeypatch)
    assert evaluate(tmp_path) == 0
    assert calls == []
    for name, content in before.items():
        assert (run_dir / name).read_bytes() == content, f"{name} was rewritten"
    assert_same_records(read_records(run_dir), read_records(finished_run))


def test_resume_refuses_a_different_protocol(finished_run, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(finished_run, out / RUN_NAME)
    assert (
        main(
            [
                "evaluate",
                "--limit",
                "6",
                "--steps",
                "8",
                "--explainers",
                EXPLAINERS,
                "--out",
                str(out),
            ]
        )
        == 2
    )
    error = capsys.readouterr().err
    assert "different configuration" in error
    assert "protocol.insertion_deletion.steps" in error
    assert "--fresh" in error
    assert (
        main(
            [
                "evaluate",
                "--limit",
                "2",
                "--steps",
                "8",
                "--explainers",
                "center",
                "--out",
                str(out),
                "--fresh",
            ]
        )
        == 0
    )
    assert len(read_records(out / RUN_NAME)) == 2


def test_target_label_explains_the_label(tmp_path):
    assert (
        main(
            [
                "evaluate",
                "--limit",
                "1",
                "--explainers",
                "center",
                "--target",
                "label",
                "--steps",
                "4",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    records = read_records(tmp_path / RUN_NAME)
    assert (records["target"] == records["label"]).all()


def test_compare_gate_passes_on_itself_and_fails_on_a_doctored_baseline(
    finished_run, tmp_path, capsys
):
    assert main(["compare", str(finished_run), str(finished_run)]) == 0
    doctored = tmp_path / "baseline"
    doctored.mkdir()
    shutil.copy(finished_run / "config.json", doctored / "config.json")
    summary = pd.read_csv(finished_run / "summary.csv")
    summary.loc[summary["explainer"] == "sidu", "insertion_auc"] += 0.05
    summary.to_csv(doctored / "summary.csv", index=False)
    assert (
        main(["compare", str(finished_run), str(doctored), "--tolerance", "insertion_auc=0.01"])
        == 1
    )
    assert "REGRESSION" in capsys.readouterr().out


def test_plot_redraws_from_stored_items(finished_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    shutil.rmtree(copy / "figures")
    assert main(["plot", str(copy)]) == 0
    assert (copy / "figures" / "curves.png").exists()
    assert (copy / "figures" / "overlays.png").exists()


def test_two_processes_match_one(finished_run, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed next to this Python")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [
        str(torchrun),
        "--nproc-per-node",
        "2",
        "--master-port",
        "29531",
        "-m",
        "sidu_bench",
        "evaluate",
        *SMALL,
        "--out",
        str(tmp_path),
    ]
    completed = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=600, check=False
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert_same_records(read_records(tmp_path / RUN_NAME), read_records(finished_run))


def test_target_label_is_refused_when_labels_are_not_the_models_classes(tmp_path, capsys):
    from PIL import Image

    for name in ("cats", "dogs"):
        (tmp_path / "tree" / name).mkdir(parents=True)
        Image.new("RGB", (20, 16), (200, 30, 30)).save(tmp_path / "tree" / name / "a.png")
    arguments = ["evaluate", "--dataset", "folder", "--root", str(tmp_path / "tree")]
    arguments += ["--model", "synthetic_cnn", "--allow-model-mismatch"]
    arguments += ["--explainers", "center", "--steps", "4", "--out", str(tmp_path / "runs")]
    assert main([*arguments, "--target", "label"]) == 2
    assert "--target label needs a data set whose labels are the model's classes" in (
        capsys.readouterr().err
    )
    assert main(arguments) == 0
    records = read_records(tmp_path / "runs" / "folder-synthetic_cnn")
    assert len(records) == 2
    assert not records["pointing_game_valid"].any()
    assert records["insertion_auc"].notna().all()


def test_unknown_metric_is_refused(tmp_path, capsys):
    assert main(["evaluate", "--metrics", "pointing", "--limit", "1", "--out", str(tmp_path)]) == 2
    assert "unknown metric(s) 'pointing'; --metrics takes a comma-separated subset of" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / RUN_NAME).exists()
