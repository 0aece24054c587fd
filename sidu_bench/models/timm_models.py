"""timm models by name (``timm:convnext_tiny.fb_in1k``), with timm's own preprocessing.

``timm:<name>`` takes any timm model name, with or without its pretrained tag (the part after
the ``.``; a bare architecture name gets timm's default tag). The model is built by
``timm.create_model(name, pretrained=False)``; nothing is ever downloaded. Its weights come
from ``checkpoint`` (a local state dict) when given, else from timm's Hugging Face cache (the
file timm would download for that tag: ``model.safetensors``, else ``pytorch_model.bin``, under
``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``); without either
the error names the cache file to put in place. timm is an optional dependency:
``pip install -e ".[timm]"``.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torchvision
from torch import nn

from sidu.tokens import ChannelsLast, Reshape, TokenGrid
from sidu_bench.domains import NATURAL_IMAGES
from sidu_bench.errors import NamedParameterError, ParameterError
from sidu_bench.models._api import ModelSpec
from sidu_bench.models.checkpoint import load_state, read_torch_file
from sidu_bench.models.torchvision_models import IMAGENET_SPACE
from sidu_bench.registry import unknown_name_message

logger = logging.getLogger(__name__)

__all__ = [
    "PREFIX",
    "MissingWeightsError",
    "cached_weights",
    "class_space",
    "default_blocks",
    "default_layer",
    "default_reshape",
    "from_name",
    "hub_cache",
    "is_timm_name",
    "read_state_dict",
]

PREFIX = "timm:"
"""Model names starting with this are timm model names."""

HUB_FILES = ("model.safetensors", "pytorch_model.bin")
"""The files of a timm Hugging Face repository timm loads weights from, in its order."""

INSTALL_HINT = 'pip install -e ".[timm]"'
"""How to install the optional dependency (the ``timm`` extra)."""

_IMAGENET_TAG = re.compile(r"in1k(_\d+)?$")
"""A pretrained tag of ImageNet-1k weights: ends with ``in1k``, then maybe a resolution."""


class MissingWeightsError(NamedParameterError, RuntimeError):
    """A timm model's weights are neither in timm's cache nor given as ``checkpoint``."""


def is_timm_name(name: str) -> bool:
    """Whether ``name`` is a timm model name (``timm:<name>``)."""
    return name.startswith(PREFIX)


def _timm() -> ModuleType:
    """The timm package (with ``timm.models`` and ``timm.data``).

    Raises:
        ImportError: timm is not installed; the message says how to install it.
    """
    try:
        timm = importlib.import_module("timm")
        importlib.import_module("timm.data")
    except ImportError as error:
        raise ImportError(
            f"timm models ({PREFIX}<name>) need the package timm: {INSTALL_HINT}"
        ) from error
    return timm


def _model_name(timm: ModuleType, name: str) -> str:
    """The timm model name of ``timm:<name>``, checked to exist.

    Raises:
        ValueError: an unknown architecture or pretrained tag (with the closest names).
    """
    model_name = name.removeprefix(PREFIX)
    architecture, dot, _ = model_name.partition(".")
    if timm.is_model(architecture) and (not dot or model_name in timm.list_pretrained()):
        return model_name
    known = {*timm.list_models(), *timm.list_pretrained()}
    raise ValueError(unknown_name_message("timm model", name, [PREFIX + n for n in known]))


def hub_cache() -> Path:
    """The Hugging Face cache folder timm downloads into, as the environment sets it now.

    ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub``, else
    ``~/.cache/huggingface/hub``.
    """
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return cache / "huggingface" / "hub"


def _hub_repo(hf_hub_id: str) -> tuple[str, str]:
    """``(repository, revision)`` of a timm ``hf_hub_id`` (``org/repo`` or ``org/repo@rev``)."""
    repo, _, revision = hf_hub_id.partition("@")
    return repo, revision or "main"


def _snapshot_folder(cache: Path, hf_hub_id: str) -> Path:
    """The snapshot folder of ``hf_hub_id`` in ``cache``, through ``refs/<revision>`` if any."""
    repo, revision = _hub_repo(hf_hub_id)
    folder = cache / f"models--{repo.replace('/', '--')}"
    ref = folder / "refs" / revision
    snapshot = ref.read_text(encoding="utf-8").strip() if ref.is_file() else revision
    return folder / "snapshots" / snapshot


def cached_weights(hf_hub_id: str, cache: Path | None = None) -> Path | None:
    """The weights file timm would load for ``hf_hub_id`` if ``cache`` holds it, else ``None``.

    Reads the Hugging Face cache layout offline:
    ``models--<org>--<repo>/snapshots/<revision or the commit refs/<revision> names>/<file>``
    with ``<file>`` ``model.safetensors``, else ``pytorch_model.bin``.

    Args:
        hf_hub_id: the pretrained config's ``hf_hub_id`` (``timm/convnext_tiny.fb_in1k``).
        cache: the cache folder; ``None``: :func:`hub_cache`.
    """
    snapshot = _snapshot_folder(hub_cache() if cache is None else cache, hf_hub_id)
    return next((snapshot / f for f in HUB_FILES if (snapshot / f).is_file()), None)


def _cache_file(spec_name: str, pretrained_cfg: Any) -> Path:
    """The cached weights file of ``pretrained_cfg``.

    Raises:
        MissingWeightsError: not cached, or timm has no Hugging Face weights for it; the
            message says which file to put where, and that ``checkpoint`` is the alternative.
    """
    alternative = "pass `checkpoint`=FILE, a local .safetensors or torch state dict of the model"
    hf_hub_id = getattr(pretrained_cfg, "hf_hub_id", None)
    if not hf_hub_id:
        url = getattr(pretrained_cfg, "url", None)
        if url:
            raise MissingWeightsError(
                f"timm publishes the weights of {spec_name} only at {url}, not on the Hugging "
                f"Face hub: download that file and {alternative}"
            )
        raise MissingWeightsError(f"timm has no pretrained weights for {spec_name}: {alternative}")
    cache = hub_cache()
    path = cached_weights(hf_hub_id, cache)
    if path is not None:
        return path
    repo, revision = _hub_repo(hf_hub_id)
    target = _snapshot_folder(cache, hf_hub_id) / HUB_FILES[0]
    raise MissingWeightsError(
        f"weights of {spec_name} are not in timm's cache folder {cache}. Download "
        f"https://huggingface.co/{repo}/resolve/{revision}/{HUB_FILES[0]} on a machine with "
        f"network and copy it to {target} (set HF_HUB_CACHE or HF_HOME to use another cache "
        f"folder), or {alternative}."
    )


def read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load ``(state_dict, metadata)`` from a .safetensors file or a torch file.

    A torch file is read with ``weights_only=True`` and holds a state dict, or a dict with the
    state dict under ``"state_dict"`` or ``"model"``; the metadata are that dict's
    ``class_names`` and ``class_space`` (see :mod:`sidu_bench.models.checkpoint`), else empty.
    DDP and ``torch.compile`` prefixes (``module.``, ``_orig_mod.``) are removed.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a loadable state dict of tensors (the message names it).
    """
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            content: Any = load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as error:
            raise ValueError(f"cannot load checkpoint {path} as safetensors: {error}") from error
    else:
        content = read_torch_file(path)
    metadata: dict[str, Any] = {}
    wrapped = isinstance(content, Mapping)
    key = next((k for k in ("state_dict", "model") if wrapped and k in content), None)
    if key is not None:
        metadata = {k: content[k] for k in ("class_names", "class_space") if k in content}
        content = content[key]
    if not isinstance(content, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in content.items()
    ):
        raise ValueError(f"checkpoint {path} does not hold a state dict of tensors")
    return _timm().models.clean_state_dict(dict(content)), metadata


