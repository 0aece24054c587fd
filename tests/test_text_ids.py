"""Ids and categories are text end to end: ``NA``, ``None``, ``nan`` and ``null`` survive.

pandas reads those words as missing values by default (``dtype=str`` does not stop it), so an
item called ``NA`` once broke ``plot`` and merged the categories ``NA`` and ``nan``. A data-set
plug-in with bare ids runs through evaluate -> summarise -> report -> plot.
"""

from __future__ import annotations

import csv
import sys
import textwrap

import pytest

from sidu_bench.cli import main
from sidu_bench.data.registry import DATASETS
from sidu_bench.runner import RunFolder

IDS = {"NA": "NA", "None": "NA", "nan": "nan", "null": "null"}
"""Item id -> category: three categories, ``NA`` with two items."""

PLUGIN = '''
import dataclasses

from sidu_bench.data import register_dataset
from sidu_bench.data.synthetic import SyntheticShapes

IDS = {ids!r}


@register_dataset("bare-ids")
class BareIds(SyntheticShapes):
    """Four synthetic items whose ids and categories are words pandas reads as missing."""

    def __init__(self, root=None, *, preprocessing, seed=0):
        super().__init__(root, preprocessing=preprocessing, num_items=len(IDS), seed=seed)
        self.item_ids = tuple(IDS)
        self.item_categories = tuple(IDS.values())
        self.categories = tuple(sorted(set(IDS.values())))

    def __getitem__(self, index):
        item = super().__getitem__(index)
        item_id = self.item_ids[index]
        return dataclasses.replace(item, id=item_id, category=IDS[item_id])
'''


@pytest.fixture
def bare_ids(tmp_path, monkeypatch):
    """The plug-in module's name; the data set is unregistered afterwards."""
    (tmp_path / "bare_ids_plugin.py").write_text(textwrap.dedent(PLUGIN.format(ids=IDS)))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "bare_ids_plugin"
    sys.modules.pop("bare_ids_plugin", None)
    if "bare-ids" in DATASETS:
        DATASETS.unregister("bare-ids")


def test_words_pandas_reads_as_missing_survive_every_command(tmp_path, bare_ids):
    out = tmp_path / "runs"
    options = ["--explainers", "sidu,center", "--steps", "8", "--device", "cpu"]
    command = ["evaluate", "--dataset", "bare-ids", "--import", bare_ids, *options]
    assert main([*command, "--out", str(out)]) == 0
    run = out / "bare-ids-synthetic_cnn"
    folder = RunFolder(run)

    with (run / "records.csv").open(newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert sorted((row["id"], row["category"]) for row in rows[::2]) == sorted(IDS.items())
    records = folder.records()
    assert dict(zip(records["id"], records["category"], strict=True)) == IDS
    assert all(folder.load_item(item_id) is not None for item_id in IDS)
    assert set(folder.figure_data()) == set(IDS)

    summary_md = (run / "summary.md").read_text(encoding="utf-8")
    assert "one scored item in 2 of its 3 classes" in summary_md  # NA, nan and null apart
    before = {name: (run / name).read_bytes() for name in ("summary.csv", "summary.md")}
    assert main(["summarise", str(run), "--import", bare_ids]) == 0
    assert {name: (run / name).read_bytes() for name in before} == before

    report = tmp_path / "report"
    assert main(["report", str(run), "--import", bare_ids, "--out", str(report)]) == 0
    assert "bare-ids × synthetic_cnn: 2 of 3 classes" in (report / "report.md").read_text()

    pytest.importorskip("matplotlib")
    (run / "figures" / "overlays.png").unlink()
    assert main(["plot", str(run)]) == 0
    assert (run / "figures" / "overlays.png").stat().st_size > 1000
