"""The one registry type and its "did you mean" message, and the registries built on it."""

from __future__ import annotations

import pytest

from sidu_bench.bench import BENCH_MODELS
from sidu_bench.data.registry import DATASETS
from sidu_bench.explainers.registry import EXPLAINERS
from sidu_bench.models import MODELS
from sidu_bench.registry import (
    LISTED_NAMES,
    Registry,
    closest_names,
    did_you_mean,
    unknown_name_message,
)


def test_register_get_find_list_and_unregister():
    colours = Registry[int]("colour")
    assert colours.register("red", 1) == 1
    colours.register("blue", 2)
    assert colours.get("red") == 1
    assert colours.find("blue") == 2
    assert colours.find("green") is None
    assert colours.names() == list(colours) == ["blue", "red"]
    assert ("red" in colours, "green" in colours, len(colours)) == (True, False, 2)
    assert colours.unregister("red") == 1
    assert colours.names() == ["blue"]
    with pytest.raises(ValueError, match="unknown colour 'red'"):
        colours.unregister("red")


def test_a_taken_or_empty_name_is_refused_and_nothing_changes():
    colours = Registry[int]("colour")
    colours.register("red", 1)
    with pytest.raises(ValueError, match="colour 'red' is already registered"):
        colours.register("red", 2)
    with pytest.raises(ValueError, match="colour name must be a non-empty string, got ''"):
        colours.register("", 3)
    assert (colours.get("red"), len(colours)) == (1, 1)


def test_unknown_name_lists_close_and_containing_names_then_the_known_ones():
    known = ["efficientnet_lite0", "efficientnet_lite1", "resnet18", "synthetic_cnn"]
    assert closest_names("resnet81", known) == ["resnet18"]
    assert closest_names("LITE", known) == ["efficientnet_lite0", "efficientnet_lite1"]
    assert closest_names("zzz", known) == []
    assert unknown_name_message("model", "resnet81", known) == (
        "unknown model 'resnet81'; did you mean 'resnet18'? "
        "(known: efficientnet_lite0, efficientnet_lite1, resnet18, synthetic_cnn)"
    )
    assert unknown_name_message("model", "zzz", ["b", "a", "a"]) == (
        "unknown model 'zzz' (known: a, b)"
    )


def test_many_known_names_are_counted_not_listed():
    many = [f"name{i:03d}" for i in range(LISTED_NAMES + 1)]
    message = unknown_name_message("weights", "nothing", many)
    assert message == f"unknown weights 'nothing' (known: {LISTED_NAMES + 1} names)"
    assert unknown_name_message("weights", "x", many[:LISTED_NAMES]).endswith("name019)")


def test_did_you_mean_is_empty_without_a_close_name():
    assert did_you_mean("mask", ["cells", "masks", "p"]) == "; did you mean 'masks'?"
    assert did_you_mean("qq", ["cells", "masks"]) == ""


@pytest.mark.parametrize(
    ("registry", "kind", "close", "typo"),
    [
        (DATASETS, "data set", "caltech101", "caltech"),
        (MODELS, "model", "synthetic_cnn", "synthetic_cn"),
        (EXPLAINERS, "explainer", "gradcam", "gradcma"),
        (BENCH_MODELS, "bench model", "resnet18", "resnet81"),
    ],
)
def test_every_registry_is_the_one_type_with_the_one_message(registry, kind, close, typo):
    assert isinstance(registry, Registry)
    assert registry.kind == kind
    assert close in registry
    with pytest.raises(ValueError, match=f"unknown {kind} '{typo}'") as error:
        registry.get(typo)
    assert str(error.value) == unknown_name_message(kind, typo, registry.names())
    assert f"did you mean '{close}'" in str(error.value)
