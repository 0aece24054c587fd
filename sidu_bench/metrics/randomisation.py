"""Cascading model-parameter randomisation for the sanity checks (:mod:`.sanity`).

:func:`randomised_models` builds the sequence of models that the model-randomisation tests
(Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018; Hedström et al., "Sanity
Checks Revisited", 2023) explain each item under, exactly as Quantus 0.6 does
(``PyTorchModel.get_random_layer_generator(order="top_down", seed=seed)``), so that the numbers
compare:

* the model is deep-copied once; the **layers** are its modules that have a
  ``reset_parameters`` method (convolutions, linear layers, normalisation layers, BatchNorm
  included: its reset sets weight 1, bias 0, running mean 0 and running variance 1), in
  ``named_modules()`` order, the model itself included when it has one;
* **top-down**: the layers are randomised from the output to the input (the reverse of that
  order), **cascading**: nothing is restored between steps, so step ``k`` randomises the last
  ``k`` layers;
* **seeding**: before *each* ``reset_parameters()`` call the CPU generator is seeded with
  ``seed + 1`` (Quantus: ``torch.manual_seed(seed=self.seed + 1)``, default ``seed=42``). Each
  layer therefore gets the same weights whatever order the layers are reset in, and the fully
  randomised model (the last step) is the same top-down, bottom-up or by blocks. The runner
  passes the run's ``seed`` (``ScoringSettings.seed``): Quantus with ``seed=<run seed>`` draws
  the same weights.

``granularity="block"`` takes one *block* per step instead of one layer: the model's declared
blocks (:attr:`sidu_bench.models.ModelSpec.blocks`: a dotted module name, or several joined by
``+`` for a stage that is not one module), from the last to the first. A step resets every
resettable module inside its block in the same reverse ``named_modules()`` order, the generator
seeded with ``seed + 1`` before each reset, as above; so after the last block the model equals the
layer sequence's last model. The blocks must cover every resettable module, once.

The randomisation runs on the CPU (the weights do not depend on the device and equal Quantus's
on the CPU); each step's model is then moved to the original model's device. The caller's model,
its modes and hooks are never touched, and the random state is restored on return
(:func:`torch.random.fork_rng`; only the CPU generator is seeded, never CUDA's). Each step's
model keeps the original's training flags and hooks as :func:`copy.deepcopy` copies them.

What stays as it is: parameters that no ``reset_parameters`` reaches keep their trained values
at every step, as in Quantus. In torchvision these are the plain ``nn.Parameter`` attributes of
a module without ``reset_parameters``: a ViT's ``class_token`` and ``encoder.pos_embedding``, its
attention's ``in_proj_weight``/``in_proj_bias`` (``nn.MultiheadAttention`` has only a private
``_reset_parameters``), ConvNeXt's ``layer_scale``, Swin's ``relative_position_bias_table``;
:attr:`RandomisedModels.untouched` lists them and a warning names them. Buffers outside a
resettable module stay too.

Memory: every step is a model object of its own (so an explainer, its hooks and its ONNX export
are built once per step for a whole run), but the steps share the tensors they have in common: a
layer's tensors exist once as copied from the original and once randomised, about twice the
model in all, whatever the number of steps. The sequence is built once per (model, granularity,
seed, blocks), cached weakly on the original model and rebuilt when its weights, training flags
or device change.
"""

from __future__ import annotations

import copy
import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from sidu.backends import weights_fingerprint
from sidu_bench.registry import unknown_name_message

__all__ = [
    "BLOCK_SEPARATOR",
    "GRANULARITIES",
    "RandomisedModels",
    "randomisation_steps",
    "randomised_models",
    "resettable_layers",
    "untouched_parameters",
]

logger = logging.getLogger(__name__)

GRANULARITIES = ("layer", "block")
"""The accepted ``granularity`` values: one resettable module or one declared block per step."""

BLOCK_SEPARATOR = "+"
"""Joins the module names of a block that is not one module (``"conv1+bn1"``)."""

#: The protocol object's words for what :func:`randomised_models` does.
ORDER = "top-down (output to input), cascading (nothing restored between steps)"
LAYERS = "modules with reset_parameters (BatchNorm included), in named_modules order"
SEEDING = (
    "CPU generator seeded with the run's seed + 1 before each reset_parameters() call "
    "(Quantus 0.6's rule, its seed = the run's seed); randomised on the CPU"
)


