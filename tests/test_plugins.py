"""Plug-ins: ``--import`` and entry points for evaluate/list, bad plug-ins, provenance."""

import csv
import hashlib
import re
import sys
import textwrap
from importlib import metadata

import pytest
import torch

from sidu_bench import cli, plugins
from sidu_bench.data.registry import DATASETS
from sidu_bench.explainers import get_explainer, list_explainers
from sidu_bench.explainers.registry import EXPLAINERS
from sidu_bench.models import MODELS

PLUGIN = '''
"""A plug-in explainer: gradient x input (the README's example)."""
from dataclasses import dataclass

import torch

from sidu_bench.explainers import ModelExplainer, register_explainer


@dataclass(frozen=True)
class Options:
    power: float = 1.0


{decorator}
class GradXInput(ModelExplainer):
    """Gradient x input, absolute values summed over channels."""

    options_type = Options

    def explain(self, images, targets, item_ids):
        with torch.inference_mode(False), torch.enable_grad():
            x = images.detach().clone().requires_grad_(True)
            score = self.model(x).gather(1, targets[:, None].clone()).sum()
            (grad,) = torch.autograd.grad(score, x)
        maps = (grad * x).detach().abs().sum(dim=1) ** self.options.power
        {broken}
        return maps
'''
pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--device", "cpu", "--backend", "torch", "--limit", "2", "--steps", "4"]


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """Fresh copies of the registries and the loaded-plug-in table; plug-in folder on sys.path."""
    for registry in (EXPLAINERS, MODELS, DATASETS):
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    monkeypatch.setattr(plugins, "_LOADED", {})
    folder = tmp_path / "plugins"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    before = set(sys.modules)
    yield folder
    for name in set(sys.modules) - before:
        if name.startswith("sidu_test_"):
            del sys.modules[name]


def write_plugin(folder, module, *, name="myplugin", broken="", decorator=None):
    """Write ``module``.py registering the gradient x input explainer as ``name``."""
    decorator = f"@register_explainer({name!r})" if decorator is None else decorator
    text = PLUGIN.format(decorator=decorator, broken=broken)
    (folder / f"{module}.py").write_text(textwrap.dedent(text), encoding="utf-8")


def rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def run_evaluate(out, *extra):
    return cli.main(["evaluate", *TINY, "--out", str(out), *extra])


def test_imported_plugin_is_listed_and_evaluated_beside_the_builtins(isolated, tmp_path, capsys):
    write_plugin(isolated, "sidu_test_imported")
    assert cli.main(["list", "--import", "sidu_test_imported"]) == 0
    listed = capsys.readouterr().out
    assert "myplugin" in listed.split("explainers:")[1].splitlines()[0]
    out = tmp_path / "runs"
    code = run_evaluate(
        out, "--import", "sidu_test_imported", "--explainers", "myplugin:power=2,center"
    )
    assert code == 0, capsys.readouterr().err
    (records,) = out.glob("*/records.csv")
    labels = [row["explainer"] for row in rows(records)]
    assert sorted(labels) == ["center", "center", "myplugin:power=2.0", "myplugin:power=2.0"]
    summary = rows(records.parent / "summary.csv")
    assert "myplugin:power=2.0" in {row["explainer"] for row in summary}
    auc = [float(r["deletion_auc"]) for r in rows(records) if r["explainer"] != "center"]
    assert all(0.0 <= value <= 1.0 for value in auc)


def test_plugin_maps_are_the_plugins_numbers(isolated):
    write_plugin(isolated, "sidu_test_numbers")
    plugins.load_plugins(["sidu_test_numbers"])
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.Tanh(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 5 * 5, 3),
    ).double()
    images = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    maps = get_explainer("myplugin", model)(images, torch.tensor([1, 2]), ["a", "b"])
    for index, target in enumerate((1, 2)):
        x = images[index : index + 1].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(x)[0, target], x)
        expected = sum((grad[0, c] * x[0, c]).abs() for c in range(3))
        torch.testing.assert_close(maps[index], expected.detach().float())


def fake_entry_points(monkeypatch, table):
    """Replace ``importlib.metadata.entry_points`` with ``{group: [(name, value), ...]}``."""

    def entry_points(*, group):
        return [metadata.EntryPoint(n, v, group) for n, v in table.get(group, [])]

    monkeypatch.setattr(metadata, "entry_points", entry_points)


