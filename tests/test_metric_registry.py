"""The metric registry: the built-ins' published layout, checks on descriptions, and a toy metric
registered in this file alone that flows through records, summary, compare and report."""

import json
import math
import shutil
import sys
import textwrap
from dataclasses import replace

import pandas as pd
import pytest
import torch

from sidu_bench.cli import main
from sidu_bench.compare import gated_metrics
from sidu_bench.metrics import Metric, MetricScore, ScoredItem, ScoringSettings, Statistic
from sidu_bench.metrics.registry import (
    get_metric,
    get_statistic,
    list_metrics,
    register_metric,
    summary_statistics,
    unregister_metric,
)
from sidu_bench.runner import RunConfig, RunFolder
from sidu_bench.runner.folder import record_columns
from sidu_bench.tables.statistics import compared_statistics, ranked_metrics, report_metrics

RUN = "synthetic-synthetic_cnn"
LABELS = ["center", "random"]
SMALL = ["--device", "cpu", "--backend", "torch", "--limit", "4", "--steps", "4"]


PROTOCOL_2_METRICS = ("pointing_game", "energy_pointing_game", "region_auc", "insertion_deletion")
"""The metrics of every protocol-2 folder (the committed reference grid)."""
PROTOCOL_4_METRICS = (
    "pointing_game",
    "energy_pointing_game",
    "energy_temperature",
    "region_auc",
    "insertion_deletion",
    "road",
)
"""The default metrics of protocol 4."""


def test_builtin_metrics_keep_the_published_layout():
    # records.csv, summary.csv and the report of every committed run folder have these columns
    # in this order; the registry must reproduce them whatever order the modules import in.
    assert list_metrics() == [*PROTOCOL_4_METRICS, "mprt", "emprt"]
    assert list_metrics(default_only=True) == list(PROTOCOL_4_METRICS)
    protocol_2_columns = (
        *("id", "category", "label", "target", "predicted", "predicted_prob", "target_prob"),
        *("explainer", "center_miss", "pointing_game_hit", "pointing_game_valid"),
        *("energy_pointing_game", "region_auc", "insertion_auc", "deletion_auc"),
        *("seconds", "metric_seconds", "backend", "device"),
    )
    assert record_columns(PROTOCOL_2_METRICS) == protocol_2_columns
    added = ("road_morf", "road_lerf", "road", "mprt_last", "mprt_mean", "mprt_undefined", "emprt")
    temperature = ("energy_pointing_game_sqrt", "energy_pointing_game_sq")
    assert record_columns() == (
        *protocol_2_columns[:12],
        *temperature,
        *protocol_2_columns[12:-4],
        *added,
        *protocol_2_columns[-4:],
    )
    protocol_2_statistics = [
        "pointing_game",
        "pointing_game_hit_rate",
        "pointing_game_center_miss",
        "energy_pointing_game",
        "region_auc",
        "insertion_auc",
        "deletion_auc",
    ]
    assert [s.name for s in summary_statistics(PROTOCOL_2_METRICS)] == protocol_2_statistics
    new_statistics = ["road_morf", "road_lerf", "road", "mprt_last", "mprt_mean", "emprt"]
    assert [s.name for s in summary_statistics()] == [
        *protocol_2_statistics[:4],
        *temperature,
        *protocol_2_statistics[4:],
        *new_statistics,
    ]
    assert [s.name for s in compared_statistics()] == [
        "pointing_game_hit_rate",
        "energy_pointing_game",
        "region_auc",
        "insertion_auc",
        "deletion_auc",
        *new_statistics,
    ]
    lower = [s.name for s in summary_statistics() if not s.higher_is_better]
    assert lower == ["deletion_auc", "road_morf", "mprt_last", "mprt_mean"]
    assert gated_metrics() == [s.name for s in summary_statistics()]
    assert report_metrics(PROTOCOL_2_METRICS) == [
        "pointing_game_hit_rate",
        "pointing_game",
        "pointing_game_center_miss",
        "energy_pointing_game",
        "region_auc",
        "insertion_auc",
        "deletion_auc",
        "seconds_per_image",
    ]
    assert report_metrics()[-7:] == [*new_statistics, "seconds_per_image"]
    assert ranked_metrics(PROTOCOL_2_METRICS) == {
        "pointing_game": "pointing_game_hit_rate",
        "energy_pointing_game": "energy_pointing_game",
        "region_auc": "region_auc",
        "insertion_auc": "insertion_auc",
        "deletion_auc": "deletion_auc",
    }
    assert [m.name for m in map(get_metric, list_metrics()) if m.uses_regions] == [
        "pointing_game",
        "energy_pointing_game",
        "energy_temperature",
        "region_auc",
    ]