@dataclass(frozen=True)
class RandomisedModels:
    """The cascade of randomised models of one model, as :func:`randomised_models` builds it.

    Attributes:
        models: ``models[k]``: the model after steps ``0..k`` (the last is fully randomised),
            each a model object of its own on the original's device.
        steps: each step's name: a layer's module name or a block as declared.
        layers: the module names each step resets, in the order it resets them.
        granularity: ``"layer"`` or ``"block"``.
        seed: the generator is seeded with ``seed + 1`` before each reset.
        untouched: the parameters no ``reset_parameters`` reaches (they keep their values).
    """

    models: tuple[nn.Module, ...]
    steps: tuple[str, ...]
    layers: tuple[tuple[str, ...], ...]
    granularity: str
    seed: int
    untouched: tuple[str, ...]

    @property
    def fully_randomised(self) -> nn.Module:
        """The model after the last step."""
        return self.models[-1]


def resettable_layers(model: nn.Module) -> list[str]:
    """The names of ``model``'s modules that have ``reset_parameters``, in ``named_modules`` order.

    The model itself is ``""`` when it has one (Quantus's ``named_modules`` filter).

    Example:
        >>> resettable_layers(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4)))
        ['0', '2']
    """
    return [name for name, module in model.named_modules() if hasattr(module, "reset_parameters")]


def untouched_parameters(model: nn.Module) -> tuple[str, ...]:
    """The parameters of ``model`` outside every module that has ``reset_parameters``.

    Example:
        >>> layer = nn.Linear(2, 2)
        >>> model = nn.Sequential(layer)
        >>> model.scale = nn.Parameter(torch.ones(1))
        >>> untouched_parameters(model)
        ('scale',)
    """
    covered = {
        id(parameter)
        for name in resettable_layers(model)
        for parameter in model.get_submodule(name).parameters()
    }
    return tuple(name for name, p in model.named_parameters() if id(p) not in covered)


def _block_steps(
    model: nn.Module, layers: list[str], blocks: Sequence[str]
) -> list[tuple[str, tuple[str, ...]]]:
    """``(block, its resettable modules in reverse order)`` per block, last block first."""
    if isinstance(blocks, str) or not blocks:
        raise ValueError(
            "granularity='block' needs the model's `blocks` (dotted module names in forward "
            f"order, ModelSpec.blocks), got {blocks!r}; use granularity='layer' or declare them"
        )
    names = [name for name, _ in model.named_modules() if name]
    owner: dict[str, str] = {}
    steps = []
    for block in blocks:
        parts = block.split(BLOCK_SEPARATOR) if isinstance(block, str) else []
        if not parts or any(part not in names for part in parts):
            unknown = next((p for p in parts if p not in names), block)
            raise ValueError(
                f"`blocks`: {block!r} is not a module name (or names joined by "
                f"{BLOCK_SEPARATOR!r}) of {type(model).__name__}: "
                + unknown_name_message("module", str(unknown), names)
            )
        members = [
            layer
            for layer in layers
            if any(layer == part or layer.startswith(f"{part}.") for part in parts)
        ]
        if not members:
            raise ValueError(
                f"`blocks`: {block!r} holds no module with reset_parameters: nothing to randomise"
            )
        for layer in members:
            if layer in owner:
                raise ValueError(
                    f"`blocks`: module {layer!r} is in both {owner[layer]!r} and {block!r}; "
                    "blocks must not overlap"
                )
            owner[layer] = block
        steps.append((block, tuple(reversed(members))))
    uncovered = [layer for layer in layers if layer not in owner]
    if uncovered:
        shown = ", ".join(map(repr, uncovered[:8])) + (" ..." if len(uncovered) > 8 else "")
        raise ValueError(
            f"`blocks` of {type(model).__name__} leave {len(uncovered)} module(s) with "
            f"reset_parameters outside every block ({shown}); the blocks must cover them all"
        )
    return steps[::-1]


