"""Hostile explainers: a call that changes the model, or returns no tensor, is an error naming it.

The command-line cases run the real ``evaluate`` (synthetic data set, 64 px, two items) with a
plug-in registered here, ahead of Grad-CAM: they exit 2 naming the plug-in and what changed, and
keep no item. The unit cases check :func:`sidu.backends.weights_fingerprint` against a plain
reference and :mod:`sidu_bench.explainers.model_state`'s phrases one by one.
"""

import re
import sys
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from sidu.backends import weights_fingerprint
from sidu_bench.cli import main
from sidu_bench.explainers import ExplainerSettings, ModelExplainer, NoOptions, get_explainer
from sidu_bench.explainers.model_state import model_state, state_changes
from sidu_bench.explainers.registry import EXPLAINERS, register_explainer
from sidu_bench.models import get_model

pytestmark = pytest.mark.usefixtures("one_thread")

NAME = "sidu_test_hostile"
ADVICE = "; an explainer must leave the model as it found it"


class Hostile(ModelExplainer):
    """Does ``behaviour(model, images)`` and returns what it returns."""

    behaviour: Callable[[nn.Module, torch.Tensor], object] = staticmethod(lambda m, i: None)

    def explain(self, images, targets, item_ids):
        return type(self).behaviour(self.model, images)


def plain_map(images: torch.Tensor) -> torch.Tensor:
    return images.abs().sum(dim=1)


def zero_in_place(model, images):
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
    return plain_map(images)


def zero_through_data(model, images):
    for parameter in model.parameters():
        parameter.data.zero_()
    return plain_map(images)


def train_mode(model, images):
    model.train()
    return plain_map(images)


def leave_hook(model, images):
    model.register_forward_hook(lambda module, inputs, output: output * 0)
    return plain_map(images)


@pytest.fixture
def hostile(monkeypatch):
    """Register :class:`Hostile` as ``sidu_test_hostile`` (unregistered after the test)."""
    monkeypatch.setattr(EXPLAINERS, "_entries", dict(EXPLAINERS._entries))
    cls = register_explainer(NAME)(type("Hostile", (Hostile,), {}))

    def behave(behaviour):
        cls.behaviour = staticmethod(behaviour)

    return behave


