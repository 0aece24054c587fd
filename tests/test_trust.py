"""The trust section (issue 25): temperature verdicts, sanity against the center, the marks.

The statistics themselves (Kendall's W, Spearman, split-half) are checked against plain
references in tests/test_agreement.py; here: that the section tests the right families and that
the tables mark what it finds.
"""

import numpy as np
import pandas as pd
import pytest

from sidu_bench.html_report.payload import trust_rows
from sidu_bench.stats import (
    VERDICT_BETTER,
    VERDICT_NA,
    VERDICT_NONE,
    VERDICT_TOO_SMALL,
    VERDICT_WORSE,
    holm,
)
from sidu_bench.tables.markdown import summary_markdown
from sidu_bench.tables.statistics import compare_pairs, reference_pairs, summarise
from sidu_bench.tables.trust import (
    TRUST_COLUMNS,
    sanity_outcome,
    sanity_rows,
    trust_markdown,
    trust_table,
    unstable_verdicts,
)

METRICS = ["energy_pointing_game", "energy_temperature", "region_auc", "mprt", "emprt"]
EXPLAINERS = ["sidu", "gradcam", "center"]
N = 30


def records(seed=0):
    """Three explainers on N items: gradcam beats sidu on the plain energy share, but its
    advantage reverses on the squared map; on the square-root map it holds."""
    rng = np.random.default_rng(seed)
    rows = []
    for item in range(N):
        for label in EXPLAINERS:
            base = {"sidu": 0.50, "gradcam": 0.55, "center": 0.45}[label]
            sq = {"sidu": 0.70, "gradcam": 0.62, "center": 0.50}[label]
            rows.append(
                {
                    "id": f"i{item}",
                    "category": f"c{item % 5}",
                    "explainer": label,
                    "center_miss": False,
                    "energy_pointing_game": base + rng.normal(0, 0.01),
                    "energy_pointing_game_sqrt": base - 0.1 + rng.normal(0, 0.01),
                    "energy_pointing_game_sq": sq + rng.normal(0, 0.01),
                    "region_auc": 0.8 + rng.normal(0, 0.05),
                    "mprt_last": 1.0 if label == "center" else 0.3 + rng.normal(0, 0.05),
                    "mprt_mean": 1.0 if label == "center" else 0.6 + rng.normal(0, 0.05),
                    "mprt_undefined": 0,
                    "emprt": 0.0 if label == "center" else -0.2 + rng.normal(0, 0.05),
                    "seconds": 0.1,
                    "metric_seconds": 0.1,
                }
            )
    return pd.DataFrame(rows)


def family(frame):
    pairs = reference_pairs(EXPLAINERS, "sidu")
    names = ["energy_pointing_game", "region_auc", "mprt_last", "mprt_mean", "emprt"]
    return pairs, compare_pairs(frame, pairs, names, seed=0)


def test_temperature_verdicts_are_tested_in_the_family_with_the_statistic_replaced():
    frame = records()
    pairs, comparisons = family(frame)
    table = trust_table(frame, EXPLAINERS, METRICS, seed=0, comparisons=comparisons)
    assert list(table.columns) == list(TRUST_COLUMNS)
    variants = table[table["statistic"] == "temperature"]
    assert set(variants["metric"]) == {"energy_pointing_game_sqrt", "energy_pointing_game_sq"}
    # the variant's family: the same 2 pairs x 5 statistics, the energy share replaced
    replaced = ["energy_pointing_game_sq", "region_auc", "mprt_last", "mprt_mean", "emprt"]
    expected = compare_pairs(frame, pairs, replaced, seed=0)
    expected = expected[expected["metric"] == "energy_pointing_game_sq"]
    got = variants[variants["metric"] == "energy_pointing_game_sq"]
    assert list(got["verdict"]) == list(expected["verdict"])
    np.testing.assert_allclose(got["value"], expected["diff"])
    assert list(got["other"]) == ["gradcam vs sidu", "center vs sidu"]
    kept = table[table["statistic"] == "temperature_kept"].set_index("other")
    assert kept.loc["gradcam vs sidu", "verdict"] == VERDICT_BETTER
    assert kept.loc["gradcam vs sidu", "value"] == 0.0  # worse under the square
    assert unstable_verdicts(table) == {("gradcam", "sidu", "energy_pointing_game")}


