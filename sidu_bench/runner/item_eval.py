"""Evaluate one item: its prediction, every requested explainer's map, and every metric."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sidu.engine import forward_context, synchronize
from sidu.scores import class_probabilities
from sidu_bench.data import Item
from sidu_bench.metrics import (
    ScoredItem,
    ScoringSettings,
    get_metric,
    pointing_game,
)
from sidu_bench.runner.folder import ItemResult
from sidu_bench.runner.thumbnails import image_thumbnails


@dataclass(frozen=True)
class ItemContext:
    """What evaluating an item needs besides the item: model, explainers and the protocol.

    Attributes:
        model: the classifier, in eval mode, on ``device``.
        device: where the item is computed.
        explainers: the explainers by label.
        center: the center baseline (for the center-miss flag).
        metrics: the metrics to compute.
        target_rule: ``pred`` or ``label``.
        scoring: what the metrics read (:meth:`~sidu_bench.runner.RunConfig.scoring`).
        rebuild: ``rebuild(label, model)``, the explainer ``label`` built on another model (for
            metrics that explain an item under changed weights); None: not offered.
        backend_name: the engine that runs the perturbation forwards (recorded per row).
        keep_image: keep the item's image and region for the figures.
    """

    model: nn.Module
    device: torch.device
    explainers: Mapping[str, object]
    center: object
    metrics: Sequence[str]
    target_rule: str
    scoring: ScoringSettings
    rebuild: Callable[[str, nn.Module], object] | None = None
    backend_name: str = "torch"
    keep_image: bool = False


def _predict(context: ItemContext, image: torch.Tensor) -> tuple[int, float, torch.Tensor]:
    """Return the predicted class, its probability and all probabilities (float64)."""
    with forward_context(context.device, context.scoring.dtype):
        logits = context.model(image)
    probabilities = class_probabilities(logits)[0]
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


def _score(
    context: ItemContext, item: ScoredItem, result: ItemResult, label: str
) -> dict[str, object]:
    """Every registered metric's record values of one map; the requested ones are computed.

    Metrics not requested keep their unscored values; curves go into ``result.arrays`` as
    ``<key>@<label>``.
    """
    values = {
        column: default
        for metric in map(get_metric, context.metrics)
        for column, default in metric.columns.items()
    }
    for name in context.metrics:
        score = get_metric(name).evaluate(item, context.scoring)
        values.update(score.values)
        for key, curve in score.curves.items():
            result.arrays[f"{key}@{label}"] = curve.cpu().numpy()
    return values


def center_miss(context: ItemContext, item: Item, image: torch.Tensor) -> bool:
    """Whether the center baseline's point misses the item's region (False when unscorable)."""
    tolerance = context.scoring.tolerance
    if item.region is None or tolerance is None:
        return False
    maps = context.center(image, torch.zeros(1, dtype=torch.long, device=image.device), [item.id])
    hits, valid = pointing_game(maps.cpu(), [item.region], tolerance=tolerance)
    return bool(valid[0]) and not bool(hits[0])


def _explain_under(
    context: ItemContext, label: str, image: torch.Tensor, targets: torch.Tensor, item_id: str
) -> Callable[[nn.Module], torch.Tensor] | None:
    """The item's maps by explainer ``label`` rebuilt on another model (None: not offered)."""
    if context.rebuild is None:
        return None

    def explain(model: nn.Module) -> torch.Tensor:
        maps = context.rebuild(label, model)(image, targets, [item_id])
        return maps.detach().to(device=context.device, dtype=torch.float32)

    return explain


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
    scoring = context.scoring
    result.arrays.update(image_thumbnails(item.image, item.region, scoring.mean, scoring.std))
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
        except Exception as error:  # a plug-in may raise anything: name it, whatever it is
            raise RuntimeError(
                f"explainer {label!r} failed on item {item.id!r}: {type(error).__name__}: {error}"
            ) from error
        synchronize(context.device)
        seconds = time.perf_counter() - start
        maps = maps.detach().to(device=context.device, dtype=torch.float32)
        if not bool(torch.isfinite(maps).all()):
            raise ValueError(f"explainer {label!r} returned a non-finite map for item {item.id!r}")
        start = time.perf_counter()
        scored = ScoredItem(
            context.model,
            image,
            maps,
            targets,
            item.region,
            item_id=item.id,
            explain_under=_explain_under(context, label, image, targets, item.id),
        )
        row = dict(base, explainer=label, **_score(context, scored, result, label))
        synchronize(context.device)
        row["seconds"] = seconds
        row["metric_seconds"] = time.perf_counter() - start
        result.rows[label] = row
        result.arrays[f"map@{label}"] = maps[0].cpu().numpy().astype(np.float16)
    return result