def peak_metric(name="map_peak", **changes):
    """A toy metric: the map's maximum, lower is better (to exercise the direction)."""
    fields = {
        "name": name,
        "columns": {name: math.nan},
        "statistics": (
            Statistic(name, column=name, higher_is_better=False, title=name.replace("_", " ")),
        ),
        "score": lambda item, settings: MetricScore({name: float(item.maps.max())}),
        "protocol": lambda settings: {"reduction": "maximum of the map"},
    }
    return Metric(**{**fields, **changes})


@pytest.fixture
def registered():
    """Register metrics for one test; unregister them afterwards."""
    names = []

    def register(metric):
        names.append(register_metric(metric).name)
        return metric

    yield register
    for name in names:
        unregister_metric(name)


BAD_DESCRIPTIONS = [
    (
        lambda: register_metric(peak_metric("region_auc")),
        ValueError,
        "metric 'region_auc' is already registered",
    ),
    (
        lambda: register_metric(
            peak_metric(statistics=(Statistic("deletion_auc", column="map_peak"),))
        ),
        ValueError,
        "already taken by another metric: 'deletion_auc'",
    ),
    (
        lambda: peak_metric(statistics=(Statistic("map_peak", column="peak"),)),
        ValueError,
        "reads column 'peak', which is not one of its columns",
    ),
    (
        lambda: Statistic("map_peak", column="map_peak", ranked_by="map_peak"),
        ValueError,
        "ranked_by is for per-class statistics",
    ),
    (
        lambda: peak_metric(
            statistics=(Statistic("a", column="map_peak", per_class=True, ranked_by="b"),)
        ),
        ValueError,
        "which is not one of its per-item statistics",
    ),
    (lambda: replace(peak_metric(), name="map peak"), ValueError, "Metric name must be an"),
    (lambda: register_metric("map_peak"), TypeError, "metric must be a Metric"),
    (
        lambda: get_metric("region_au"),
        ValueError,
        "unknown metric 'region_au'; did you mean 'region_auc'",
    ),
    (lambda: get_statistic("hit_rate"), ValueError, "unknown metric statistic 'hit_rate'"),
]


@pytest.mark.parametrize(("build", "error", "message"), BAD_DESCRIPTIONS)
def test_bad_descriptions_and_names_are_refused(build, error, message):
    with pytest.raises(error, match=message):
        build()
    assert list_metrics()[-1] == "emprt"  # nothing was registered


def test_a_registered_metric_comes_after_the_builtins(registered):
    registered(peak_metric("other_peak"))
    assert list_metrics()[-1] == "other_peak"
    assert record_columns()[-5:] == ("other_peak", "seconds", "metric_seconds", "backend", "device")


def test_a_metric_may_set_only_its_own_columns():
    item = ScoredItem(torch.nn.Identity(), torch.zeros(1, 3, 4, 4), torch.ones(1, 4, 4), None, None)
    settings = ScoringSettings(tolerance=None, steps=4, step=None)
    assert peak_metric().evaluate(item, settings).values == {"map_peak": 1.0}
    stray = peak_metric(score=lambda item, settings: MetricScore({"region_auc": 0.5}))
    with pytest.raises(ValueError, match=r"metric 'map_peak' returned column\(s\) 'region_auc'"):
        stray.evaluate(item, settings)
    with pytest.raises(TypeError, match="must return a MetricScore"):
        peak_metric(score=lambda item, settings: {"map_peak": 1.0}).evaluate(item, settings)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """An evaluate run with the toy metric registered (by this file only), then unregistered."""
    register_metric(peak_metric())
    try:
        out = tmp_path_factory.mktemp("toy")
        assert main(["evaluate", *SMALL, "--explainers", ",".join(LABELS), "--out", str(out)]) == 0
        yield out / RUN
    finally:
        unregister_metric("map_peak")