def evaluate(out, explainers=f"{NAME},gradcam"):
    return main(
        [
            "evaluate",
            "--explainers",
            explainers,
            "--limit",
            "2",
            "--steps",
            "8",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )


def error_line(err: str) -> str:
    """The one ``error:`` line of stderr (no traceback)."""
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    return line


def assert_no_item_kept(out):
    (run_dir,) = out.iterdir()
    assert not list(run_dir.glob("items/*"))
    assert not (run_dir / "records.csv").exists()


def listed(names: list[str]) -> str:
    """``a, b, c, d and N more``: how the error lists names."""
    more = f" and {len(names) - 4} more" if len(names) > 4 else ""
    return ", ".join(names[:4]) + more


def synthetic_cnn() -> nn.Module:
    """The model ``evaluate`` loads by default for the synthetic data set (a fresh copy)."""
    return get_model("synthetic_cnn").module


def expected_change(behaviour) -> str:
    """What the error must say the behaviour changed, from a fresh copy of the model."""
    model = synthetic_cnn()
    parameters = [f"parameter {name!r}" for name, _ in model.named_parameters()]
    if behaviour is zero_in_place:  # every parameter: the version counters moved
        return f"weights changed: {listed(parameters)}"
    if behaviour is zero_through_data:  # the parameters that were not all zero already
        nonzero = [f"parameter {n!r}" for n, p in model.named_parameters() if p.any()]
        assert len(nonzero) > 4
        return f"weights changed: {listed(nonzero)}"
    if behaviour is train_mode:
        modules = [
            "the model (SyntheticCNN)" if not name else f"module {name!r} ({type(m).__name__})"
            for name, m in model.named_modules()
        ]
        return f"training mode changed (eval -> train): {listed(modules)}"
    assert behaviour is leave_hook
    return "forward hooks left on: the model (SyntheticCNN)"


@pytest.mark.parametrize("behaviour", [zero_in_place, zero_through_data, train_mode, leave_hook])
def test_a_plugin_that_changes_the_model_stops_the_run(hostile, tmp_path, capsys, behaviour):
    hostile(behaviour)
    out = tmp_path / "runs"
    assert evaluate(out) == 2
    line = error_line(capsys.readouterr().err)
    prefix = rf"error: explainer '{NAME}' failed on item '[^']+': RuntimeError: explainer '{NAME}' "
    what = f"changed the model during its call: {expected_change(behaviour)}{ADVICE}"
    assert re.match(prefix + re.escape(what), line), line
    assert_no_item_kept(out)


@pytest.mark.parametrize(
    ("behaviour", "returned"),
    [
        (lambda model, images: plain_map(images).numpy(), "numpy.ndarray"),
        (lambda model, images: None, "None"),
        (lambda model, images: plain_map(images).tolist(), "list"),
    ],
    ids=["numpy", "none", "list"],
)
def test_a_plugin_that_returns_no_tensor_stops_the_run(
    hostile, tmp_path, capsys, behaviour, returned
):
    hostile(behaviour)
    out = tmp_path / "runs"
    assert evaluate(out) == 2
    line = error_line(capsys.readouterr().err)
    prefix = rf"error: explainer '{NAME}' failed on item '[^']+': TypeError: "
    what = f"explainer '{NAME}' returned {returned}, expected a torch.Tensor of shape (1, 64, 64)"
    assert re.fullmatch(prefix + re.escape(what), line), line
    assert_no_item_kept(out)


def test_a_plugin_that_raises_anything_is_named(hostile, tmp_path, capsys):
    def broken(model, images):
        return {}["no such key"]

    hostile(broken)
    out = tmp_path / "runs"
    assert evaluate(out) == 2
    line = error_line(capsys.readouterr().err)
    assert re.fullmatch(
        rf"error: explainer '{NAME}' failed on item '[^']+': KeyError: 'no such key'", line
    ), line
    assert_no_item_kept(out)


def test_the_item_computed_before_the_damage_is_not_kept(hostile, tmp_path, capsys):
    hostile(zero_through_data)
    out = tmp_path / "runs"
    assert evaluate(out, f"gradcam,{NAME}") == 2
    assert f"RuntimeError: explainer '{NAME}' changed the model" in capsys.readouterr().err
    assert_no_item_kept(out)


def test_a_plugin_that_undoes_its_changes_passes(hostile, tmp_path, capsys):
    def tidy(model, images):
        handle = model.register_forward_hook(lambda module, inputs, output: output)
        try:
            with torch.no_grad():
                model(images)
        finally:
            handle.remove()
        model.train()  # no forward in train mode: batch norm would update its statistics
        model.eval()
        return plain_map(images)

    hostile(tidy)
    out = tmp_path / "runs"
    assert evaluate(out) == 0, capsys.readouterr().err
    (run_dir,) = out.iterdir()
    assert len(list(run_dir.glob("items/*"))) == 2


# -- unit cases: the fingerprint and the phrases -------------------------------------------------

_INTS = {1: np.uint8, 2: np.int16, 4: np.int32, 8: np.int64}


def reference_fingerprint(model: nn.Module) -> tuple:
    """Plain NumPy/Python: per tensor (pointer, version, shape, dtype, wrapped bit-pattern sum)."""
    entries = []
    for tensor in [*model.parameters(), *model.buffers()]:
        array = tensor.detach().cpu().numpy()
        if np.iscomplexobj(array):
            array = array.view(np.float32 if array.dtype == np.complex64 else np.float64)
        bits = 32 if array.itemsize == 4 else 64
        total = sum(int(value) for value in array.view(_INTS[array.itemsize]).ravel())
        total = (total + 2 ** (bits - 1)) % 2**bits - 2 ** (bits - 1)
        entries.append(
            (tensor.data_ptr(), tensor._version, tuple(tensor.shape), tensor.dtype, total)
        )
    return tuple(entries)


def odd_model() -> nn.Module:
    """Parameters and buffers of every element size, with NaN, -0.0 and wrapping sums."""
    torch.manual_seed(0)
    model = nn.Linear(300, 40)
    with torch.no_grad():
        model.weight.mul_(1e30)  # large bit patterns: the int32 sum wraps
        model.bias[0] = float("nan")
        model.bias[1] = -0.0
        model.bias[2] = 0.5  # 0.5 + 1 - 1 == 0.5 exactly
    model.half_weight = nn.Parameter(torch.randn(5, 3).half())
    model.register_buffer("steps", torch.tensor([2**62, 2**62, 2**62, -7]))  # int64 wraps
    model.register_buffer("doubles", torch.randn(4, dtype=torch.float64).t())
    model.register_buffer("flags", torch.tensor([True, False, True]))
    model.register_buffer("phases", torch.randn(3, dtype=torch.complex64))
    model.register_buffer("transposed", torch.randn(6, 4).t())  # not contiguous
    model.register_buffer("empty", torch.zeros(0))
    return model


def test_weights_fingerprint_matches_a_plain_reference():
    model = odd_model()
    assert weights_fingerprint(model) == reference_fingerprint(model)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert weights_fingerprint(model) == reference_fingerprint(model)
    finally:
        torch.set_num_threads(threads)
    assert weights_fingerprint(nn.ReLU()) == ()


def test_weights_fingerprint_sees_every_way_of_changing_a_weight():
    model = odd_model()
    before = weights_fingerprint(model)
    model.bias.data[2] += 1.0  # through .data: only the bit sum moves
    after = weights_fingerprint(model)
    assert [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b] == [1]
    assert after[1][:4] == before[1][:4]
    assert after == reference_fingerprint(model)
    with torch.no_grad():
        model.bias[2] -= 1.0  # the same values again, but the version counter moved: a change
    assert weights_fingerprint(model)[1][4] == before[1][4]
    assert weights_fingerprint(model)[1][1] > before[1][1]
    model.weight = nn.Parameter(model.weight.detach().clone())  # same values, new storage
    assert weights_fingerprint(model)[0][0] != before[0][0]
    assert weights_fingerprint(model)[0][4] == before[0][4]


def test_weights_fingerprint_of_inference_tensors():
    with torch.inference_mode():
        model = nn.Linear(3, 2)
    (weight, _) = weights_fingerprint(model)
    assert weight[1] is None
    assert weights_fingerprint(model) == weights_fingerprint(model)


class Direct(ModelExplainer):
    """A plain explainer called directly; ``act(model)`` runs inside the call."""

    name = "sidu_test_direct"

    def __init__(self, model, act=lambda model: None, result=None):
        super().__init__(model, options=NoOptions(), settings=ExplainerSettings())
        self.act, self.result = act, result

    def explain(self, images, targets, item_ids):
        self.act(self.model)
        return plain_map(images) if self.result is None else self.result(images)


def small_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 2, 3, padding=1),
        nn.BatchNorm2d(2),
        nn.Dropout(),
        nn.Flatten(),
        nn.Linear(2 * 4 * 4, 3),
    ).eval()