def _num_classes(
    timm: ModuleType, model_name: str, state: Mapping[str, torch.Tensor], metadata: Mapping
) -> int | None:
    """The checkpoint's number of classes: its ``class_names``, else its classifier's rows."""
    if "class_names" in metadata:
        return len(metadata["class_names"])
    classifier = timm.models.get_pretrained_cfg_value(model_name, "classifier")
    if isinstance(classifier, (tuple, list)):  # a distilled model's two heads
        classifier = classifier[0]
    weight = state.get(f"{classifier}.weight")
    return None if weight is None else int(weight.shape[0])


def class_space(tag: str | None, num_classes: int) -> str | None:
    """The class space of a timm model: ``"imagenet-1k"`` or ``None``.

    ImageNet-1k where the head has 1000 classes and the pretrained tag ends with ``in1k``,
    optionally followed by an input resolution (``fb_in1k``, ``a1_in1k``,
    ``augreg_in21k_ft_in1k``, ``fb_in22k_ft_in1k_384``); otherwise (``augreg_in21k``,
    ``lvd142m``, another number of classes) ``None``.

    Example:
        >>> class_space("augreg_in21k_ft_in1k", 1000), class_space("augreg_in21k", 21843)
        ('imagenet-1k', None)
    """
    imagenet = num_classes == 1000 and tag is not None and _IMAGENET_TAG.search(tag) is not None
    return IMAGENET_SPACE if imagenet else None


