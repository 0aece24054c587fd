"""Evaluate one item: its prediction, every requested explainer's map, and every metric."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sidu.engine import forward_context
from sidu_bench.data import Item
from sidu_bench.metrics import energy_pointing_game, insertion_deletion, pointing_game, region_auc
from sidu_bench.perf import synchronize
from sidu_bench.runner.storage import ItemResult

LOCALISATION_METRICS = ("pointing_game", "energy_pointing_game", "region_auc")
METRICS = (*LOCALISATION_METRICS, "insertion_deletion")
"""Metric names accepted by ``--metrics``; ``insertion_deletion`` gives both AUCs."""


@dataclass(frozen=True)
class ItemContext:
    """What evaluating an item needs besides the item: model, explainers and the protocol."""

    model: nn.Module
    device: torch.device
    dtype: torch.dtype | None
    explainers: Mapping[str, object]
    center: object
    metrics: Sequence[str]
    target_rule: str
    tolerance: float | None
    steps: int
    step: int | None
    batch_size: int | None
    backend: str = "torch"
    backend_name: str = "torch"
    precision: str = "ieee"
    keep_image: bool = False


def _predict(context: ItemContext, image: torch.Tensor) -> tuple[int, float, torch.Tensor]:
    """Return the predicted class, its probability and all probabilities (float64)."""
    with forward_context(context.device, context.dtype):
        logits = context.model(image)
    probabilities = torch.softmax(logits.to(torch.float64), dim=1)[0]
    predicted = int(probabilities.argmax())
    return predicted, float(probabilities[predicted]), probabilities


def _target(context: ItemContext, item: Item, predicted: int, num_classes: int) -> int:
    if context.target_rule == "pred":
        return predicted
    if not 0 <= item.label < num_classes:
        raise ValueError(
            f"--target label: item {item.id!r} has label {item.label}, outside the model's "
            f"{num_classes} classes"
        )
    return item.label


def _localisation(
    context: ItemContext, maps: torch.Tensor, region: torch.Tensor | None
) -> dict[str, object]:
    """Pointing-game hit/validity, energy share and region AUC of one map (NaN when skipped)."""
    values: dict[str, object] = {
        "pointing_game_hit": False,
        "pointing_game_valid": False,
        "energy_pointing_game": float("nan"),
        "region_auc": float("nan"),
    }
    if region is None:
        return values
    regions = [region]
    if "pointing_game" in context.metrics and context.tolerance is not None:
        hits, valid = pointing_game(maps, regions, tolerance=context.tolerance)
        values["pointing_game_hit"] = bool(hits[0]) and bool(valid[0])
        values["pointing_game_valid"] = bool(valid[0])
    if "energy_pointing_game" in context.metrics:
        energy, valid = energy_pointing_game(maps, regions)
        if bool(valid[0]):
            values["energy_pointing_game"] = float(energy[0])
    if "region_auc" in context.metrics:
        auc, valid = region_auc(maps, regions)
        if bool(valid[0]):
            values["region_auc"] = float(auc[0])
    return values


def center_miss(context: ItemContext, item: Item, image: torch.Tensor) -> bool:
    """Whether the center baseline's point misses the item's region (False when unscorable)."""
    if item.region is None or context.tolerance is None:
        return False
    maps = context.center(image, torch.zeros(1, dtype=torch.long, device=image.device), [item.id])
    hits, valid = pointing_game(maps.cpu(), [item.region], tolerance=context.tolerance)
    return bool(valid[0]) and not bool(hits[0])


def evaluate_item(
    context: ItemContext, item: Item, labels: Sequence[str], stored: ItemResult | None
) -> ItemResult:
    """Explain one item with the explainers in ``labels`` and score every map.

    Rows already in ``stored`` are kept; only the missing explainers are computed.

    Args:
        context: model, explainers and protocol.
        item: the item.
        labels: explainer labels to compute for this item.
        stored: what an earlier (interrupted) run kept of this item.

    Returns:
        The item's result with one row per explainer and arrays ``map@<label>`` (float16
        ``[S, S]``), ``insertion@<label>`` and ``deletion@<label>`` (curves).
    """
    result = stored or ItemResult(item.id)
    image = item.image[None].to(context.device)
    predicted, probability, probabilities = _predict(context, image)
    target = _target(context, item, predicted, probabilities.shape[0])
    targets = torch.tensor([target], device=context.device)
    base = {
        "id": item.id,
        "category": item.category,
        "label": item.label,
        "target": target,
        "predicted": predicted,
        "predicted_prob": probability,
        "target_prob": float(probabilities[target]),
        "center_miss": center_miss(context, item, image),
        "backend": context.backend_name,
        "device": context.device.type,
    }
    if context.keep_image:
        result.arrays["image"] = item.image.numpy().astype(np.float16)
        if item.region is not None:
            result.arrays["region"] = item.region.numpy()
    for label in labels:
        explainer = context.explainers[label]
        synchronize(context.device)
        start = time.perf_counter()
        try:
            maps = explainer(image, targets, [item.id])
        except (ValueError, TypeError, RuntimeError) as error:
            raise RuntimeError(
                f"explainer {label!r} failed on item {item.id!r}: {type(error).__name__}: {error}"
            ) from error
        synchronize(context.device)
        seconds = time.perf_counter() - start
        maps = maps.detach().to(device=context.device, dtype=torch.float32)
        if not bool(torch.isfinite(maps).all()):
            raise ValueError(f"explainer {label!r} returned a non-finite map for item {item.id!r}")
        start = time.perf_counter()
        row = dict(base, explainer=label, **_localisation(context, maps.cpu(), item.region))
        row["insertion_auc"] = row["deletion_auc"] = float("nan")
        if "insertion_deletion" in context.metrics:
            with forward_context(context.device, context.dtype):
                scores = insertion_deletion(
                    context.model,
                    image,
                    maps,
                    target=targets,
                    steps=context.steps,
                    step=context.step,
                    batch_size=context.batch_size,
                    backend=context.backend,
                    precision=context.precision,
                )
            row["insertion_auc"] = float(scores.insertion_auc[0])
            row["deletion_auc"] = float(scores.deletion_auc[0])
            result.arrays[f"insertion@{label}"] = scores.insertion_curve[0].cpu().numpy()
            result.arrays[f"deletion@{label}"] = scores.deletion_curve[0].cpu().numpy()
        synchronize(context.device)
        row["seconds"] = seconds
        row["metric_seconds"] = time.perf_counter() - start
        result.rows[label] = row
        result.arrays[f"map@{label}"] = maps[0].cpu().numpy().astype(np.float16)
    return result
