"""``summarise_run``: summary.csv, summary.md and figures rebuilt from a run folder's records."""

import csv
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sidu_bench.metrics import summary_statistics
from sidu_bench.runner.folder import ItemResult, RunFolder, record_columns
from sidu_bench.runner.summarise import summarise_run, summary_header
from sidu_bench.stats import VERDICT_NA, VERDICT_REFERENCE, stratified_interval
from sidu_bench.tables.statistics import (
    COMPARISON_SUFFIXES,
    compare_pairs,
    compared_statistics,
    count_skipped_by_localisation,
    estimate,
    metric_seed,
    mostly_singletons,
    per_class_mean,
    reference_explainer,
    reference_pairs,
    summarise,
)

SMALL_METRICS = ("pointing_game", "energy_pointing_game", "region_auc", "insertion_deletion")
"""The metrics of the hand-made small runs."""
COMMITTED_METRICS = tuple(
    json.loads(
        (
            Path(__file__).resolve().parents[1]
            / "results"
            / "reference"
            / "synthetic-synthetic_cnn"
            / "config.json"
        ).read_text()
    )["metrics"]
)
SUMMARY_METRICS = [statistic.name for statistic in summary_statistics(COMMITTED_METRICS)]
COMPARED_METRICS = [statistic.name for statistic in compared_statistics(COMMITTED_METRICS)]
SMALL_COMPARED = [statistic.name for statistic in compared_statistics(SMALL_METRICS)]
PER_ITEM_SCORES = ("energy_pointing_game", "region_auc", "insertion_auc", "deletion_auc")
COMMITTED = (
    Path(__file__).resolve().parents[1] / "results" / "reference" / "synthetic-synthetic_cnn"
)
BASE_COLUMNS = [
    "explainer",
    "n_images",
    *(f"{m}{s}" for m in SUMMARY_METRICS for s in ("", "_ci_low", "_ci_high", "_n")),
    "seconds_per_image",
    "metric_seconds_per_image",
]
"""The per-metric columns summary.csv had before the paired comparisons were added."""


def read_cells(path):
    """summary.csv as {explainer: {column: the text of its cell}}."""
    with open(path, newline="", encoding="utf-8") as stream:
        return {row["explainer"]: row for row in csv.DictReader(stream)}


@pytest.fixture
def committed_copy(tmp_path):
    """The committed run folder as a fresh clone has it (``items/`` is not committed)."""
    ignore = shutil.ignore_patterns("items")
    return Path(shutil.copytree(COMMITTED, tmp_path / COMMITTED.name, ignore=ignore))


def test_committed_run_reproduces_its_means_and_cis_exactly(committed_copy):
    original = read_cells(COMMITTED / "summary.csv")
    summarise_run(committed_copy)
    rebuilt = read_cells(committed_copy / "summary.csv")
    assert list(rebuilt) == list(original)
    for explainer, row in original.items():
        for column in BASE_COLUMNS:
            assert rebuilt[explainer][column] == row[column], (explainer, column)


def test_committed_summary_is_current(committed_copy):
    """The committed folder was re-summarised with today's rule (re-run summarise if not)."""
    summarise_run(committed_copy)
    for name in ("summary.csv", "summary.md"):
        assert (committed_copy / name).read_text() == (COMMITTED / name).read_text(), name


RESULTS = Path(__file__).resolve().parents[1] / "results"
GRID_RUNS = sorted(RESULTS.glob("reference*/*-efficientnet_lite*"))
"""The committed reference grids: protocol 4 (``reference/``) and protocol 2 (``reference-v2/``,
re-summarised for the trust section with its figures kept as its runs drew them)."""


@pytest.fixture(scope="module")
def summarised(tmp_path_factory):
    """``summarise`` run once per cell on a copy as a fresh clone has it (no ``items/``)."""
    copies = {}

    def copy_of(run):
        if run not in copies:
            target = tmp_path_factory.mktemp("grid") / run.name
            copies[run] = Path(shutil.copytree(run, target, ignore=shutil.ignore_patterns("items")))
            summarise_run(copies[run])
        return copies[run]

    return copy_of


@pytest.mark.slow
@pytest.mark.parametrize("run", GRID_RUNS, ids=[f"{r.parent.name}/{r.name}" for r in GRID_RUNS])
def test_each_committed_grid_summary_equals_summarise_of_its_records(run, summarised):
    for name in ("summary.csv", "summary.md"):
        assert (summarised(run) / name).read_text() == (run / name).read_text(), name


PROTOCOL_4_RUNS = [run for run in GRID_RUNS if run.parent.name == "reference"]


