"""``report --latex``: the booktabs fragment of the cross tables and its standalone wrapper."""

import math
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from sidu_bench.metrics import registered_metrics
from sidu_bench.stats import (
    FAMILYWISE_ALPHA,
    VERDICT_BETTER,
    VERDICT_NA,
    VERDICT_NONE,
    VERDICT_TOO_SMALL,
    VERDICT_WORSE,
)
from sidu_bench.tables.latex import escape_latex, report_latex, standalone_latex

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "results" / "report"
NAN = math.nan
UP, DOWN = "$^{\\uparrow}$", "$^{\\downarrow}$"
PROTOCOL = "abc123def456"


def cell(dataset, model, explainer, metric, value, low, high, n, protocol=PROTOCOL, mixed=False):
    return {
        "dataset": dataset,
        "model": model,
        "explainer": explainer,
        "metric": metric,
        "value": value,
        "ci_low": low,
        "ci_high": high,
        "n": n,
        "protocol_id": protocol,
        "mixed_protocols": mixed,
    }


def pair(dataset, model, explainer, reference, metric, verdict):
    return {
        "dataset": dataset,
        "model": model,
        "explainer": explainer,
        "reference": reference,
        "metric": metric,
        "verdict": verdict,
    }


def lines_of(text):
    return text.splitlines()


EPG = "energy_pointing_game"
RISE = "rise:masks=1000"


@pytest.fixture
def small():
    """2 rows x 3 explainers (sidu first) of one higher-is-better statistic, with its pairs."""
    table = pd.DataFrame(
        [
            cell("d", "m1", "sidu", EPG, 0.5, 0.4, 0.6, 40),
            cell("d", "m1", "gradcam", EPG, 0.7, 0.6, 0.8, 40),
            cell("d", "m1", RISE, EPG, 0.65, 0.55, 0.75, 48),
            cell("d", "m2", "sidu", EPG, 0.6, 0.5, 0.7, 40),
            cell("d", "m2", "gradcam", EPG, NAN, NAN, NAN, 0),
            cell("d", "m2", RISE, EPG, 0.3, 0.2, 0.4, 40),
            # not a ranked statistic of these metrics: never a table
            cell("d", "m1", "sidu", "seconds_per_image", 0.1, NAN, NAN, 40),
        ]
    )
    pairs = pd.DataFrame(
        [
            pair("d", "m1", "gradcam", "sidu", EPG, VERDICT_BETTER),
            pair("d", "m1", RISE, "sidu", EPG, VERDICT_BETTER),
            pair("d", "m1", RISE, "gradcam", EPG, VERDICT_NONE),
            pair("d", "m2", "gradcam", "sidu", EPG, VERDICT_NA),
            pair("d", "m2", RISE, "sidu", EPG, VERDICT_WORSE),
            pair("d", "m2", RISE, "gradcam", EPG, VERDICT_NA),
        ]
    )
    return table, pairs


def test_cells_bold_underline_arrows_dashes_and_n_range(small):
    table, pairs = small
    text = report_latex(table, pairs, [EPG])
    lines = lines_of(text)
    assert text.count("\\begin{table}") == 1
    assert "\\label{tab:sidu-bench-energy-pointing-game}" in lines
    assert "\\begin{tabular}{llrccc}" in lines
    assert "data set & model & n & sidu (ref.) & gradcam & rise:masks=1000 \\\\" in lines
    # gradcam best; rise not separated from it (underlined); sidu separated (plain); both
    # better than the reference
    means = f"d & m1 & 40--48 & 0.500 & \\textbf{{0.700}}{UP} & \\underline{{0.650}}{UP} \\\\"
    assert means in lines
    assert (
        " &  &  & {\\scriptsize [0.400, 0.600]} & {\\scriptsize [0.600, 0.800]} & "
        "{\\scriptsize [0.550, 0.750]} \\\\"
    ) in lines
    # nothing scored for gradcam: a dash and an empty CI; rise worse than sidu and separated
    assert f"d & m2 & 0--40 & \\textbf{{0.600}} & -- & 0.300{DOWN} \\\\" in lines
    assert " &  &  & {\\scriptsize [0.500, 0.700]} &  & {\\scriptsize [0.200, 0.400]} \\\\" in lines
    assert lines.index("\\addlinespace") > lines.index("\\midrule")
    for rule in ("\\toprule", "\\midrule", "\\bottomrule"):
        assert lines.count(rule) == 1
    caption = next(line for line in lines if line.startswith("\\caption"))
    assert PROTOCOL in caption
    assert "higher is better" in caption
    assert "mixed protocols" not in caption
    assert f"\\alpha = {FAMILYWISE_ALPHA}" in caption
    assert "Holm" in caption
    assert "seconds" not in text
    assert "†" not in text
    assert "‡" not in text


