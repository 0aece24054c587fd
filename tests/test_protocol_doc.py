"""docs/protocol.md documents every key of the protocol object, and its citations resolve."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from sidu_bench.metrics import list_metrics
from sidu_bench.runner import RunConfig

REPO = Path(__file__).resolve().parents[1]
PROTOCOL_DOC = REPO / "docs" / "protocol.md"
CITING = (*sorted((REPO / "sidu").rglob("*.py")), *sorted((REPO / "sidu_bench").rglob("*.py")))
CITING += (REPO / "README.md",)
ITEM_HEADING = re.compile(r"^#{2,4} (\d+)\. ", re.MULTILINE)
CITATION = re.compile(r"docs/protocol\.md,\s+items?\s+(\d+(?:(?:\s*,\s*|\s+and\s+)\d+)*)")


def dotted_keys(mapping: Mapping[str, object], prefix: str = "") -> list[str]:
    """Every key of ``mapping`` as a dotted path, nested keys included (parents first)."""
    keys = []
    for key, value in mapping.items():
        path = f"{prefix}{key}"
        keys.append(path)
        if isinstance(value, Mapping):
            keys += dotted_keys(value, f"{path}.")
    return keys


def undocumented(keys: list[str], text: str) -> list[str]:
    """The keys that ``text`` never writes in backticks."""
    return [key for key in keys if f"`{key}`" not in text]


def full_config() -> RunConfig:
    return RunConfig(
        dataset="synthetic",
        model="synthetic_cnn",
        explainers=("center",),
        metrics=tuple(list_metrics()),
        layer="features",
        tolerance=4.0,
    )


def test_every_protocol_key_is_documented():
    keys = dotted_keys(full_config().protocol())
    assert {"protocol_version", "target", "insertion_deletion.steps"} <= set(keys)
    assert undocumented(keys, PROTOCOL_DOC.read_text(encoding="utf-8")) == []


def test_an_undocumented_key_is_reported():
    protocol = {**full_config().protocol(), "made_up": {"nested_rule": 1}}
    missing = undocumented(dotted_keys(protocol), PROTOCOL_DOC.read_text(encoding="utf-8"))
    assert missing == ["made_up", "made_up.nested_rule"]


def documented_items(text: str) -> set[int]:
    """The item numbers of the ``### N. Title`` headings of ``text``."""
    return {int(number) for number in ITEM_HEADING.findall(text)}


def cited_items(text: str) -> list[int]:
    """The item numbers ``text`` cites as ``docs/protocol.md, item N`` (or ``items N and M``)."""
    return [
        int(number)
        for match in CITATION.finditer(text)
        for number in re.findall(r"\d+", match.group(1))
    ]


def test_every_citation_names_an_existing_item():
    items = documented_items(PROTOCOL_DOC.read_text(encoding="utf-8"))
    assert items == set(range(1, len(items) + 1)), "items are numbered 1..N without gaps"
    cited: dict[int, list[str]] = {}
    for path in CITING:
        for number in cited_items(path.read_text(encoding="utf-8")):
            cited.setdefault(number, []).append(str(path.relative_to(REPO)))
    assert cited, "no file cites docs/protocol.md"
    unknown = {number: files for number, files in cited.items() if number not in items}
    assert unknown == {}, f"citations of items docs/protocol.md lacks: {unknown}"


def test_a_citation_of_a_missing_item_is_found():
    text = "see docs/protocol.md, item 8 and (docs/protocol.md,\n    items 3, 99 and 12)"
    assert cited_items(text) == [8, 3, 99, 12]
    items = documented_items(PROTOCOL_DOC.read_text(encoding="utf-8"))
    assert 99 not in items