@pytest.mark.slow
@pytest.mark.parametrize("run", PROTOCOL_4_RUNS, ids=[r.name for r in PROTOCOL_4_RUNS])
def test_each_protocol_4_cell_figure_equals_summarise_of_its_figure_data(run, summarised):
    import matplotlib
    from PIL import Image

    drawn_by = {Image.open(path).info.get("Software") for path in run.glob("figures/*.png")}
    installed = f"Matplotlib version{matplotlib.__version__}, https://matplotlib.org/"
    if drawn_by != {installed}:
        pytest.skip(f"figures drawn by {sorted(map(str, drawn_by))}, not by {installed}")
    names = sorted(path.name for path in (run / "figures").glob("*.png"))
    assert names == ["curves.png", "overlays.png"]
    for name in names:
        assert (summarised(run) / "figures" / name).read_bytes() == (
            run / "figures" / name
        ).read_bytes()


def test_comparison_columns_hold_the_reference_comparisons(committed_copy):
    table = summarise_run(committed_copy).set_index("explainer")
    written = pd.read_csv(committed_copy / "summary.csv").set_index("explainer")
    records = RunFolder(committed_copy).records()
    labels = json.loads((committed_copy / "config.json").read_text())["explainers"]
    expected = compare_pairs(records, reference_pairs(labels, "sidu"), COMPARED_METRICS, seed=0)
    assert len(expected) == 5 * len(COMPARED_METRICS)  # every explainer but SIDU
    for metric in COMPARED_METRICS:
        for suffix in COMPARISON_SUFFIXES:
            assert f"{metric}{suffix}" in written.columns
        assert written.at["sidu", f"{metric}_verdict"] == VERDICT_REFERENCE
        assert np.isnan(written.at["sidu", f"{metric}_p_holm"])
    for row in expected.itertuples():
        got = written.loc[row.explainer]
        np.testing.assert_allclose(
            [got[f"{row.metric}{s}"] for s in ("_diff", "_diff_ci_low", "_diff_ci_high")],
            [row.diff, row.diff_ci_low, row.diff_ci_high],
            rtol=0,
            atol=1e-15,
        )
        assert got[f"{row.metric}_p"] == row.p
        assert got[f"{row.metric}_p_holm"] == row.p_holm
        assert got[f"{row.metric}_verdict"] == row.verdict
    assert table.loc["random", "insertion_auc_verdict"] == "worse than reference"
    assert table.loc["gradcam", "insertion_auc_verdict"] == "no significant difference"


def test_markdown_states_the_rule_and_the_header(committed_copy):
    summarise_run(committed_copy)
    text = (committed_copy / "summary.md").read_text()
    for line in (
        f"Holm-adjusted over the m = {5 * len(COMPARED_METRICS)} comparisons",
        "sign-flip permutation test",
        "| explainer | metric | difference [95 % CI] | n | n0 | p | p (Holm) | verdict |",
        "| random | insertion_auc | -0.335 [-0.383, -0.288] | 48 | 48 |",
        "- **items**: 48",
        "- **reference explainer**: sidu",
        "- **seed**: 0",
    ):
        assert line in text
    assert "- **skipped (unreadable or corrupt file)**: 0" in text
    config = json.loads((committed_copy / "config.json").read_text())
    assert f"- **model chosen because**: {config['model_reason']}" in text
    assert f"- **backend**: {config['environment']['backend']['name']} (requested=" in text
    assert "(headline)" not in text  # 48 items in 6 classes
    assert "†" not in text  # every n >= 10


def edit_config(folder, **changes):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))
    return config


def test_header_names_backend_model_reason_and_skipped_files(committed_copy):
    config = json.loads((committed_copy / "config.json").read_text())
    environment = {**config["environment"], "backend": {"name": "onnxruntime", "threads": 2}}
    reason = "the data set's default model (natural-images, ImageNet classes)"
    edit_config(committed_copy, environment=environment, model_reason=reason, precision="ieee")
    (committed_copy / "skipped.csv").write_text(
        "id,file,reason\na,a.jpg,truncated JPEG\nb,b.xml,corrupt annotation\n"
    )
    summarise_run(committed_copy)
    text = (committed_copy / "summary.md").read_text()
    assert f"- **model chosen because**: {reason}" in text
    assert "- **backend**: onnxruntime (threads=2)" in text
    assert "- **precision**: ieee" in text
    assert "- **skipped (unreadable or corrupt file)**: 2 (listed in skipped.csv)" in text
    config = {**config, "explainers": ["gradcam"], "step": 3}
    header = summary_header(config, 4, 1, 0)
    assert header["insertion/deletion"] == "3 px per step"
    assert header["reference explainer"] is None
    assert header["items"] == 4


def test_corrupt_skipped_listing_is_named(committed_copy):
    (committed_copy / "skipped.csv").write_text("item,why\na,b\n")
    with pytest.raises(ValueError, match=r"skipped.csv: columns must be id,file,reason"):
        summarise_run(committed_copy)