IMAGES = torch.randn(1, 3, 4, 4)
TARGETS = torch.tensor([1])


def direct_error(act, model=None) -> str:
    with pytest.raises(RuntimeError) as caught:
        Direct(small_model() if model is None else model, act)(IMAGES, TARGETS, ["a"])
    message = str(caught.value)
    prefix = "explainer 'sidu_test_direct' changed the model during its call: "
    assert message.startswith(prefix), message
    assert ADVICE in message, message
    return message[len(prefix) : message.index(ADVICE)]


def backward(model):
    model(IMAGES)[0, 1].backward()


def replace_module(model):
    model[2] = nn.Identity().eval()


def replace_forward(model):
    model[4].forward = lambda x: torch.zeros(x.shape[0], 3)


def train_batch_norm(model):
    model[1].train()
    model(IMAGES)


def global_hook(model):
    torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: None)


def tensor_hook(model):
    model[4].bias.register_hook(lambda grad: grad * 0)


def full_backward_hook(model):
    model[0].register_full_backward_hook(lambda module, grad_in, grad_out: None)


def pre_hooks(model):
    model[0].register_forward_pre_hook(lambda module, inputs: None)
    model[1].register_forward_pre_hook(lambda module, inputs: None)
    model[1].register_forward_pre_hook(lambda module, inputs: None)