def test_a_verdict_that_changes_with_the_temperature_is_marked(small):
    table, pairs = small
    unstable = {("d", "m1", "gradcam", "sidu", EPG), ("d", "m2", "sidu", RISE, EPG)}
    lines = lines_of(report_latex(table, pairs, [EPG], unstable))
    means = f"d & m1 & 40--48 & 0.500 & \\textbf{{0.700}}{UP}\\S & \\underline{{0.650}}{UP} \\\\"
    assert means in lines
    assert f"d & m2 & 0--40 & \\textbf{{0.600}} & -- & 0.300{DOWN}\\S \\\\" in lines
    caption = next(line for line in lines if line.startswith("\\caption"))
    assert "\\S: that verdict changes when the map is min-max scaled" in caption
    unmarked = report_latex(table, pairs, [EPG])
    assert "\\S" not in unmarked


def test_mixed_protocols_list_every_id(small):
    table, pairs = small
    table = table.assign(mixed_protocols=True)
    table.loc[table["model"] == "m2", "protocol_id"] = "000000000000"
    caption = next(
        line for line in lines_of(report_latex(table, pairs, [EPG])) if line.startswith("\\cap")
    )
    assert f"Protocol ids: 000000000000, {PROTOCOL} (mixed protocols)." in caption


def test_reversed_pair_orientation_flips_the_arrow():
    table = pd.DataFrame(
        [
            cell("d", "m", "gradcam", EPG, 0.7, 0.6, 0.8, 10),
            cell("d", "m", "sidu", EPG, 0.5, 0.4, 0.6, 10),
            cell("d", "m", "center", EPG, 0.2, 0.1, 0.3, 10),
        ]
    )
    # stored as (reference, explainer): sidu worse than gradcam, sidu better than center
    pairs = pd.DataFrame(
        [
            pair("d", "m", "sidu", "gradcam", EPG, VERDICT_WORSE),
            pair("d", "m", "sidu", "center", EPG, VERDICT_BETTER),
            pair("d", "m", "center", "gradcam", EPG, VERDICT_WORSE),
        ]
    )
    lines = lines_of(report_latex(table, pairs, [EPG]))
    assert "data set & model & n & gradcam & sidu (ref.) & center \\\\" in lines
    assert f"d & m & 10 & \\textbf{{0.700}}{UP} & 0.500 & 0.200{DOWN} \\\\" in lines
    # the same verdicts stored the other way round give the same cells
    flipped = pairs.rename(columns={"explainer": "reference", "reference": "explainer"})
    flipped["verdict"] = flipped["verdict"].map(
        {VERDICT_WORSE: VERDICT_BETTER, VERDICT_BETTER: VERDICT_WORSE}
    )
    assert report_latex(table, flipped, [EPG]) == report_latex(table, pairs, [EPG])


def test_lower_is_better_makes_the_smallest_mean_bold():
    deletion = "deletion_auc"
    table = pd.DataFrame(
        [
            cell("d", "m", "sidu", deletion, 0.30, 0.25, 0.35, 20),
            cell("d", "m", "gradcam", deletion, 0.10, 0.05, 0.15, 20),
            cell("d", "m", "random", deletion, 0.50, 0.45, 0.55, 20),
        ]
    )
    pairs = pd.DataFrame(
        [
            pair("d", "m", "gradcam", "sidu", deletion, VERDICT_BETTER),
            pair("d", "m", "random", "sidu", deletion, VERDICT_WORSE),
            pair("d", "m", "random", "gradcam", deletion, VERDICT_TOO_SMALL),
        ]
    )
    text = report_latex(table, pairs, ["insertion_deletion"])
    lines = lines_of(text)
    # insertion_auc has no rows: no table for it
    assert text.count("\\begin{table}") == 1
    assert "\\label{tab:sidu-bench-deletion-auc}" in lines
    # "n too small" does not separate random from the best, so it is underlined
    assert f"d & m & 20 & 0.300 & \\textbf{{0.100}}{UP} & \\underline{{0.500}}{DOWN} \\\\" in lines
    caption = next(line for line in lines if line.startswith("\\caption"))
    assert "lower is better" in caption


