"""The explainer registry: listing, spec parsing, canonical labels and errors."""

import dataclasses

import pytest
import torch
from sidu_models import tiny_cnn

from sidu_bench.explainers import (
    Explainer,
    ExplainerSpec,
    get_explainer,
    list_explainers,
    parse_spec,
    register_explainer,
)
from sidu_bench.explainers.gradcam import GradCAM
from sidu_bench.explainers.rise import RISE, RISEOptions
from sidu_bench.explainers.sidu_explainer import SIDUExplainer


def test_list_explainers_is_the_documented_set():
    builtins = [n for n in list_explainers() if not n.startswith("captum.")]
    assert builtins == ["center", "gradcam", "random", "rise", "scorecam", "sidu"]
    assert [n for n in list_explainers() if n.startswith("captum.")] == [
        "captum.DeepLift",
        "captum.GuidedBackprop",
        "captum.InputXGradient",
        "captum.IntegratedGradients",
        "captum.LayerGradCam",
        "captum.Occlusion",
        "captum.Saliency",
        "captum.SmoothGrad",
    ]


@pytest.mark.parametrize("name", ["center", "gradcam", "random", "rise", "scorecam", "sidu"])
def test_every_entry_parses_bare(name):
    spec = parse_spec(name)
    assert spec.name == name
    assert spec.label == name


def test_rise_defaults_are_torchray_defaults():
    assert parse_spec("rise").options == RISEOptions(masks=8000, cells=7, p=0.5)


@pytest.mark.parametrize(
    ("spec", "label"),
    [
        ("rise:masks=1000", "rise:masks=1000"),
        ("rise:p=0.25,masks=1000", "rise:masks=1000,p=0.25"),
        (" rise : masks = 1000 , cells = 5 ", "rise:cells=5,masks=1000"),
        ("rise:masks=8000", "rise"),
        ("rise:masks=+0100", "rise:masks=100"),
        ("rise:p=1", "rise:p=1.0"),
        ("rise:p=1e-3", "rise:p=0.001"),
        ("sidu:threshold=0.5", "sidu:threshold=0.5"),
        ("sidu:threshold=0.10", "sidu"),
        ("sidu:kernel_width=0.1,threshold=0", "sidu:kernel_width=0.1,threshold=0.0"),
    ],
)
def test_canonical_label_and_round_trip(spec, label):
    parsed = parse_spec(spec)
    assert parsed.label == label
    again = parse_spec(parsed.label)
    assert again == parsed
    assert again.label == label