def small_records(labels, n, categories=None):
    rng = np.random.default_rng(0)
    rows = []
    for label in labels:
        for i in range(n):
            rows.append(
                {
                    "id": f"item{i:02d}",
                    "category": categories[i] if categories else f"class{i}",
                    "explainer": label,
                    "center_miss": i % 2 == 0,
                    "pointing_game_hit": bool(rng.random() < 0.6),
                    "pointing_game_valid": True,
                    **{column: rng.random() for column in PER_ITEM_SCORES},
                    "seconds": 0.5,
                    "metric_seconds": 0.1,
                }
            )
    return pd.DataFrame(rows, columns=list(record_columns(SMALL_METRICS)))


def small_folder(tmp_path, labels, records):
    folder = tmp_path / "small"
    folder.mkdir()
    config = json.loads((COMMITTED / "config.json").read_text())
    config["explainers"] = labels
    config["metrics"] = list(SMALL_METRICS)
    (folder / "config.json").write_text(json.dumps(config))
    records.to_csv(folder / "records.csv", index=False)
    return folder


def test_small_run_marks_cis_and_headlines_the_hit_rate(tmp_path):
    labels = ["sidu", "gradcam", "center"]
    folder = small_folder(tmp_path, labels, small_records(labels, 5))
    summarise_run(folder)
    lines = (folder / "summary.md").read_text().splitlines()
    columns = next(line for line in lines if line.startswith("| explainer |")).split(" | ")
    assert columns[1:5] == [
        "pointing_game_hit_rate (headline)",
        "pointing_game ‡",
        "pointing_game_center_miss ‡",
        "energy_pointing_game",
    ]
    assert [line for line in lines if line.startswith(("†", "‡"))] == [
        "† n < 10: the CI is shown, but a bootstrap of so few items is a rough guide.",
        "‡ pointing_game is a per-class mean with one scored item in 5 of its 5 classes: it "
        "weighs single items and has no CI, so the hit rate is the headline.",
        "‡ pointing_game_center_miss is a per-class mean with one scored item in 3 of its 3 "
        "classes: it weighs single items and has no CI.",
    ]
    assert sum("(n=5) †" in line for line in lines) == 3  # one row per explainer
    assert any("Holm-adjusted over the m = 10 comparisons" in line for line in lines)
    table = pd.read_csv(folder / "summary.csv").set_index("explainer")
    assert (table.loc["gradcam", [f"{m}_verdict" for m in SMALL_COMPARED]] == "n too small").all()


def test_per_class_mean_is_the_mean_of_class_hit_rates():
    # The per-class statistics against a plain loop over classes, and bit for bit numpy's mean
    # of the class means, the rule the committed summaries were made with (13 classes: numpy's
    # unrolled pairwise sum).
    categories = [f"c{i % 13:02d}" for i in range(60)]
    records = small_records(["sidu"], 60, categories)
    records.loc[7, "pointing_game_valid"] = False
    hits = records["pointing_game_hit"].to_numpy(bool)
    valid = records["pointing_game_valid"].to_numpy(bool)
    miss = records["center_miss"].to_numpy(bool)
    codes = np.array([int(name[1:]) for name in categories])
    for metric, keep in (
        ("pointing_game", valid),
        ("pointing_game_center_miss", valid & miss),
    ):
        result = estimate(records, metric, seed=0)
        rates = []
        for k in range(13):
            trials = [bool(hits[i]) for i in range(60) if keep[i] and codes[i] == k]
            if trials:
                rates.append(sum(trials) / len(trials))
        assert result.mean == np.mean(rates)
        assert result.mean == pytest.approx(sum(rates) / len(rates), abs=1e-15)
        assert result.n == keep.sum()
        groups = [hits[keep & (codes == k)].astype(float) for k in range(13)]
        groups = [group for group in groups if group.size]
        interval = stratified_interval(groups, seed=metric_seed(0, metric))
        assert (result.low, result.high) == interval


def test_per_class_mean_against_a_loop_on_random_values():
    rng = np.random.default_rng(3)
    values = rng.random(200)
    categories = rng.choice(["b", "a", "NA", "10", "9"], size=200)
    means = []
    for name in sorted(set(categories)):
        members = [float(v) for v, c in zip(values, categories, strict=True) if c == name]
        means.append(sum(members) / len(members))
    assert per_class_mean(values, categories) == pytest.approx(sum(means) / len(means), abs=1e-15)
    assert np.isnan(per_class_mean(np.empty(0), np.empty(0, dtype=object)))


def test_mostly_singletons_rule():
    assert mostly_singletons(39 - 1, 39)  # ImageNet: 39 classes in 40 items
    assert mostly_singletons(3, 5)
    assert not mostly_singletons(2, 4)
    assert not mostly_singletons(0, 0)