def test_ties_are_all_bold_and_no_reference_means_no_symbols():
    table = pd.DataFrame(
        [
            cell("d", "m", "gradcam", EPG, 0.4, 0.3, NAN, 1),
            cell("d", "m", "scorecam", EPG, 0.4, 0.3, 0.5, 1),
            cell("d", "m", "center", EPG, -0.25, -0.5, 0.0, 1),
        ]
    )
    pairs = pd.DataFrame(
        [
            pair("d", "m", "scorecam", "gradcam", EPG, VERDICT_NONE),
            pair("d", "m", "center", "gradcam", EPG, VERDICT_WORSE),
            pair("d", "m", "center", "scorecam", EPG, VERDICT_WORSE),
        ]
    )
    text = report_latex(table, pairs, [EPG])
    lines = lines_of(text)
    assert "data set & model & n & gradcam & scorecam & center \\\\" in lines
    assert "d & m & 1 & \\textbf{0.400} & \\textbf{0.400} & $-$0.250 \\\\" in lines
    assert (
        " &  &  & {\\scriptsize --} & {\\scriptsize [0.300, 0.500]} & "
        "{\\scriptsize [$-$0.500, 0.000]} \\\\"
    ) in lines
    assert "(ref.)" not in text
    assert "uparrow" not in text
    assert "downarrow" not in text


def test_a_pair_missing_from_pairs_is_not_underlined():
    table = pd.DataFrame(
        [
            cell("d", "m", "sidu", EPG, 0.5, 0.4, 0.6, 5),
            cell("d", "m", "gradcam", EPG, 0.6, 0.5, 0.7, 5),
        ]
    )
    empty = pd.DataFrame(columns=["dataset", "model", "explainer", "reference", "metric"])
    lines = lines_of(report_latex(table, empty, [EPG]))
    assert "d & m & 5 & 0.500 & \\textbf{0.600} \\\\" in lines


def test_the_pointing_game_has_one_table_on_its_hit_rate():
    rows = [
        cell("d", "m", "sidu", metric, 0.5, 0.4, 0.6, 8)
        for metric in ("pointing_game_hit_rate", "pointing_game", "pointing_game_center_miss")
    ]
    text = report_latex(pd.DataFrame(rows), pd.DataFrame(), ["pointing_game"])
    assert text.count("\\begin{table}") == 1
    assert "\\label{tab:sidu-bench-pointing-game-hit-rate}" in text
    assert "The report ranks pointing\\_game on this statistic." in text


def test_no_rows_no_table():
    table = pd.DataFrame([cell("d", "m", "sidu", "seconds_per_image", 0.1, NAN, NAN, 4)])
    text = report_latex(table, pd.DataFrame(), [EPG])
    assert text.startswith("%")
    assert "\\begin" not in text


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("rise:masks=1000", "rise:masks=1000"),
        ("captum.Occlusion:window=8", "captum.Occlusion:window=8"),
        ("my_expl%2", "my\\_expl\\%2"),
        ("a&b#c", "a\\&b\\#c"),
        ("back\\slash", "back\\textbackslash{}slash"),
        ("t~x^2", "t\\textasciitilde{}x\\textasciicircum{}2"),
        ("{set}$", "\\{set\\}\\$"),
        ("<a|b>", "\\textless{}a\\textbar{}b\\textgreater{}"),
        ("[x]", "{[}x{]}"),
        ("a--b", "a-{}-b"),
        ("imagenet-val", "imagenet-val"),
        ("", ""),
    ],
)
def test_escape_latex(label, expected):
    assert escape_latex(label) == expected