def _families(timm: ModuleType) -> dict[str, tuple[type, ...]]:
    """The timm model classes of each family with a default layer."""
    models = timm.models
    return {
        "vit": (models.VisionTransformer, models.Eva, models.Beit, models.VisionTransformerRelPos),
        "convnext": (models.ConvNeXt,),
        "swin": (models.SwinTransformer, models.SwinTransformerV2),
        "efficientnet": (models.EfficientNet,),
        "mobilenetv3": (models.MobileNetV3,),
    }


_FAMILY_LAYERS = {"efficientnet": "bn2", "mobilenetv3": "blocks"}
"""The default layer of the families whose last feature map is not their last stage."""


def _family(module: nn.Module) -> str | None:
    """The family of a built timm model (``"vit"``, ...; ``"resnet"``: has ``layer4``)."""
    for family, classes in _families(_timm()).items():
        if isinstance(module, classes):
            return family
    return "resnet" if hasattr(module, "layer4") else None


def _stages(module: nn.Module, family: str | None) -> list[str]:
    """The dotted names of the stages of a recognised family, in forward order."""
    container = {
        "vit": "blocks",
        "convnext": "stages",
        "swin": "layers",
        "efficientnet": "blocks",
        "mobilenetv3": "blocks",
    }.get(family or "")
    if container is not None:
        return [
            f"{container}.{name}" for name, _ in module.get_submodule(container).named_children()
        ]
    return [f"layer{i}" for i in range(1, 5)] if family == "resnet" else []


def default_layer(module: nn.Module) -> str:
    """The default explained layer of a built timm model, by family.

    Vision Transformers (``VisionTransformer``, DeiT, ``Eva``, ``Beit``,
    ``VisionTransformerRelPos``): the first LayerNorm of the last block,
    ``blocks.<last>.norm1`` (tokens ``[B, N, C]``: the last ones whose patch tokens reach the
    class token through attention); ConvNeXt: the last stage ``stages.3``; Swin (v1 and v2):
    the last stage ``layers.<last>`` (channels-last ``[B, h, w, C]``); EfficientNet (and
    MobileNet-v2, MNASNet, ...): ``bn2``, the activated output of ``conv_head``;
    MobileNet-v3/v4: ``blocks``, whose last block is the last activated map (their
    ``conv_head`` follows the global pooling); ResNet-like models with a ``layer4``: ``layer4``.

    Raises:
        ParameterError: another family, or a Vision Transformer whose last block has no
            ``norm1`` (parallel blocks): ``layer`` must be given.
    """
    family = _family(module)
    if family == "vit":
        last = f"blocks.{len(module.get_submodule('blocks')) - 1}"
        if hasattr(module.get_submodule(last), "norm1"):
            return f"{last}.norm1"
    elif family in _FAMILY_LAYERS:
        return _FAMILY_LAYERS[family]
    elif family is not None:
        return _stages(module, family)[-1]
    raise ParameterError(
        f"timm model {type(module).__name__} has no default explained layer: pass `layer` with "
        "a module whose output is [B, K, h, w] (or tokens [B, N, C] for a Vision Transformer)"
    )


def default_reshape(module: nn.Module) -> Reshape | None:
    """How the explainers read a built timm model's layers (:attr:`ModelSpec.reshape`).

    Vision Transformers: ``TokenGrid(prefix=module.num_prefix_tokens)`` (the class,
    distillation and register tokens never enter a map); Swin: ``ChannelsLast()``; others
    ``None``.
    """
    family = _family(module)
    if family == "vit":
        return TokenGrid(prefix=int(module.num_prefix_tokens))
    return ChannelsLast() if family == "swin" else None


def default_sidu_layer(module: nn.Module) -> str | None:
    """SIDU's own default layer of a built timm model (:attr:`ModelSpec.sidu_layer`).

    Vision Transformers whose second-to-last block has an MLP with an activation module:
    ``blocks.<last - 1>.mlp.act``, its post-GELU activations (the rule of
    :func:`sidu_bench.models.torchvision_models.default_sidu_layer`, docs/protocol.md item 21);
    otherwise ``None`` (SIDU explains the default layer).
    """
    if _family(module) != "vit" or len(module.get_submodule("blocks")) < 2:
        return None
    name = f"blocks.{len(module.get_submodule('blocks')) - 2}.mlp.act"
    try:
        module.get_submodule(name)
    except AttributeError:
        return None
    return name


def _resettable(module: nn.Module) -> bool:
    """Whether ``module`` holds a module with ``reset_parameters``."""
    return any(hasattr(m, "reset_parameters") for m in module.modules())