@pytest.mark.parametrize(
    ("act", "expected"),
    [
        (
            backward,
            ".grad written: parameter '0.weight', parameter '0.bias', "
            "parameter '1.weight', parameter '1.bias' and 2 more",
        ),
        (replace_module, "modules replaced: module '2' (Dropout) -> Identity"),
        (replace_forward, "forward replaced: module '4' (Linear)"),
        (
            train_batch_norm,
            "weights changed: buffer '1.running_mean', buffer '1.running_var', "
            "buffer '1.num_batches_tracked'; training mode changed (eval -> train): "
            "module '1' (BatchNorm2d)",
        ),
        (global_hook, "global forward hooks left on: every module (global)"),
        (tensor_hook, "tensor hooks left on: parameter '4.bias'"),
        (full_backward_hook, "backward hooks left on: module '0' (Conv2d)"),
        (
            pre_hooks,
            "forward-pre hooks left on: module '0' (Conv2d), module '1' (BatchNorm2d) (2)",
        ),
    ],
    ids=lambda value: getattr(value, "__name__", None),
)
def test_each_change_is_named(act, expected):
    hooks = dict(torch.nn.modules.module._global_forward_hooks)
    try:
        assert direct_error(act) == expected
    finally:
        torch.nn.modules.module._global_forward_hooks.clear()
        torch.nn.modules.module._global_forward_hooks.update(hooks)


def test_a_removed_user_hook_is_named_and_kept_hooks_are_not():
    model = small_model()
    kept = model[0].register_forward_hook(lambda module, inputs, output: None)
    model[1].register_forward_hook(lambda module, inputs, output: None)
    maps = Direct(model)(IMAGES, TARGETS, ["a"])
    torch.testing.assert_close(maps, plain_map(IMAGES))
    assert direct_error(lambda m: kept.remove(), model) == (
        "forward hooks removed from: module '0' (Conv2d)"
    )


def test_builtin_explainers_leave_no_change_and_the_model_mode_is_kept():
    model = small_model().train()
    model[1].eval()
    before = model_state(model)
    for spec in ("gradcam", "scorecam", "rise:masks=8", "sidu", "center", "random"):
        get_explainer(spec, model, "0")(IMAGES, TARGETS, ["a"])
    assert state_changes(before, model_state(model)) == []


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception notes: Python 3.11+")
def test_an_error_of_the_explainer_comes_first_with_a_note_on_the_change():
    def damage_then_fail(model):
        model[4].bias.data.zero_()
        raise ValueError("the plug-in's own error")

    with pytest.raises(ValueError, match="the plug-in's own error") as caught:
        Direct(small_model(), damage_then_fail)(IMAGES, TARGETS, ["a"])
    assert caught.value.__notes__ == [
        "explainer 'sidu_test_direct' also changed the model during its call: "
        "weights changed: parameter '4.bias'"
    ]


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (
            lambda images: plain_map(images).to(torch.complex64),
            "returned a tensor of dtype torch.complex64, expected real numbers (a floating-point "
            "tensor)",
        ),
        (
            lambda images: plain_map(images) > 0,
            "returned a tensor of dtype torch.bool, expected real numbers (a floating-point "
            "tensor)",
        ),
        (
            lambda images: plain_map(images).to_sparse(),
            "returned a torch.sparse_coo tensor, expected a dense (torch.strided) tensor",
        ),
        (
            lambda images: plain_map(images).numpy(),
            "returned numpy.ndarray, expected a torch.Tensor of shape (1, 4, 4)",
        ),
    ],
    ids=["complex", "bool", "sparse", "numpy"],
)
def test_maps_of_the_wrong_type_name_the_explainer(result, message):
    explainer = Direct(small_model(), result=result)
    with pytest.raises(TypeError) as caught:
        explainer(IMAGES, TARGETS, ["a"])
    assert str(caught.value) == f"explainer 'sidu_test_direct' {message}"


def test_integer_maps_are_accepted_as_float32():
    maps = Direct(small_model(), result=lambda images: torch.ones(1, 4, 4, dtype=torch.int64))
    assert maps(IMAGES, TARGETS, ["a"]).dtype == torch.float32