def test_labels_are_escaped_in_headers_and_rows():
    odd = "sidu:x=1_%&#\\~^{"
    table = pd.DataFrame(
        [
            cell("data_set&1", "model%2", odd, EPG, 0.5, 0.4, 0.6, 3),
            cell("data_set&1", "model%2", "my_expl%2", EPG, 0.4, 0.3, 0.5, 3),
        ]
    )
    lines = lines_of(report_latex(table, pd.DataFrame(), [EPG]))
    escaped = "sidu:x=1\\_\\%\\&\\#\\textbackslash{}\\textasciitilde{}\\textasciicircum{}\\{"
    assert f"data set & model & n & {escaped} (ref.) & my\\_expl\\%2 \\\\" in lines
    assert "data\\_set\\&1 & model\\%2 & 3 & \\textbf{0.500} & 0.400 \\\\" in lines


def test_standalone_inputs_the_fragment_with_booktabs_only():
    text = standalone_latex("tables/report.tex")
    assert text.startswith("\\documentclass[landscape,a4paper,10pt]{article}")
    assert [line for line in lines_of(text) if "\\usepackage" in line] == ["\\usepackage{booktabs}"]
    assert "\\input{tables/report.tex}" in text
    assert text.rstrip().endswith("\\end{document}")
    assert "\\input{report.tex}" in standalone_latex()


# --- compilation (where pdflatex is installed) ----------------------------------------------

PDFLATEX = shutil.which("pdflatex")
needs_pdflatex = pytest.mark.skipif(
    PDFLATEX is None,
    reason="pdflatex is not on PATH (install texlive-latex-base and "
    "texlive-latex-recommended to compile the LaTeX tables)",
)


def compile_latex(folder: Path, fragment: str) -> Path:
    (folder / "report.tex").write_text(fragment, encoding="utf-8")
    (folder / "document.tex").write_text(standalone_latex("report.tex"), encoding="utf-8")
    result = subprocess.run(
        [PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", "document.tex"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    pdf = folder / "document.pdf"
    assert pdf.is_file()
    assert pdf.stat().st_size > 0
    return pdf


def pdf_text(pdf: Path) -> str | None:
    """The PDF's text by pdftotext, None where it is not installed."""
    tool = shutil.which("pdftotext")
    if tool is None:
        return None
    result = subprocess.run(
        [tool, "-layout", str(pdf), "-"], capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout


@needs_pdflatex
def test_the_small_tables_compile(small, tmp_path):
    table, pairs = small
    odd = pd.DataFrame(
        [
            cell("d&x", "m_1", "sidu:x=1_%&#\\~^{}$<>|[]", EPG, 0.5, 0.4, 0.6, 3),
            cell("d&x", "m_1", "[lead", EPG, NAN, NAN, NAN, 0),
        ]
    )
    deletion = cell("d", "m1", "sidu", "deletion_auc", 0.2, 0.1, 0.3, 40)
    table = pd.concat([table, odd, pd.DataFrame([deletion])], ignore_index=True)
    fragment = report_latex(table, pairs, [EPG, "insertion_deletion"])
    assert fragment.count("\\begin{table}") == 2
    compile_latex(tmp_path, fragment)


@needs_pdflatex
@pytest.mark.skipif(
    not (REPORT / "report.csv").is_file() or not (REPORT / "report_pairs.csv").is_file(),
    reason="results/report/report.csv and report_pairs.csv are not in this checkout",
)
def test_the_real_report_compiles(tmp_path):
    table = pd.read_csv(REPORT / "report.csv")
    pairs = pd.read_csv(REPORT / "report_pairs.csv")
    statistics = set(table["metric"].astype(str))
    metrics = [
        metric.name
        for metric in registered_metrics()
        if any(statistic.name in statistics for statistic in metric.statistics)
    ]
    fragment = report_latex(table, pairs, metrics)
    assert "\\begin{table}" in fragment
    pdf = compile_latex(tmp_path, fragment)
    text = pdf_text(pdf)
    if text is not None:
        explainers = set(table["explainer"].astype(str))
        for label in (label for label in explainers if label.isascii() and "_" not in label):
            assert label in text
