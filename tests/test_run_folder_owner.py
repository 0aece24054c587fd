"""One owner of the run folder: only ``sidu_bench.runner.folder`` names its files or opens them.

Every module of ``sidu`` and ``sidu_bench`` is parsed (as the layering test does):

- no string literal outside ``runner/folder.py`` spells a file name of the run-folder layout
  (docstrings aside; ``items`` and ``figures`` count only as path parts, ``x / "items"``);
- in the modules that handle run folders (the runner, ``tables``, ``report``, ``compare`` and
  the command line) only ``runner/folder.py`` calls a file function (``open``, ``read_csv``,
  ``np.load``, ``read_text``, atomic writes, ...), except the few functions named in
  :data:`OTHER_FILES`, which read or write files that are not a run folder's.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from sidu_bench.runner import folder as folder_module

ROOT = Path(__file__).resolve().parents[1]
OWNER = ROOT / "sidu_bench" / "runner" / "folder.py"
PATH_PARTS = (folder_module.ITEMS_FOLDER, folder_module.FIGURES_FOLDER, folder_module.REPORT_FOLDER)
"""Layout names that are ordinary words: they count only where a path is built with them."""
SPELLED = tuple(name for name in folder_module.FILE_NAMES if name not in PATH_PARTS)
HANDLERS = ("sidu_bench/runner/", "sidu_bench/tables/", "sidu_bench/report.py")
HANDLERS += ("sidu_bench/compare.py", "sidu_bench/cli.py")
"""The modules that deal with run folders (paths relative to the repository)."""
FILE_CALLS = {
    "open",
    "read_csv",
    "load",
    "save",
    "savez",
    "savez_compressed",
    "read_text",
    "read_bytes",
    "write_text",
    "write_bytes",
    "atomic_write_text",
    "atomic_write_bytes",
    "read_json",
    "write_json",
    "glob",
    "rglob",
    "iterdir",
    "unlink",
    "rmtree",
    "mkdir",
}
OTHER_FILES = {
    ("sidu_bench/report.py", "build_report"): "writes the report into its own --out folder",
    ("sidu_bench/report.py", "expand_run_dirs"): "expands the glob patterns of the arguments",
    ("sidu_bench/compare.py", "load_tolerance_file"): "reads the gate's tolerance file",
}
"""Functions of the handling modules that touch files outside any run folder, and why."""


def sources() -> list[Path]:
    return sorted(p for package in ("sidu", "sidu_bench") for p in (ROOT / package).rglob("*.py"))


def docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (module, class, function, attribute)."""
    found = set()
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            statements = getattr(node, field, None)
            for statement in statements if isinstance(statements, list) else ():
                if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
                    found.add(id(statement.value))
    return found


def spelled_names(path: Path) -> list[str]:
    """``line: literal`` for every literal of ``path`` that spells a run-folder file name."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = docstrings(tree)
    found = []
    for node in ast.walk(tree):
        text = node.value if isinstance(node, ast.Constant) and id(node) not in skip else None
        if isinstance(text, str) and any(name in text for name in SPELLED):
            found.append(f"{node.lineno}: {text!r}")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            right = node.right
            if isinstance(right, ast.Constant) and right.value in PATH_PARTS:
                found.append(f"{node.lineno}: / {right.value!r}")
    return sorted(found)


def file_calls(path: Path) -> list[tuple[str, str, int]]:
    """``(enclosing function, called name, line)`` of every file function called in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    calls = []

    def visit(node: ast.AST, function: str) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            function = node.name
        if isinstance(node, ast.Call):
            target = node.func
            name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
            if name in FILE_CALLS:
                calls.append((function, name, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(tree, "<module>")
    return calls


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("path", [p for p in sources() if p != OWNER], ids=relative)
def test_no_other_module_spells_a_run_folder_file_name(path):
    assert spelled_names(path) == []


@pytest.mark.parametrize(
    "path", [p for p in sources() if relative(p).startswith(HANDLERS) and p != OWNER], ids=relative
)
def test_no_other_module_opens_a_run_folder_file(path):
    calls = [
        f"{function}:{line} calls {name}"
        for function, name, line in file_calls(path)
        if (relative(path), function) not in OTHER_FILES
    ]
    assert calls == []


def test_the_owner_uses_every_name_and_the_checks_can_fail(tmp_path):
    owner = OWNER.read_text(encoding="utf-8")
    for name in ("CONFIG_FILE", "RECORDS_FILE", "SKIPPED_FILE", "ITEMS_FOLDER", "RANKS_FOLDER"):
        assert owner.count(name) >= 2, name
    offender = tmp_path / "offender.py"
    offender.write_text(
        '"""A docstring may say records.csv."""\n'
        "import pandas as pd\n\n\n"
        "def read(run_dir):\n"
        '    frame = pd.read_csv(run_dir / "records.csv")\n'
        '    return frame, run_dir / "items", "items"\n'
    )
    assert spelled_names(offender) == ["6: 'records.csv'", "7: / 'items'"]
    assert file_calls(offender) == [("read", "read_csv", 6)]