def test_options_are_typed():
    options = parse_spec("rise:masks=1000,cells=5,p=0.25").options
    assert (options.masks, options.cells, options.p) == (1000, 5, 0.25)
    assert type(options.masks) is int
    assert type(options.p) is float
    assert type(parse_spec("sidu:threshold=1").options.threshold) is float


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("rsie", r"unknown explainer 'rsie'; did you mean 'rise'"),
        ("grad-cam", r"did you mean 'gradcam'"),
        ("nothing", r"unknown explainer 'nothing' \(known: captum\.DeepLift, .*center, gradcam"),
        (
            "rise:mask=10",
            r"unknown option 'mask' for 'rise'; did you mean 'masks'.*cells, masks, p",
        ),
        ("rise:foo=1", r"valid options: cells, masks, p"),
        ("gradcam:masks=5", r"valid options: none"),
        ("rise:masks=1e3", r"rise option 'masks' expects an integer, got '1e3'"),
        ("rise:masks=ten", r"expects an integer"),
        ("rise:p=half", r"rise option 'p' expects a number, got 'half'"),
        ("rise:p=nan", r"expects a finite number"),
        ("rise:p=0", r"p must be in \(0, 1\]"),
        ("rise:p=1.5", r"p must be in \(0, 1\]"),
        ("rise:masks=0", r"masks must be >= 1"),
        ("rise:cells=-1", r"cells must be >= 1"),
        ("rise:masks", r"'masks' is not key=value"),
        ("rise:masks=", r"is not key=value"),
        ("rise:", r"'' is not key=value"),
        ("rise:masks=10,", r"'' is not key=value"),
        ("rise:masks=10,masks=20", r"option 'masks' is given twice"),
        ("sidu:kernel_width=0", r"kernel_width must be a number > 0"),
    ],
)
def test_spec_errors_are_clear(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_spec(spec)


def test_get_explainer_builds_the_registered_class_with_its_settings():
    model = tiny_cnn(seed=0, dtype=torch.float32)
    explainer = get_explainer(
        "rise:masks=500", model, "3", seed=7, dtype=torch.bfloat16, batch_size=32
    )
    assert isinstance(explainer, RISE)
    assert explainer.label == "rise:masks=500"
    assert (explainer.settings.seed, explainer.settings.dtype) == (7, torch.bfloat16)
    assert explainer.settings.batch_size == 32
    assert explainer.model is model
    assert isinstance(
        get_explainer(ExplainerSpec("gradcam", parse_spec("gradcam").options), model, model[3]),
        GradCAM,
    )
    sidu = get_explainer("sidu:threshold=0.3", model, "3")
    assert isinstance(sidu, SIDUExplainer)
    assert sidu.layer is model[3]
    assert sidu._sidu_options.threshold == 0.3


def test_get_explainer_errors():
    model = tiny_cnn(seed=0, dtype=torch.float32)
    with pytest.raises(ValueError, match="'gradcam' needs a layer"):
        get_explainer("gradcam", model)
    with pytest.raises(ValueError, match="'rise:masks=10' needs a model"):
        get_explainer("rise:masks=10")
    with pytest.raises(ValueError, match=r"layer 'layer4' is not a module of the model"):
        get_explainer("scorecam", model, "layer4")
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        get_explainer("rise", model, batch_size=0)
    with pytest.raises(ValueError, match="dtype must be None"):
        get_explainer("center", dtype=torch.int8)
    with pytest.raises(TypeError, match="option 'masks' of RISEOptions must be int"):
        get_explainer(ExplainerSpec("rise", RISEOptions(masks=10.5)), model)


def test_register_explainer_rejects_bad_entries():
    with pytest.raises(ValueError, match="already registered"):
        register_explainer("rise")(RISE)
    with pytest.raises(ValueError, match="name must be non-empty"):
        register_explainer("a:b")
    with pytest.raises(TypeError, match="expects an Explainer subclass"):
        register_explainer("not-an-explainer")(object)

    @dataclasses.dataclass(frozen=True)
    class NoDefault:
        value: int

    class Broken(Explainer):
        options_type = NoDefault

        def explain(self, images, targets, item_ids):
            return images[:, 0]

    with pytest.raises(TypeError, match="must have a default"):
        register_explainer("broken")(Broken)
    assert "broken" not in list_explainers()


@pytest.mark.parametrize(
    ("targets", "item_ids", "error", "message"),
    [
        (torch.tensor([0]), ["a", "b"], ValueError, r"targets must be a \[2\] integer tensor"),
        (torch.tensor([0.0, 1.0]), ["a", "b"], TypeError, "must be an integer tensor"),
        (torch.tensor([0, 1]), ["a"], ValueError, "item_ids must be a sequence of 2 strings"),
        (torch.tensor([0, 1]), "ab", ValueError, "item_ids must be a sequence of 2 strings"),
        (torch.tensor([0, 1]), ["a", 2], TypeError, "item_ids must be strings"),
        (torch.tensor([0, 9]), ["a", "b"], ValueError, r"outside \[0, 5\)"),
    ],
)
def test_call_validation(targets, item_ids, error, message):
    explainer = get_explainer("scorecam", tiny_cnn(seed=0, dtype=torch.float32), "3")
    with pytest.raises(error, match=message):
        explainer(torch.rand(2, 3, 8, 8), targets, item_ids)


def test_images_must_match_the_model():
    explainer = get_explainer("gradcam", tiny_cnn(seed=0, dtype=torch.float32), "3")
    with pytest.raises(ValueError, match="model's first layer expects 3"):
        explainer(torch.rand(1, 1, 8, 8), torch.tensor([0]), ["a"])
    with pytest.raises(TypeError, match=r"model's parameters are torch\.float32"):
        explainer(torch.rand(1, 3, 8, 8, dtype=torch.float64), torch.tensor([0]), ["a"])
