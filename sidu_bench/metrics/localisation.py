"""Localisation metrics: pointing game, energy pointing game and region ROC-AUC."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from sidu.resize import resize

from ._validation import check_regions, check_saliency, check_tolerance
from .registry import Metric, MetricScore, ScoredItem, ScoringSettings, Statistic, register_metric

Regions = Tensor | Sequence[Tensor | None]
#: The protocol object's words for what the code does (see :func:`pointing_game`).
TOLERANCE_RULE = (
    "declared by the data set: 15 px for real images, scaled by size / 224 for synthetic ones "
    "(the value is the run's `tolerance`)"
)
MAP_RESIZE = "bilinear, align_corners=False, to the original size"


def pointing_game(
    saliency: Tensor, regions: Regions, *, tolerance: float = 15.0
) -> tuple[Tensor, Tensor]:
    """Score the pointing game (Zhang et al., "Top-down neural attention by excitation backprop").

    Each map is resized bilinearly (align_corners=False) to its region's size (the image's
    original size; the resize keeps plateaus exactly flat); the point is its arg-max, the first
    in row-major order on ties. A hit when the Euclidean distance from the point to the nearest
    region pixel is strictly less than ``tolerance`` pixels (a point inside the region has
    distance 0), as TorchRay's benchmark scores it.

    Args:
        saliency: maps ``[B, h, w]``.
        regions: boolean masks at each image's original size: a tensor ``[B, H, W]`` or a
            sequence of ``B`` tensors ``[H_i, W_i]`` or None (no region).
        tolerance: hit radius in pixels, > 0.

    Returns:
        ``(hits, valid)``, both bool ``[B]`` on the maps' device; ``valid`` is False (and ``hits``
        False) where the region is missing or empty: such items are skipped and counted.

    Example:
        >>> maps = torch.zeros(1, 4, 4)
        >>> maps[0, 3, 3] = 1.0
        >>> region = torch.zeros(1, 8, 8, dtype=torch.bool)
        >>> region[0, 7, 0] = True
        >>> pointing_game(maps, region, tolerance=7.0), pointing_game(maps, region, tolerance=8.0)
        ((tensor([False]), tensor([True])), (tensor([True]), tensor([True])))

    """
    tolerance = check_tolerance(tolerance)

    def hit(resized: Tensor, region: Tensor) -> tuple[Tensor, Tensor]:
        height, width = region.shape
        point = torch.argmax(resized.flatten())
        rows = torch.arange(height, device=region.device)[:, None]
        cols = torch.arange(width, device=region.device)[None, :]
        squared = (rows - point // width) ** 2 + (cols - point % width) ** 2
        nearest = torch.where(region, squared, height**2 + width**2).amin()
        return region.any() & (nearest.to(torch.float64).sqrt() < tolerance), region.any()

    return _score_each(saliency, regions, hit, missing=False)


def energy_pointing_game(saliency: Tensor, regions: Regions) -> tuple[Tensor, Tensor]:
    """Return the share of positive saliency mass inside the region (energy pointing game).

    ``value = sum(max(s, 0) * region) / sum(max(s, 0))`` after the same resize as
    :func:`pointing_game` (Wang et al., "Score-CAM", CVPR-W 2020, on the positive part of the
    map). A map without positive mass (all values <= 0) has value 0 and stays valid: it puts no
    mass in the region, and a method must not improve its mean by returning empty maps.

    Args:
        saliency: maps ``[B, h, w]``.
        regions: as for :func:`pointing_game`.

    Returns:
        ``(values, valid)``: float64 ``[B]`` (NaN where invalid) and bool ``[B]``, valid False
        where the region is missing or empty.

    Example:
        >>> maps = torch.tensor([[[3.0, 1.0], [-2.0, 0.0]]])
        >>> region = torch.tensor([[[True, False], [True, True]]])
        >>> energy_pointing_game(maps, region)
        (tensor([0.7500], dtype=torch.float64), tensor([True]))

    """
    return _score_each(saliency, regions, _energy_share)


def _energy_share(resized: Tensor, region: Tensor) -> tuple[Tensor, Tensor]:
    positive = resized.clamp(min=0)
    total = positive.sum()
    inside = torch.where(region, positive, 0.0).sum()
    share = inside / torch.where(total > 0, total, 1.0)
    return torch.where(region.any(), share, torch.nan), region.any()


def region_auc(saliency: Tensor, regions: Regions) -> tuple[Tensor, Tensor]:
    """Return the ROC-AUC of the map as a per-pixel score for region membership (midranks).

    Mann-Whitney: ``AUC = (R_in - P (P + 1) / 2) / (P N)`` with ``R_in`` the sum of the
    (mid)ranks of the ``P`` region pixels among all pixels and ``N`` the pixels outside, after
    the same resize as :func:`pointing_game`. 1 = every region pixel scores above every other
    pixel, 0.5 = chance (a constant map gives exactly 0.5). Tolerance-free, unlike the pointing
    game.

    Args:
        saliency: maps ``[B, h, w]``.
        regions: as for :func:`pointing_game`.

    Returns:
        ``(values, valid)``: float64 ``[B]`` (NaN where invalid) and bool ``[B]``, valid False
        where the region is missing, empty or covers the whole image (AUC undefined).

    Example:
        >>> maps = torch.tensor([[[3.0, 1.0], [1.0, 0.0]]])
        >>> region = torch.tensor([[[True, True], [False, False]]])
        >>> region_auc(maps, region)
        (tensor([0.8750], dtype=torch.float64), tensor([True]))

    """
    return _score_each(saliency, regions, _mann_whitney_auc)


def _mann_whitney_auc(resized: Tensor, region: Tensor) -> tuple[Tensor, Tensor]:
    scores, order = torch.sort(resized.flatten())
    _, group, counts = torch.unique_consecutive(scores, return_inverse=True, return_counts=True)
    midranks = counts.cumsum(0).to(torch.float64) - (counts - 1).to(torch.float64) / 2
    inside = region.flatten()[order]
    n_in = inside.sum().to(torch.float64)
    n_out = inside.numel() - n_in
    rank_sum = torch.where(inside, midranks[group], 0.0).sum()
    auc = (rank_sum - n_in * (n_in + 1) / 2) / torch.where(n_in * n_out > 0, n_in * n_out, 1.0)
    defined = (n_in > 0) & (n_out > 0)
    return torch.where(defined, auc, torch.nan), defined


def _score_each(
    saliency: Tensor,
    regions: Regions,
    score: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]],
    *,
    missing: float | bool = float("nan"),
) -> tuple[Tensor, Tensor]:
    """Check the inputs, then apply ``score(resized map, region) -> (value, valid)`` per item.

    Each map is resized (float64) to its region's size, the region moved to the maps' device.
    Items without a region get ``missing`` (NaN, or False for hits) and valid False.
    """
    saliency = check_saliency(saliency)
    checked = check_regions(regions, batch=saliency.shape[0])
    dtype = torch.bool if isinstance(missing, bool) else torch.float64
    values = []
    valid = []
    for map_, region in zip(saliency, checked, strict=True):
        if region is None:
            values.append(torch.tensor(missing, dtype=dtype, device=saliency.device))
            valid.append(torch.tensor(False, device=saliency.device))
            continue
        region = region.to(map_.device)
        value, defined = score(resize(map_, tuple(region.shape), rule="clamp"), region)
        values.append(value)
        valid.append(defined)
    return torch.stack(values), torch.stack(valid)


def _score_pointing_game(item: ScoredItem, settings: ScoringSettings) -> MetricScore:
    if settings.tolerance is None:
        return MetricScore({})
    hits, valid = pointing_game(item.maps.cpu(), [item.region], tolerance=settings.tolerance)
    return MetricScore(
        {
            "pointing_game_hit": bool(hits[0]) and bool(valid[0]),
            "pointing_game_valid": bool(valid[0]),
        }
    )


def _register_share(
    name: str,
    score: Callable[[Tensor, Regions], tuple[Tensor, Tensor]],
    *,
    position: int,
    monotone_invariant: bool,
) -> Metric:
    """Register a tolerance-free localisation metric: one value per item, NaN where invalid."""

    def score_item(item: ScoredItem, settings: ScoringSettings) -> MetricScore:
        values, valid = score(item.maps.cpu(), [item.region])
        return MetricScore({name: float(values[0])} if bool(valid[0]) else {})

    statistic = Statistic(name, column=name)
    return register_metric(
        Metric(
            name,
            {name: math.nan},
            (statistic,),
            score_item,
            uses_regions=True,
            position=position,
            monotone_invariant=monotone_invariant,
        )
    )


_HITS = {"column": "pointing_game_hit", "scored_by": "pointing_game_valid"}

POINTING_GAME = register_metric(
    Metric(
        name="pointing_game",
        columns={"pointing_game_hit": False, "pointing_game_valid": False},
        statistics=(
            Statistic("pointing_game", **_HITS, per_class=True, ranked_by="pointing_game_hit_rate"),
            Statistic("pointing_game_hit_rate", **_HITS, in_report=False, title="hit rate"),
            Statistic("pointing_game_center_miss", **_HITS, per_class=True, subset="center_miss"),
        ),
        score=_score_pointing_game,
        protocol=lambda settings: {"tolerance_rule": TOLERANCE_RULE, "map_resize": MAP_RESIZE},
        uses_regions=True,
        position=10,
        monotone_invariant=True,
    )
)
"""``--metrics pointing_game``: TorchRay's per-class score, the hit rate, the center-miss score."""