def read_summary(run_dir):
    """summary.csv with its verdicts as written ("n/a" is not a missing value)."""
    path = run_dir / "summary.csv"
    return pd.read_csv(path, keep_default_na=False, na_values=[""]).set_index("explainer")


def test_a_registered_metric_reaches_records_summary_and_protocol(toy_run):
    records = pd.read_csv(toy_run / "records.csv", dtype={"id": str})
    assert list(records.columns[-5:]) == [
        "map_peak",
        "seconds",
        "metric_seconds",
        "backend",
        "device",
    ]
    store = RunFolder(toy_run)
    for row in records.itertuples():
        stored_map = store.load_item(row.id).arrays[f"map@{row.explainer}"]  # float16
        assert row.map_peak == pytest.approx(float(stored_map.max()), rel=1e-3)
    summary = read_summary(toy_run)
    for label in LABELS:
        mine = records.loc[records["explainer"] == label, "map_peak"]
        assert summary.at[label, "map_peak"] == pytest.approx(mine.mean(), abs=1e-12)
        assert summary.at[label, "map_peak_n"] == 4
        assert summary.at[label, "map_peak_verdict"] == "n/a"  # no SIDU reference in the run
    markdown = (toy_run / "summary.md").read_text()
    assert "Higher is better except deletion AUC, ROAD MoRF and map peak." in markdown
    assert "| deletion_auc | road_morf | road_lerf | road | map_peak | s/image |" in markdown
    config = json.loads((toy_run / "config.json").read_text())
    assert config["metrics"][-1] == "map_peak"
    assert config["protocol"]["map_peak"] == {"reduction": "maximum of the map"}


def test_a_registered_metric_is_gated_in_its_direction(toy_run, tmp_path, capsys):
    assert main(["compare", str(toy_run), str(toy_run), "--tolerance", "map_peak=0.01"]) == 0
    assert "map_peak" in capsys.readouterr().out
    baseline = tmp_path / "baseline"
    shutil.copytree(toy_run, baseline, ignore=shutil.ignore_patterns("items"))
    table = pd.read_csv(baseline / "summary.csv")
    table.loc[table["explainer"] == "center", "map_peak"] -= 0.5  # lower is better
    table.to_csv(baseline / "summary.csv", index=False)
    assert main(["compare", str(toy_run), str(baseline), "--tolerance", "map_peak=0.01"]) == 1
    failing = [line for line in capsys.readouterr().out.splitlines() if "REGRESSION" in line]
    assert len(failing) == 1
    assert failing[0].split()[:2] == ["center", "map_peak"]