def test_holm_of_the_variant_family_is_the_plain_holm_of_its_p_values():
    frame = records()
    pairs, _ = family(frame)
    replaced = ["energy_pointing_game_sqrt", "region_auc", "mprt_last", "mprt_mean", "emprt"]
    tested = compare_pairs(frame, pairs, replaced, seed=0)
    np.testing.assert_allclose(tested["p_holm"], holm(tested["p"].to_numpy()))


def test_sanity_rows_compare_with_the_center_in_their_own_family():
    frame = records()
    rows = pd.DataFrame(sanity_rows(frame, EXPLAINERS, METRICS, seed=0))
    assert list(rows["other"].unique()) == ["sidu", "gradcam"]
    assert list(rows["metric"].unique()) == ["mprt_last", "mprt_mean", "emprt"]
    expected = compare_pairs(
        frame,
        [("sidu", "center"), ("gradcam", "center")],
        ["mprt_last", "mprt_mean", "emprt"],
        seed=0,
    )
    assert list(rows["verdict"]) == list(expected["verdict"])
    by_check = rows.set_index(["other", "metric"])["verdict"]
    assert by_check[("sidu", "mprt_last")] == VERDICT_BETTER  # lower than the center's 1
    assert by_check[("sidu", "emprt")] == VERDICT_WORSE  # entropy falls: below the center's 0
    assert sanity_rows(frame, ["sidu", "gradcam"], METRICS, seed=0) == []  # no center


def test_the_section_and_the_summary_mark_changed_verdicts():
    frame = records()
    _, comparisons = family(frame)
    table = trust_table(frame, EXPLAINERS, METRICS, seed=0, comparisons=comparisons)
    section = trust_markdown(table, METRICS, heading="## Can these rankings be trusted?")
    assert "| gradcam vs sidu | energy_pointing_game | better than reference |" in section
    assert "| no § |" in section
    assert "1 of 2 verdicts change with the temperature." in section
    assert "| sidu | emprt |" in section
    assert "| worse than reference (fails) |" in section
    assert "| better than reference (passes) |" in section
    summary = summarise(frame, EXPLAINERS, seed=0, metrics=METRICS)
    markdown = summary_markdown(
        summary,
        comparisons,
        {"dataset": "d", "model": "m"},
        metrics=METRICS,
        trust=section,
        unstable=unstable_verdicts(table),
    )
    marked = [line for line in markdown.splitlines() if line.endswith("better than reference § |")]
    assert len(marked) == 1
    assert marked[0].startswith("| gradcam | energy_pointing_game |")
    assert markdown.rstrip().endswith(section.rstrip())


def test_a_run_without_variants_has_no_temperature_rows():
    frame = records().drop(columns=["energy_pointing_game_sqrt", "energy_pointing_game_sq"])
    metrics = ["energy_pointing_game", "region_auc"]
    pairs = reference_pairs(EXPLAINERS, "sidu")
    comparisons = compare_pairs(frame, pairs, ["energy_pointing_game", "region_auc"], seed=0)
    table = trust_table(frame, EXPLAINERS, metrics, seed=0, comparisons=comparisons)
    assert not table["statistic"].isin(["temperature", "temperature_kept", "sanity"]).any()
    assert unstable_verdicts(table) == set()
    assert "Temperature" not in trust_markdown(table, metrics, heading="## x")


@pytest.mark.parametrize("name", ["energy_pointing_game_sqrt", "energy_pointing_game_sq"])
def test_variants_stay_out_of_the_tables_families(name):
    from sidu_bench.metrics import get_statistic
    from sidu_bench.tables.statistics import compared_statistics, ranked_metrics

    statistic = get_statistic(name)
    assert statistic.variant_of == "energy_pointing_game"
    assert name not in {s.name for s in compared_statistics()}
    assert name not in ranked_metrics()
    assert name not in set(ranked_metrics().values())