def randomisation_steps(
    model: nn.Module, granularity: str, blocks: Sequence[str]
) -> list[tuple[str, tuple[str, ...]]]:
    """The plan of :func:`randomised_models`: its steps, top-down, without building a model.

    Args:
        model: the model (only its module names are read).
        granularity: ``"layer"`` or ``"block"``.
        blocks: the model's blocks, for ``granularity="block"``.

    Returns:
        ``(step name, the module names the step resets, in reset order)`` per step.

    Raises:
        ValueError: as :func:`randomised_models`.

    Example:
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Linear(4, 2))
        >>> randomisation_steps(model, "block", ["0+1", "3"])
        [('3', ('3',)), ('0+1', ('1', '0'))]
    """
    if granularity not in GRANULARITIES:
        raise ValueError(
            f"granularity must be one of {', '.join(map(repr, GRANULARITIES))}, got {granularity!r}"
        )
    layers = resettable_layers(model)
    if not layers:
        raise ValueError(
            f"model {type(model).__name__} has no module with reset_parameters: there is nothing "
            "to randomise"
        )
    if granularity == "layer":
        return [(layer, (layer,)) for layer in reversed(layers)]
    return _block_steps(model, layers, blocks)


def _device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}


def _build(
    model: nn.Module, granularity: str, seed: int, blocks: tuple[str, ...]
) -> RandomisedModels:
    steps = randomisation_steps(model, granularity, blocks)
    device = _device(model)
    models: list[nn.Module] = []
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        work = copy.deepcopy(model).to("cpu")
        modules = dict(work.named_modules())
        previous: dict[str, torch.Tensor] = {}
        for _, layers in steps:
            changed: set[int] = set()
            for layer in layers:
                torch.default_generator.manual_seed(seed + 1)
                modules[layer].reset_parameters()
                module = modules[layer]
                changed |= {id(t) for t in (*module.parameters(), *module.buffers())}
            # Share every tensor this step left alone with the previous step's model.
            memo = {
                id(tensor): previous[name]
                for name, tensor in _tensors(work).items()
                if id(tensor) not in changed and name in previous
            }
            snapshot = copy.deepcopy(work, memo)
            previous = _tensors(snapshot)
            models.append(snapshot)
    if device.type != "cpu":
        models = [snapshot.to(device) for snapshot in models]
    untouched = untouched_parameters(model)
    if untouched:
        shown = ", ".join(untouched[:8]) + (" ..." if len(untouched) > 8 else "")
        logger.warning(
            "model randomisation of %s: %d parameter(s) have no reset_parameters and keep their "
            "values at every step: %s",
            type(model).__name__,
            len(untouched),
            shown,
        )
    return RandomisedModels(
        models=tuple(models),
        steps=tuple(name for name, _ in steps),
        layers=tuple(layers for _, layers in steps),
        granularity=granularity,
        seed=seed,
        untouched=untouched,
    )


_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[tuple, tuple[tuple, RandomisedModels]]] = (
    weakref.WeakKeyDictionary()
)


def randomised_models(
    model: nn.Module, *, granularity: str = "layer", seed: int = 0, blocks: Sequence[str] = ()
) -> RandomisedModels:
    """The cascading top-down randomisation of ``model``, one model per step (module docstring).

    Built once per (model, granularity, seed, blocks) and cached (weakly on ``model``; rebuilt
    when its weights, training flags or device change), so every item of a run is explained
    under the same model objects.

    Args:
        model: the trained model (left untouched).
        granularity: ``"layer"`` (one module with ``reset_parameters`` per step) or ``"block"``
            (one of ``blocks`` per step).
        seed: the CPU generator is seeded with ``seed + 1`` before each reset (Quantus's
            ``seed``).
        blocks: for ``granularity="block"``: the model's blocks in forward order, each a dotted
            module name or several joined by ``+``; they must cover every resettable module.

    Returns:
        The :class:`RandomisedModels`; ``untouched`` lists the parameters no reset reaches.

    Raises:
        ValueError: unknown ``granularity``; the model has no module with ``reset_parameters``;
            ``granularity="block"`` without ``blocks``, or blocks that name no module, overlap
            or leave a resettable module out.

    Example:
        >>> model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
        >>> sequence = randomised_models(model, seed=42)
        >>> sequence.steps, len(sequence.models)
        (('2', '0'), 2)
        >>> sequence.models[0][0].weight is sequence.models[1][0].weight
        False
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    blocks = tuple(blocks) if not isinstance(blocks, str) else blocks
    key = (granularity, int(seed), blocks)
    state = (
        weights_fingerprint(model),
        tuple(m.training for m in model.modules()),
        _device(model),
    )
    cached = _CACHE.get(model, {}).get(key)
    if cached is not None and cached[0] == state:
        return cached[1]
    built = _build(model, granularity, int(seed), blocks)
    _CACHE.setdefault(model, {})[key] = (state, built)
    return built