def test_entry_point_plugin_is_listed_and_evaluated(isolated, monkeypatch, tmp_path, capsys):
    write_plugin(isolated, "sidu_test_entry")
    fake_entry_points(monkeypatch, {"sidu_bench.explainers": [("mine", "sidu_test_entry")]})
    assert cli.main(["list"]) == 0
    assert "myplugin" in capsys.readouterr().out
    out = tmp_path / "runs"
    assert run_evaluate(out, "--explainers", "myplugin,center") == 0, capsys.readouterr().err
    (records,) = out.glob("*/records.csv")
    assert sorted({row["explainer"] for row in rows(records)}) == ["center", "myplugin"]
    assert "myplugin" in {row["explainer"] for row in rows(records.parent / "summary.csv")}
    (plugin,) = plugins.loaded_plugins()
    assert (plugin.kind, plugin.name, plugin.group) == (
        "entry point",
        "mine",
        "sidu_bench.explainers",
    )


def test_entry_point_class_function_model_and_data_set(isolated, monkeypatch, capsys):
    write_plugin(isolated, "sidu_test_classes", decorator="")
    (isolated / "sidu_test_more.py").write_text(
        textwrap.dedent(
            """
            import dataclasses

            from sidu_bench.data import register_dataset
            from sidu_bench.data.synthetic import SyntheticShapes
            from sidu_bench.models import register_model, synthetic_cnn


            def register():
                @register_model("plugin_cnn")
                def plugin_cnn(*, checkpoint=None):
                    spec = synthetic_cnn.synthetic_cnn(checkpoint=checkpoint)
                    return dataclasses.replace(spec, name="plugin_cnn")

            register_dataset("plugin_shapes")(SyntheticShapes)
            """
        ),
        encoding="utf-8",
    )
    fake_entry_points(
        monkeypatch,
        {
            "sidu_bench.explainers": [("gxi", "sidu_test_classes:GradXInput")],
            "sidu_bench.models": [("cnn", "sidu_test_more:register")],
            "sidu_bench.datasets": [("shapes", "sidu_test_more")],
        },
    )
    assert cli.main(["list"]) == 0
    listed = {line.split(":")[0].strip(): line for line in capsys.readouterr().out.splitlines()}
    assert "gxi" in listed["explainers"]
    assert "plugin_cnn" in listed["models"]
    assert "plugin_shapes" in listed["data sets"]
    # idempotent: loading again neither re-registers nor fails
    assert len(plugins.load_plugins()) == 3