def test_a_registered_metric_is_ranked_in_the_report(toy_run, tmp_path):
    assert main(["report", str(toy_run), "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "report.csv")
    cells = table[table["metric"] == "map_peak"].set_index("explainer")
    assert sorted(cells.index) == sorted(LABELS)
    summary = pd.read_csv(toy_run / "summary.csv").set_index("explainer")
    for label in LABELS:
        assert cells.at[label, "value"] == pytest.approx(summary.at[label, "map_peak"], abs=1e-12)
    assert cells["rank"].notna().all()
    pairs = pd.read_csv(tmp_path / "report_pairs.csv")
    assert (pairs["metric"] == "map_peak").sum() == 1  # one pair of two explainers
    markdown = (tmp_path / "report.md").read_text()
    assert "### map_peak (lower is better)" in markdown
    assert "lower is better for deletion AUC, ROAD MoRF and map peak" in markdown
    assert "- `map_peak.reduction`: maximum of the map" in markdown


def test_only_computed_metrics_describe_the_protocol(registered):
    config = RunConfig(
        dataset="synthetic",
        model="synthetic_cnn",
        explainers=("center",),
        metrics=tuple(list_metrics()),
        layer="features",
        tolerance=4.0,
    )
    before = json.dumps(config.protocol())
    registered(peak_metric("uncomputed_peak"))
    assert json.dumps(config.protocol()) == before  # registered, not computed
    computed = replace(config, metrics=(*config.metrics, "uncomputed_peak")).protocol()
    assert computed["uncomputed_peak"] == {"reduction": "maximum of the map"}
    assert {
        key: value for key, value in computed.items() if key != "uncomputed_peak"
    } == json.loads(before)
    assert "pointing_game" not in replace(config, metrics=("insertion_deletion",)).protocol()


PLUGIN = """
import math
from sidu_bench.metrics import Metric, MetricScore, Statistic, register_metric

register_metric(
    Metric(
        name="plugin_peak",
        columns={"plugin_peak": math.nan},
        statistics=(Statistic("plugin_peak", column="plugin_peak"),),
        score=lambda item, settings: MetricScore({"plugin_peak": float(item.maps.max())}),
        protocol=lambda settings: {"reduction": "maximum of the map"},
    )
)
"""


@pytest.fixture
def metric_plugin(tmp_path, monkeypatch):
    """A plug-in module registering a metric with a protocol entry; unregistered afterwards."""
    (tmp_path / "peak_plugin.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "peak_plugin"
    sys.modules.pop("peak_plugin", None)
    if "plugin_peak" in list_metrics():
        unregister_metric("plugin_peak")


def test_an_imported_plugin_metric_joins_the_protocol_only_when_computed(tmp_path, metric_plugin):
    builtins = "pointing_game,energy_pointing_game,region_auc,insertion_deletion"
    plain, imported, computed = (tmp_path / name for name in ("plain", "imported", "computed"))

    def evaluate(out, explainer, metrics, *plugin):
        options = ["--explainers", explainer, "--metrics", metrics, "--out", str(out), *plugin]
        assert main(["evaluate", *SMALL, "--limit", "2", *options]) == 0

    evaluate(plain, "center", builtins)
    evaluate(imported, "center", builtins, "--import", metric_plugin)
    assert "plugin_peak" in list_metrics()
    evaluate(computed, "random", f"{builtins},plugin_peak", "--import", metric_plugin)

    def protocol(out):
        return json.loads((out / RUN / "config.json").read_text())["protocol"]

    assert protocol(imported) == protocol(plain)
    entry = {"reduction": "maximum of the map"}
    assert protocol(computed) == {**protocol(plain), "plugin_peak": entry}
    # the run with the extra metric shares a report table with the plain one
    out = tmp_path / "report"
    runs = [str(plain / RUN), str(computed / RUN)]
    assert main(["report", *runs, "--import", metric_plugin, "--out", str(out)]) == 0
    report = pd.read_csv(out / "report.csv").set_index(["metric", "explainer"])
    assert not report["mixed_protocols"].any()
    assert report.loc[("plugin_peak", "random"), "n"] == 2
    assert report.loc[("plugin_peak", "center"), "n"] == 0
    assert report.loc[("insertion_auc", "center"), "n"] == 2


def test_metrics_all_selects_every_registered_metric_and_list_marks_the_opt_in(
    registered, tmp_path, capsys
):
    registered(peak_metric("all_peak"))
    out = tmp_path / "all"
    arguments = ["evaluate", *SMALL, "--limit", "1", "--explainers", "center"]
    assert main([*arguments, "--metrics", "all", "--out", str(out)]) == 0
    config = RunFolder(out / RUN).run_config()
    builtin = (*PROTOCOL_4_METRICS, "mprt", "emprt")
    assert config.metrics == tuple(list_metrics())  # the plug-ins registered now included
    assert config.metrics[: len(builtin)] == builtin
    assert "all_peak" in config.metrics[len(builtin) :]
    records = pd.read_csv(out / RUN / "records.csv")
    assert list(records.columns) == list(record_columns(config.metrics))
    assert records.loc[0, "mprt_last"] == 1.0  # a model-independent map survives randomisation
    assert main(["list"]) == 0
    listed = capsys.readouterr().out.splitlines()[-1]
    assert listed.startswith(
        "metrics:    pointing_game, energy_pointing_game, energy_temperature, region_auc, "
        "insertion_deletion, road, mprt (opt-in), emprt (opt-in), "
    )
    assert "all_peak" in listed.split(", ")