def tempered(saliency: Tensor, power: float) -> Tensor:
    """Each map min-max scaled to ``[0, 1]`` and raised to ``power`` (a constant map -> 0).

    A strictly increasing change of the map's "temperature": a power above 1 sharpens it, below
    1 flattens it; the order of its values is kept.

    Example:
        >>> tempered(torch.tensor([[[1.0, 3.0], [5.0, 5.0]]]), 2.0)
        tensor([[[0.0000, 0.2500],
                 [1.0000, 1.0000]]])
    """
    flat = saliency.flatten(1)
    low = flat.amin(dim=1)[:, None, None]
    span = (flat.amax(dim=1) - flat.amin(dim=1))[:, None, None]
    scaled = (saliency - low) / torch.where(span > 0, span, 1.0)
    return scaled.pow(power)


TEMPERATURE_POWERS = {"energy_pointing_game_sqrt": 0.5, "energy_pointing_game_sq": 2.0}
"""The energy pointing game's temperature variants: record column -> power of the tempered map."""


ENERGY_POINTING_GAME = _register_share(
    "energy_pointing_game", energy_pointing_game, position=20, monotone_invariant=False
)
"""``--metrics energy_pointing_game``: the share of positive saliency inside the region. Not
invariant to a monotone change of the map: see :data:`ENERGY_TEMPERATURE`."""