def test_provenance_of_builtin_captum_and_local_plugin(isolated):
    write_plugin(isolated, "sidu_test_provenance")
    plugins.load_plugins(["sidu_test_provenance"])
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 2))
    record = plugins.provenance(get_explainer("myplugin:power=3", model))
    path = isolated / "sidu_test_provenance.py"
    assert record == {
        "label": "myplugin:power=3.0",
        "name": "myplugin",
        "class": "sidu_test_provenance.GradXInput",
        "options": {"power": 3.0},
        "source": "--import sidu_test_provenance",
        "package": None,
        "version": None,
        "file": str(path.resolve()),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    builtin = plugins.provenance(get_explainer("rise:masks=10", model))
    assert builtin["source"] == "built-in"
    assert builtin["options"] == {"masks": 10, "cells": 7, "p": 0.5}
    assert (builtin["package"], builtin["version"]) == (
        "sidu-bench",
        metadata.version("sidu-bench"),
    )
    with pytest.raises(TypeError, match="must be an Explainer"):
        plugins.provenance(model)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "import not_a_module_anywhere\n",
            re.escape("module 'sidu_test_bad' (--import) failed to import: ModuleNotFoundError"),
        ),
        (
            "raise RuntimeError('boom')\n",
            r"failed to import: RuntimeError: boom \(at .*sidu_test_bad.py:1\)",
        ),
    ],
)
def test_import_error_names_the_plugin(isolated, capsys, source, message):
    (isolated / "sidu_test_bad.py").write_text(source, encoding="utf-8")
    assert cli.main(["list", "--import", "sidu_test_bad"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert re.search(message, err), err


def test_missing_module_and_file_path_are_explained(isolated, capsys):
    assert cli.main(["list", "--import", "sidu_test_nowhere"]) == 2
    assert "plug-in module 'sidu_test_nowhere' (--import) not found on sys.path" in (
        capsys.readouterr().err
    )
    assert cli.main(["list", "--import", "plugins/mine.py"]) == 2
    assert "--import expects module names" in capsys.readouterr().err


def test_failing_entry_point_names_the_entry_point(isolated, monkeypatch, capsys):
    (isolated / "sidu_test_ep.py").write_text("def register():\n    raise KeyError('x')\n")
    fake_entry_points(monkeypatch, {"sidu_bench.models": [("bad", "sidu_test_ep:register")]})
    assert cli.main(["list"]) == 2
    err = capsys.readouterr().err
    assert "plug-in entry point 'bad' = 'sidu_test_ep:register' (group sidu_bench.models" in err
    assert "failed in its registration function: KeyError" in err
    fake_entry_points(monkeypatch, {"sidu_bench.models": [("bad", "sidu_test_ep:missing")]})
    assert cli.main(["list"]) == 2
    assert "failed to load: AttributeError" in capsys.readouterr().err


def test_duplicate_name_names_the_plugin(isolated, capsys):
    write_plugin(isolated, "sidu_test_duplicate", name="rise")
    assert cli.main(["list", "--import", "sidu_test_duplicate"]) == 2
    err = capsys.readouterr().err
    assert "plug-in module 'sidu_test_duplicate' (--import) failed to import" in err
    assert "explainer 'rise' is already registered" in err


def test_unknown_option_of_a_plugin(isolated, tmp_path, capsys):
    write_plugin(isolated, "sidu_test_option")
    code = run_evaluate(
        tmp_path / "runs", "--import", "sidu_test_option", "--explainers", "myplugin:powr=2"
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown option 'powr' for 'myplugin'; did you mean 'power'?" in err
    assert not list((tmp_path / "runs").glob("*/records.csv"))


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (
            "maps = maps[:, 1:]",
            r"explainer 'myplugin' returned shape \(1, 63, 64\), expected \(1, 64, 64\)",
        ),
        ("maps = maps * float('nan')", "explainer 'myplugin' returned a non-finite map for item"),
    ],
)
def test_broken_maps_stop_the_run_without_a_half_item(isolated, tmp_path, capsys, broken, message):
    write_plugin(isolated, "sidu_test_broken", broken=broken)
    out = tmp_path / "runs"
    code = run_evaluate(out, "--import", "sidu_test_broken", "--explainers", "center,myplugin")
    assert code == 2
    assert re.search(message, capsys.readouterr().err)
    (run_dir,) = out.iterdir()
    assert not list(run_dir.glob("items/*"))
    assert not (run_dir / "records.csv").exists()


def test_options_accept_strings_and_enums(isolated, tmp_path):
    (isolated / "sidu_test_enum.py").write_text(
        textwrap.dedent(
            """
            from dataclasses import dataclass
            from typing import Literal

            from sidu_bench.explainers import Explainer, register_explainer


            @dataclass(frozen=True)
            class Options:
                mode: Literal["fast", "exact"] = "fast"
                tag: str = "none"


            @register_explainer("sidu_test_enum")
            class Constant(Explainer):
                options_type = Options

                def explain(self, images, targets, item_ids):
                    return images[:, 0] * 0 + (1.0 if self.options.mode == "exact" else 2.0)
            """
        ),
        encoding="utf-8",
    )
    plugins.load_plugins(["sidu_test_enum"])
    explainer = get_explainer("sidu_test_enum:tag=v2,mode=exact")
    assert explainer.label == "sidu_test_enum:mode=exact,tag=v2"
    assert float(explainer(torch.zeros(1, 3, 2, 2), torch.tensor([0]), ["a"]).max()) == 1.0
    with pytest.raises(ValueError, match=r"option 'mode' expects one of fast, exact, got 'slow'"):
        get_explainer("sidu_test_enum:mode=slow")
    with pytest.raises(ValueError, match="expects a word without"):
        get_explainer("sidu_test_enum:tag=a:b")
    assert "sidu_test_enum" in list_explainers()
