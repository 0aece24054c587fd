"""Local checkpoints: a state dict, optionally with metadata, read with ``weights_only=True``.

A checkpoint file holds either a bare state dict or a dict ``{"state_dict": ..., **metadata}``
whose optional metadata keys are ``arch`` (str), ``class_names`` (list of str), ``input_size``
(int), ``mean`` and ``std`` (3 floats each) and ``class_space`` (str); other entries (an
optimiser state, an epoch) are ignored with a warning. Anything that needs unpickling arbitrary
objects is refused. A torchvision architecture can also be built with seeded random weights
(:func:`torchvision_from_seed`), by the same code path.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torchvision

from sidu_bench.domains import NATURAL_IMAGES
from sidu_bench.models._api import ModelSpec
from sidu_bench.models.torchvision_models import (
    adapt_architecture,
    default_blocks,
    default_layer,
    default_reshape,
    default_sidu_layer,
)

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_INPUT_SIZE = 224

METADATA_KEYS = frozenset({"arch", "class_names", "input_size", "mean", "std", "class_space"})


def read_torch_file(path: Path) -> Any:
    """The content of a torch-saved file, read with ``weights_only=True`` on the CPU.

    Raises:
        ValueError: the file cannot be read that way (the message names it).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as error:
        raise ValueError(
            f"cannot load checkpoint {path} with weights_only=True: {error}"
        ) from error


def load_checkpoint(
    path: Path, *, arch: str | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load ``(state_dict, metadata)`` from a checkpoint file with ``weights_only=True``.

    Args:
        path: the checkpoint file.
        arch: the architecture the caller builds; a checkpoint whose metadata names another is
            refused.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a loadable state dict, or is for another architecture (the
            message names the file).
    """
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    content = read_torch_file(path)
    if isinstance(content, Mapping) and "state_dict" in content:
        state, metadata = (
            content["state_dict"],
            {k: v for k, v in content.items() if k != "state_dict"},
        )
    else:
        state, metadata = content, {}
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ValueError(f"checkpoint {path} does not hold a state dict of tensors")
    unknown = sorted(set(metadata) - METADATA_KEYS)
    if unknown:
        logger.warning("checkpoint %s: ignoring entries %s", path, unknown)
    if arch is not None and metadata.get("arch", arch) != arch:
        raise ValueError(f"checkpoint {path} is for {metadata['arch']!r}, not {arch!r}")
    return dict(state), {k: v for k, v in metadata.items() if k in METADATA_KEYS}


def save_checkpoint(path: Path, state_dict: Mapping[str, torch.Tensor], **metadata: Any) -> None:
    """Write a checkpoint that :func:`load_checkpoint` reads back (metadata keys as above)."""
    unknown = set(metadata) - METADATA_KEYS
    if unknown:
        raise ValueError(f"unknown checkpoint metadata keys {sorted(unknown)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in state_dict.items()}
    torch.save({"state_dict": state, **metadata}, path)


def load_state(module: torch.nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Load ``state`` into ``module`` strictly; a mismatch names the checkpoint file."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"checkpoint {path} does not fit the architecture: {error}") from error


def _num_classes(state: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]) -> int:
    if "class_names" in metadata:
        return len(metadata["class_names"])
    weights = [v for k, v in state.items() if k.endswith("weight") and v.ndim >= 2]
    if not weights:
        raise ValueError("cannot infer the number of classes: no weight matrix in the state dict")
    return int(weights[-1].shape[0])


def torchvision_from_checkpoint(arch: str, path: Path, *, layer: str | None = None) -> ModelSpec:
    """Build a torchvision architecture (``resnet50``, ...) with the weights of a local checkpoint.

    The number of classes comes from ``class_names`` or the last weight matrix; preprocessing
    from the metadata, else ImageNet's mean/std at 224 px.
    """
    state, metadata = load_checkpoint(path, arch=arch)
    spec = _torchvision_spec(arch, f"{arch}@{path}", _num_classes(state, metadata), metadata, layer)
    load_state(spec.module, state, path)
    logger.info("loaded %s from %s (%d classes)", arch, path, spec.num_classes)
    return spec


def torchvision_from_seed(arch: str, seed: int = 0, *, layer: str | None = None) -> ModelSpec:
    """Build a torchvision architecture with random weights drawn after ``torch.manual_seed(seed)``.

    Nothing is downloaded (for speed measurements, which do not depend on the weights); 1000
    classes, ImageNet's mean/std at 224 px. The caller's random state is left as it was.

    Example:
        >>> spec = torchvision_from_seed("resnet18")
        >>> spec.name, spec.input_size, spec.default_layer
        ('resnet18@seed=0', 224, 'layer4')
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _torchvision_spec(arch, f"{arch}@seed={seed}", 1000, {}, layer)


def _torchvision_spec(
    arch: str, name: str, num_classes: int, metadata: Mapping[str, Any], layer: str | None
) -> ModelSpec:
    """``arch`` with freshly initialised weights, its preprocessing from ``metadata``."""
    module = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    module = adapt_architecture(arch, module).eval()
    return ModelSpec(
        module=module,
        name=name,
        input_size=int(metadata.get("input_size", DEFAULT_INPUT_SIZE)),
        mean=tuple(metadata.get("mean", IMAGENET_MEAN)),
        std=tuple(metadata.get("std", IMAGENET_STD)),
        class_names=tuple(metadata.get("class_names", [str(i) for i in range(num_classes)])),
        default_layer=layer if layer is not None else default_layer(arch, module),
        class_space=metadata.get("class_space"),
        domain=metadata.get("domain", NATURAL_IMAGES),
        blocks=default_blocks(arch, module),
        reshape=default_reshape(arch),
        sidu_layer=None if layer is not None else default_sidu_layer(arch, module),
    )