def _score_temperature(item: ScoredItem, settings: ScoringSettings) -> MetricScore:
    maps = item.maps.cpu()
    scores = {}
    for column, power in TEMPERATURE_POWERS.items():
        values, valid = energy_pointing_game(tempered(maps, power), [item.region])
        if bool(valid[0]):
            scores[column] = float(values[0])
    return MetricScore(scores)


def _temperature_protocol(settings: ScoringSettings) -> dict[str, object]:
    return {
        "variants": "energy_pointing_game_sqrt and energy_pointing_game_sq: the energy pointing "
        "game of the map min-max scaled to [0, 1] (at the map's own resolution, before the "
        "resize; a constant map becomes 0) and raised to 1/2 and to 2"
    }


ENERGY_TEMPERATURE = register_metric(
    Metric(
        name="energy_temperature",
        columns=dict.fromkeys(TEMPERATURE_POWERS, math.nan),
        statistics=tuple(
            Statistic(
                column,
                column=column,
                in_report=False,
                variant_of="energy_pointing_game",
                title=f"energy pointing game of the tempered map, power {power:g}",
            )
            for column, power in TEMPERATURE_POWERS.items()
        ),
        score=_score_temperature,
        protocol=_temperature_protocol,
        uses_regions=True,
        position=21,
    )
)
"""``--metrics energy_temperature`` (computed by default): the energy pointing game of the
tempered map (:func:`tempered`) at the powers of :data:`TEMPERATURE_POWERS`, variants of
``energy_pointing_game`` that show whether its verdicts survive a change of the map's
temperature (docs/protocol.md, item 22)."""
REGION_AUC = _register_share("region_auc", region_auc, position=30, monotone_invariant=True)
"""``--metrics region_auc``: the ROC-AUC of the map as a score for region membership."""