def test_every_report_and_summary_carries_the_section(tmp_path):
    """End to end: a default run's summary.md and a report's report.md, report_agreement.csv
    and agreement figure; the CSV's rows are the section's numbers for that row's records."""
    from sidu_bench.cli import main
    from sidu_bench.report import build_report
    from sidu_bench.runner import RunFolder
    from sidu_bench.tables.statistics import all_pairs, ranked_metrics

    args = ["evaluate", "--limit", "6", "--steps", "8", "--explainers", "sidu,gradcam,rise,center"]
    assert main([*args, "--out", str(tmp_path / "runs")]) == 0
    run = tmp_path / "runs" / "synthetic-synthetic_cnn"
    summary = (run / "summary.md").read_text()
    assert "## Can these rankings be trusted?" in summary
    assert "Temperature:" in summary
    written = build_report([run], out=tmp_path / "out")
    assert tmp_path / "out" / "report_agreement.csv" in written
    agreement = pd.read_csv(tmp_path / "out" / "report_agreement.csv", keep_default_na=False)
    assert list(agreement.columns) == ["dataset", "model", *TRUST_COLUMNS]
    folder = RunFolder(run)
    config = folder.run_config()
    records = folder.records(config.metrics)
    explainers = list(config.explainers)
    family = all_pairs(explainers)
    pairs = compare_pairs(records, family, list(ranked_metrics(config.metrics).values()), seed=0)
    expected = trust_table(records, explainers, config.metrics, seed=0, comparisons=pairs)
    assert list(agreement["statistic"]) == list(expected["statistic"])
    values = pd.to_numeric(agreement["value"].replace("", np.nan))
    np.testing.assert_allclose(values, expected["value"], rtol=0, atol=0)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Can these rankings be trusted?" in report
    assert "### synthetic × synthetic_cnn" in report
    assert (tmp_path / "out" / "agreement.png").read_bytes()[:4] == b"\x89PNG"


def test_a_protocol_2_run_gets_the_section_without_temperature():
    from pathlib import Path

    from sidu_bench.runner import RunFolder

    run = Path(__file__).resolve().parents[1] / "results/reference-v2/caltech101-efficientnet_lite0"
    if not run.is_dir():
        pytest.skip("the protocol-2 reference grid is not in this checkout")
    summary = RunFolder(run).summary_markdown()
    assert "## Can these rankings be trusted?" in summary
    assert "Kendall's W = " in summary
    assert "Temperature:" not in summary
    assert "energy_pointing_game, which compares how sharp maps are" in summary


def test_every_sanity_verdict_says_whether_the_explainer_passes():
    assert sanity_outcome(VERDICT_BETTER) == "passes"
    assert sanity_outcome(VERDICT_WORSE) == "fails"
    assert sanity_outcome(VERDICT_NONE) == "does not pass"
    # a map that ignores the weights as the center's does: every difference is 0
    assert sanity_outcome(VERDICT_TOO_SMALL) == "does not pass"
    assert sanity_outcome(VERDICT_NA) == "undefined on every item"


def test_a_constant_randomised_map_is_named_in_the_sanity_table_and_on_the_page():
    frame = records()
    frame.loc[frame["explainer"] == "sidu", "mprt_last"] = np.nan  # constant on every item
    frame.loc[frame["explainer"] == "gradcam", "mprt_last"] = 1.0  # as the center: no change
    table = trust_table(frame, EXPLAINERS, METRICS, seed=0, comparisons=None)
    section = trust_markdown(table, METRICS, heading="## Trust")
    assert "| sidu | mprt_last | – | 0 | n/a (undefined on every item) |" in section
    unchanged = (
        f"| gradcam | mprt_last | +0.000 [+0.000, +0.000] | {N} | n too small (does not pass) |"
    )
    assert unchanged in section
    assert "n = 0 on `mprt_last` means" in section
    without_mprt = trust_table(frame, EXPLAINERS, ["region_auc", "emprt"], seed=0, comparisons=None)
    only_emprt = trust_markdown(without_mprt, ["region_auc", "emprt"], heading="## Trust")
    assert "| sidu | emprt |" in only_emprt
    assert "MPRT correlation is undefined" not in only_emprt
    shown = [row for row in trust_rows({("d", "m"): table}) if row["statistic"] == "sanity"]
    assert [row["outcome"] for row in shown] == [sanity_outcome(row["verdict"]) for row in shown]
    assert {row["outcome"] for row in shown} >= {"passes", "fails", "undefined on every item"}
    assert all("outcome" not in row for row in trust_rows({("d", "m"): table}) if row not in shown)