def test_run_without_reference_has_na_verdicts_and_no_comparison(tmp_path):
    labels = ["gradcam", "center"]
    folder = small_folder(tmp_path, labels, small_records(labels, 12))
    table = summarise_run(folder)
    assert (table[[f"{m}_verdict" for m in SMALL_COMPARED]] == VERDICT_NA).all().all()
    assert table[[f"{m}_p" for m in SMALL_COMPARED]].isna().all().all()
    assert "Paired comparison" not in (folder / "summary.md").read_text()


def test_category_names_survive_the_csv(tmp_path):
    # "NA" and "None" would be read as missing, "007" as the number 7 (merging it with "7"):
    # each changes the per-class mean or the order of its stratified bootstrap.
    labels = ["sidu", "center"]
    categories = ["NA", "None", "007", "7"] * 5
    records = small_records(labels, 20, categories)
    folder = small_folder(tmp_path, labels, records)
    rebuilt = summarise_run(folder)
    expected = summarise(records, labels, seed=0, metrics=SMALL_METRICS)
    pd.testing.assert_frame_equal(rebuilt[expected.columns], expected)


def test_figures_are_redrawn_from_items(tmp_path):
    pytest.importorskip("matplotlib")
    labels = ["sidu", "center"]
    records = small_records(labels, 3)
    folder = small_folder(tmp_path, labels, records)
    store = RunFolder(folder)
    rng = np.random.default_rng(1)
    for item_id in records["id"].unique():
        arrays = {"image": rng.random((3, 16, 16)).astype(np.float16)}
        for label in labels:
            arrays[f"map@{label}"] = rng.random((16, 16)).astype(np.float16)
            arrays[f"insertion@{label}"] = np.linspace(0, 1, 9)
            arrays[f"deletion@{label}"] = np.linspace(1, 0, 9)
        store.save_item(ItemResult(item_id, {}, arrays))
    summarise_run(folder)
    for name in ("curves.png", "overlays.png"):
        assert (folder / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def figure_digests(run_dir):
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (run_dir / "figures").iterdir()
    }


def test_without_items_or_figure_data_the_figures_are_left_alone(committed_copy):
    (committed_copy / "figure_data.npz").unlink()
    before = figure_digests(committed_copy)
    summarise_run(committed_copy)
    assert figure_digests(committed_copy) == before


def test_the_committed_figure_data_redraws_the_figures(committed_copy):
    shutil.rmtree(committed_copy / "figures")
    summarise_run(committed_copy)
    for name in ("curves.png", "overlays.png"):
        assert (committed_copy / "figures" / name).stat().st_size > 10_000, name


def test_localisation_skips_are_counted_from_records_unless_given(tmp_path):
    labels = ["sidu", "center"]
    records = small_records(labels, 12)
    empty = records["id"] == "item03"
    records.loc[empty, "pointing_game_valid"] = False
    records.loc[empty, "pointing_game_hit"] = False
    records.loc[empty, ["energy_pointing_game", "region_auc"]] = np.nan
    assert count_skipped_by_localisation(records, ["pointing_game", "region_auc"]) == 1
    assert count_skipped_by_localisation(records, ["insertion_deletion"]) == 0
    folder = small_folder(tmp_path, labels, records)
    summarise_run(folder)
    assert "- **skipped by localisation (empty region)**: 1" in (folder / "summary.md").read_text()
    table = summarise_run(folder, localisation_skipped=7)
    assert "- **skipped by localisation (empty region)**: 7" in (folder / "summary.md").read_text()
    assert table.set_index("explainer").at["sidu", "pointing_game_n"] == 11


def test_reference_is_the_first_sidu_label():
    assert reference_explainer(["gradcam", "sidu:threshold=0.5", "sidu"]) == "sidu:threshold=0.5"
    assert reference_explainer(["gradcam", "sidual"]) is None


def test_missing_or_corrupt_files_are_named(tmp_path, committed_copy):
    with pytest.raises(FileNotFoundError, match=r"it has no config\.json"):
        summarise_run(tmp_path)
    (committed_copy / "records.csv").rename(committed_copy / "moved.csv")
    with pytest.raises(FileNotFoundError, match=r"has no records\.csv"):
        summarise_run(committed_copy)
    records = pd.read_csv(committed_copy / "moved.csv").drop(columns=["region_auc"])
    records.to_csv(committed_copy / "records.csv", index=False)
    with pytest.raises(ValueError, match=r"records\.csv: no region_auc column"):
        summarise_run(committed_copy)
    assert len(RunFolder(committed_copy).records(["insertion_deletion"])) == len(records)
    edit_config(committed_copy, explainers=[])
    with pytest.raises(ValueError, match=r"config\.json: explainers must name at least one"):
        summarise_run(committed_copy)