def default_blocks(module: nn.Module) -> tuple[str, ...]:
    """The blocks of a built timm model (:attr:`ModelSpec.blocks`), stem to head.

    For a family with a default layer: the stem (the children before the stages that hold a
    module with ``reset_parameters``, joined by ``+``), each stage, then each such child after
    the stages. ViT ``patch_embed``, ``blocks.0``.., ``norm``, ``head``; ResNet ``conv1+bn1``,
    ``layer1``..``layer4``, ``fc``; ConvNeXt ``stem``, ``stages.0``..``stages.3``, ``head``;
    Swin ``patch_embed``, ``layers.0``.., ``norm``, ``head``; EfficientNet
    ``conv_stem+bn1``, ``blocks.0``.., ``conv_head``, ``bn2``, ``classifier``. Other families:
    none.
    """
    stages = _stages(module, _family(module))
    if not stages:
        return ()
    children = [name for name, child in module.named_children() if _resettable(child)]
    first, last = (children.index(stage.split(".")[0]) for stage in (stages[0], stages[-1]))
    stem = "+".join(children[:first])
    return (*([stem] if stem else []), *stages, *children[last + 1 :])


def _class_names(space: str | None, num_classes: int) -> tuple[str, ...]:
    """ImageNet-1k's names (torchvision's, as the other models) or ``"0"``, ``"1"``, ..."""
    if space == IMAGENET_SPACE and num_classes == 1000:
        return tuple(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
    return tuple(str(i) for i in range(num_classes))


def from_name(name: str, *, checkpoint: Path | None = None, layer: str | None = None) -> ModelSpec:
    """Build ``timm:<name>`` with its weights and timm's preprocessing.

    Preprocessing is timm's data config for the model (``timm.data.resolve_model_data_config``):
    its mean, std, interpolation and square input size, applied by the project's rule: images
    are squashed to the input size, never cropped (``crop_pct`` is ignored). The class space is
    :func:`class_space` of the pretrained tag (timm's default tag for a bare architecture name)
    and the number of logits, unless the checkpoint's metadata says otherwise; the class names
    are ImageNet-1k's there, else ``"0"``, ``"1"``, ... (or the checkpoint's ``class_names``).

    Args:
        name: ``timm:<model name>`` (``timm:vit_small_patch16_224.augreg_in21k_ft_in1k``).
        checkpoint: a local state dict of the model (:func:`read_state_dict`); its classifier
            sets the number of classes. ``None``: timm's Hugging Face cache.
        layer: explained layer; required for families without a default
            (:func:`default_layer`).

    Returns:
        The eval-mode :class:`ModelSpec`, named ``timm:<name>`` (``timm:<name>@<checkpoint>``
        with a checkpoint), domain natural images.

    Raises:
        ImportError: timm is not installed.
        ValueError: an unknown timm name (with the closest names), a model without a
            classifier or with a non-square input size, a checkpoint that does not fit.
        MissingWeightsError: no checkpoint and the weights are not in timm's cache (a
            ``RuntimeError`` naming the file to put where).
        ParameterError: no ``layer`` for a family without a default.
    """
    timm = _timm()
    model_name = _model_name(timm, name)
    spec_name = f"{PREFIX}{model_name}"
    if checkpoint is None:
        path = _cache_file(spec_name, timm.models.get_pretrained_cfg(model_name))
        state, metadata = read_state_dict(path)
        num_classes = None
    else:
        path, spec_name = checkpoint, f"{spec_name}@{checkpoint}"
        state, metadata = read_state_dict(checkpoint)
        num_classes = _num_classes(timm, model_name, state, metadata)
    options = {} if num_classes is None else {"num_classes": num_classes}
    module = timm.create_model(model_name, pretrained=False, **options)
    if module.num_classes < 1:
        raise ValueError(
            f"{spec_name} has no classifier (num_classes={module.num_classes}): pick a pretrained "
            "tag with a classification head or pass a checkpoint with one"
        )
    data = timm.data.resolve_model_data_config(module)
    _, height, width = data["input_size"]
    if height != width:
        raise ValueError(
            f"{spec_name} has a non-square input size {height} x {width}: only square inputs "
            "are supported"
        )
    load_state(module, state, path)
    logger.info("loaded %s from %s", spec_name, path)
    tag = module.pretrained_cfg.get("tag")
    own_classes = "class_names" in metadata
    space = metadata.get(
        "class_space", None if own_classes else class_space(tag, module.num_classes)
    )
    return ModelSpec(
        module=module.eval(),
        name=spec_name,
        input_size=int(height),
        mean=tuple(float(v) for v in data["mean"]),
        std=tuple(float(v) for v in data["std"]),
        class_names=tuple(metadata.get("class_names", _class_names(space, module.num_classes))),
        default_layer=layer if layer is not None else default_layer(module),
        class_space=space,
        interpolation=str(data["interpolation"]),
        domain=NATURAL_IMAGES,
        blocks=default_blocks(module),
        reshape=default_reshape(module),
        sidu_layer=None if layer is not None else default_sidu_layer(module),
    )
