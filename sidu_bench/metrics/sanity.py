"""Model-randomisation sanity checks: MPRT and eMPRT, matching Quantus 0.6.

An explanation that does not change when the model's weights are randomised does not explain
the model. Both checks explain each item again under the randomised models of
:func:`.randomisation.randomised_models` (cascading, top-down, Quantus's seeding rule):

* **MPRT** (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018; ``quantus.MPRT``
  with its defaults ``abs=True``, ``similarity_func=correlation_spearman``): per step ``k``,
  the Spearman rank correlation (:func:`rank_correlation`) between the absolute original map and
  the absolute map under the model randomised down to step ``k``. ``mprt_last`` is the
  correlation after the last step (the fully randomised model), ``mprt_mean`` the mean over the
  randomised steps; the per-step values (one per step, the unrandomised model's 1 not among
  them) are kept as the curve ``mprt@<explainer>``. Lower is
  better: a map that survives the randomisation unchanged scores 1. ``quantus.MPRT``'s
  ``return_average_correlation`` means the unrandomised model's score too (its key is
  ``"original"`` while the code skips ``"orig"``); ``mprt_mean`` leaves it out. Quantus's
  ``normalise=True`` divides by the maximum: no rank changes in exact arithmetic, but its
  float32 division can round two nearly equal values into a tie (5e-8 in a correlation of a
  SIDU map); ours ranks the maps as they are. Granularity: one declared
  block per step where the run's model declares blocks (``ScoringSettings.blocks``), else one
  layer per step (:data:`BLOCK_WHEN_DECLARED`); ``mprt_last`` is the same either way (the fully
  randomised model does not depend on the order), ``mprt_mean`` is not.
* **eMPRT** (Hedström et al., "Sanity Checks Revisited: An Exploration to Repair the Model
  Parameter Randomisation Test", XAI in Action workshop, NeurIPS 2023; ``quantus.EfficientMPRT``
  with ``complexity_func_kwargs={"n_bins": 100}`` and its defaults ``abs=False``,
  ``normalise=False``, ``skip_layers=True``): the relative rise of the explanation's complexity
  from the original to the fully randomised model, ``(H_random - H_original) / H_original``,
  where ``H`` is the discrete entropy (natural log) of the raw map's histogram over 100
  equal-width bins spanning the map's own range (:func:`discrete_entropy`). Higher is better: a
  faithful explanation of a random model is noise, more complex than the original. It costs one
  extra explanation per item and explainer, under the last model of MPRT's sequence; when both
  metrics run, the map is computed once and shared.

Undefined values: a constant map has no rank correlation (and an original map of entropy 0 no
relative rise); those values are NaN, logged with the item's id, counted in ``mprt_undefined``,
and never an error; ``mprt_mean`` averages the defined steps only. Quantus raises an
``AssertionError`` on an all-zero map (at any step), gives NaN for another constant one, and
``inf`` or NaN for the relative rise from an original of entropy 0.

Both are opt-in (``default=False``; ``--metrics mprt,emprt``). Measured with SIDU on
EfficientNet-Lite0 and one ImageNet validation image, ONNX Runtime forwards (``backend="auto"``),
on a shared, busy 2-core Xeon (medians of 2-3 runs): SIDU's explanation 392 forwards, 1.8 s;
insertion/deletion (224 steps) 449 forwards, 2.0 s; MPRT at block granularity (10 steps)
2742 forwards, 16 s per item and explainer, about 8x insertion/deletion, plus 44 s once per
run (an explainer and an ONNX export per step; the sequence itself 0.7 s); layer granularity
would take 99 steps. eMPRT costs one explanation per item and explainer, as much as the
explainer itself (for RISE thousands of forwards), which would double every explainer's cost
in a default run (here only 1 forward, 0.05 s: SIDU's map of the fully randomised Lite0 is
constant, see below), plus a per-run ONNX export.

SIDU under Quantus's randomisation: ``reset_parameters`` turns every BatchNorm into the
identity (running mean 0, variance 1), so the randomised network's activations shrink layer by
layer; from the fifth block step on, Lite0's ``head.act`` stays below SIDU's absolute mask
threshold (0.1), every mask is empty and the map is constant: MPRT's later steps are undefined
(NaN, counted) and eMPRT is -1 (entropy 0).

Out of scope: SmoothMPRT (the same paper: each map averaged over 50 noisy explanations per
step, 50x the cost). Quantus 0.6's ``SmoothMPRT`` calls ``quantus.explain`` instead of the
``explain_func`` it is given, so it could not serve as a reference for our explainers anyway.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Callable, Sequence

import numpy as np
import scipy.stats
import torch
from torch import Tensor, nn

from . import randomisation
from .randomisation import RandomisedModels, randomised_models
from .registry import Metric, MetricScore, ScoredItem, ScoringSettings, Statistic, register_metric

__all__ = [
    "EMPRT",
    "ENTROPY_BINS",
    "MPRT",
    "discrete_entropy",
    "emprt",
    "granularity_for",
    "mprt",
    "rank_correlation",
]

logger = logging.getLogger(__name__)

ENTROPY_BINS = 100
"""eMPRT's histogram bins (``complexity_func_kwargs={"n_bins": 100}`` in Quantus)."""

BLOCK_WHEN_DECLARED = True
"""MPRT randomises block by block when the run's model declares blocks, else layer by layer."""

#: The protocol object's words for what the code does.
GRANULARITY = (
    "block (one of the model's declared blocks per step) where the model declares blocks, "
    "else layer (one module with reset_parameters per step)"
)
CORRELATION = (
    "Spearman rank correlation of |original map| and |map under the randomised model|, "
    "flattened, float64, average ranks for ties; NaN when either map is constant"
)
MEAN = "over the randomised steps (the unrandomised model excluded), undefined steps left out"
COMPLEXITY = (
    "discrete entropy (natural log) of the raw map's histogram: equal-width bins over the "
    "map's own range (numpy.histogram of the float32 map)"
)
RELATIVE_RISE = (
    "(H(fully randomised) - H(original)) / H(original), H the complexity; NaN when "
    "H(original) = 0; the fully randomised model is the last model of mprt's sequence"
)


def rank_correlation(a: Tensor, b: Tensor) -> float:
    """Spearman's rank correlation of two tensors, flattened (``scipy.stats.spearmanr``'s value).

    Ranks are computed in float64, ties sharing their average rank; the value is Pearson's
    correlation of the ranks. Identical rankings give exactly 1.0; a constant tensor gives NaN.

    Args:
        a: any shape.
        b: as many elements as ``a``.

    Returns:
        The correlation, in [-1, 1] or NaN.

    Raises:
        ValueError: ``a`` and ``b`` differ in size.

    Example:
        >>> rank_correlation(torch.tensor([1.0, 2.0, 2.0, 5.0]), torch.tensor([0.0, 3.0, 3.0, 4.0]))
        1.0
        >>> round(rank_correlation(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 3.0, 2.0])), 6)
        0.5
    """
    if a.numel() != b.numel():
        raise ValueError(
            f"rank_correlation needs tensors of the same size, got {a.numel()} and {b.numel()}"
        )
    return _ranks_correlation(_ranks(a), _ranks(b.to(a.device)))


def _ranks(values: Tensor) -> Tensor:
    """Average ranks of ``values`` flattened, in float64."""
    return _average_ranks(values.detach().reshape(-1).to(torch.float64))


def _ranks_correlation(ranks_a: Tensor, ranks_b: Tensor) -> float:
    """Pearson's correlation of two rank vectors (1.0 when equal, NaN when one is constant)."""
    if torch.equal(ranks_a, ranks_b):
        return 1.0 if bool((ranks_a != ranks_a[0]).any()) else math.nan
    centred_a = ranks_a - ranks_a.mean()
    centred_b = ranks_b - ranks_b.mean()
    denominator = float(torch.sqrt(centred_a.square().sum()) * torch.sqrt(centred_b.square().sum()))
    if denominator == 0.0:
        return math.nan
    value = float((centred_a * centred_b).sum()) / denominator
    return min(1.0, max(-1.0, value))


def _average_ranks(values: Tensor) -> Tensor:
    """1-based ranks of a 1-D tensor, ties sharing their average (``scipy.stats.rankdata``)."""
    ordered, order = torch.sort(values, stable=True)
    count = values.numel()
    starts = torch.ones(count, dtype=torch.bool, device=values.device)
    starts[1:] = ordered[1:] != ordered[:-1]
    group = torch.cumsum(starts, 0) - 1
    first = torch.nonzero(starts).squeeze(1)
    sizes = torch.diff(first, append=first.new_tensor([count]))
    average = first.to(torch.float64) + (sizes.to(torch.float64) + 1.0) / 2.0
    ranks = torch.empty(count, dtype=torch.float64, device=values.device)
    ranks[order] = average[group]
    return ranks


def discrete_entropy(saliency: Tensor, *, n_bins: int = ENTROPY_BINS) -> float:
    """Entropy (natural log) of the histogram of ``saliency``'s values (Quantus's complexity).

    ``numpy.histogram(values, bins=n_bins)``: equal-width bins over ``[min, max]`` of the
    values as they are (float32 maps stay float32, as Quantus receives them); the entropy of the
    counts as ``scipy.stats.entropy`` computes it. A constant map has entropy 0.

    Args:
        saliency: a map of any shape (the raw values: no absolute value, no normalisation).
        n_bins: the number of bins.

    Returns:
        The entropy, ``0 <= H <= log(n_bins)``.

    Raises:
        ValueError: ``n_bins`` is not a positive integer.

    Example:
        >>> round(discrete_entropy(torch.tensor([0.0, 1.0, 2.0, 3.0]), n_bins=2), 6)
        0.693147
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    counts, _ = np.histogram(saliency.detach().cpu().numpy(), bins=n_bins)
    return float(scipy.stats.entropy(counts))


def granularity_for(blocks: Sequence[str]) -> str:
    """MPRT's granularity for a model with these declared ``blocks`` (:data:`GRANULARITY`)."""
    return "block" if BLOCK_WHEN_DECLARED and len(blocks) > 0 else "layer"


def mprt(
    maps: Tensor, explain: Callable[[nn.Module], Tensor], models: Sequence[nn.Module]
) -> Tensor:
    """MPRT's correlations of one item: ``|maps|`` against ``|explain(model)|`` for each model.

    Args:
        maps: the original model's map of the item (any shape).
        explain: ``explain(model) -> map`` of the same item and target by the same explainer on
            ``model`` (as many elements as ``maps``).
        models: the randomised models, in order (e.g. ``randomised_models(...).models``).

    Returns:
        ``[len(models)]`` float64 correlations (:func:`rank_correlation`; NaN where a map is
        constant). A constant ``maps`` gives all NaN without calling ``explain``.

    Example:
        >>> model = nn.Linear(4, 2)
        >>> steps = randomised_models(model, seed=0).models
        >>> maps = torch.tensor([[0.1, 0.5, 0.2, 0.9]])
        >>> mprt(maps, lambda m: maps.clone(), steps).tolist()
        [1.0]
    """
    values = torch.full((len(models),), math.nan, dtype=torch.float64)
    if _constant(maps):
        return values
    original = _ranks(maps.abs())
    for step, model in enumerate(models):
        randomised = explain(model).detach()
        if randomised.numel() != maps.numel():
            raise ValueError(
                f"explain returned {randomised.numel()} values for a map of {maps.numel()}"
            )
        values[step] = _ranks_correlation(original, _ranks(randomised.to(maps.device).abs()))
    return values


def emprt(maps: Tensor, randomised_maps: Tensor, *, n_bins: int = ENTROPY_BINS) -> float:
    """The eMPRT score: the relative rise in complexity from ``maps`` to ``randomised_maps``.

    Args:
        maps: the original model's map (raw values).
        randomised_maps: the same item's map under the fully randomised model.
        n_bins: histogram bins of :func:`discrete_entropy`.

    Returns:
        ``(H(randomised_maps) - H(maps)) / H(maps)``; NaN when ``H(maps) = 0`` (constant map).

    Example:
        >>> flat, spread = torch.tensor([0.0, 0.0, 0.0, 1.0]), torch.tensor([0.0, 1.0, 2.0, 3.0])
        >>> round(emprt(flat, spread, n_bins=4), 4)
        1.4652
    """
    before = discrete_entropy(maps, n_bins=n_bins)
    if before == 0.0:
        return math.nan
    return (discrete_entropy(randomised_maps, n_bins=n_bins) - before) / before


def _constant(maps: Tensor) -> bool:
    return bool((maps == maps.reshape(-1)[0]).all())


def _sequence(item: ScoredItem, settings: ScoringSettings) -> RandomisedModels:
    """The run's randomised models of ``item.model`` (built once, then from the cache)."""
    return randomised_models(
        item.model,
        granularity=granularity_for(settings.blocks),
        seed=settings.seed,
        blocks=settings.blocks,
    )


_LAST_MAPS: weakref.WeakKeyDictionary[object, tuple[weakref.ref, Tensor]] = (
    weakref.WeakKeyDictionary()
)
"""Per ``item.explain_under``: its map under the fully randomised model (mprt, emprt share it)."""


def _explainer(item: ScoredItem, metric: str) -> Callable[[nn.Module], Tensor]:
    """``item.explain_under``, checked to exist and to return maps shaped like ``item.maps``."""
    explain_under = item.explain_under
    if explain_under is None:
        raise ValueError(
            f"metric {metric!r} needs ScoredItem.explain_under (the explainer rebuilt on another "
            f"model); item {item.item_id!r} has none"
        )

    def explain(model: nn.Module) -> Tensor:
        maps = explain_under(model)
        if tuple(maps.shape) != tuple(item.maps.shape):
            raise ValueError(
                f"metric {metric!r}: explain_under returned maps of shape {tuple(maps.shape)} "
                f"for item {item.item_id!r}, whose maps are {tuple(item.maps.shape)}"
            )
        return maps

    return explain


def _shared_last(
    item: ScoredItem, explain: Callable[[nn.Module], Tensor], last: nn.Module
) -> Callable[[nn.Module], Tensor]:
    """``explain``, computing the map under ``last`` once per item for both metrics."""

    def explain_shared(model: nn.Module) -> Tensor:
        if model is not last:
            return explain(model)
        try:
            kept = _LAST_MAPS.get(item.explain_under)
        except TypeError:  # not weakly referenceable: nothing shared
            return explain(model)
        if kept is not None and kept[0]() is model:
            return kept[1]
        maps = explain(model)
        _LAST_MAPS[item.explain_under] = (weakref.ref(model), maps)
        return maps

    return explain_shared


def _score_mprt(item: ScoredItem, settings: ScoringSettings) -> MetricScore:
    explain = _explainer(item, "mprt")
    sequence = _sequence(item, settings)
    explain = _shared_last(item, explain, sequence.fully_randomised)
    values = mprt(item.maps, explain, sequence.models)
    undefined = int(torch.isnan(values).sum())
    if undefined:
        cause = "the original map is constant" if _constant(item.maps) else "constant maps"
        logger.warning(
            "mprt: item %r: %d of %d correlations undefined (%s): NaN",
            item.item_id,
            undefined,
            len(values),
            cause,
        )
    defined = values[~torch.isnan(values)]
    return MetricScore(
        {
            "mprt_last": float(values[-1]),
            "mprt_mean": float(defined.mean()) if len(defined) else math.nan,
            "mprt_undefined": undefined,
        },
        curves={"mprt": values},
    )


def _score_emprt(item: ScoredItem, settings: ScoringSettings) -> MetricScore:
    explain = _explainer(item, "emprt")
    if discrete_entropy(item.maps) == 0.0:
        logger.warning(
            "emprt: item %r: the original map is constant (entropy 0): NaN", item.item_id
        )
        return MetricScore({"emprt": math.nan})
    last = _sequence(item, settings).fully_randomised
    randomised = _shared_last(item, explain, last)(last)
    return MetricScore({"emprt": emprt(item.maps, randomised)})


def _protocol_mprt(settings: ScoringSettings) -> dict[str, object]:
    return {
        "order": randomisation.ORDER,
        "layers": randomisation.LAYERS,
        "granularity": GRANULARITY,
        "seeding": randomisation.SEEDING,
        "correlation": CORRELATION,
        "mean": MEAN,
    }


def _protocol_emprt(settings: ScoringSettings) -> dict[str, object]:
    return {
        "randomisation": (
            "every layer reset: the last model of mprt's sequence (the same at block and layer "
            "granularity)"
        ),
        "seeding": randomisation.SEEDING,
        "complexity": COMPLEXITY,
        "bins": ENTROPY_BINS,
        "score": RELATIVE_RISE,
    }


MPRT = register_metric(
    Metric(
        name="mprt",
        columns={"mprt_last": math.nan, "mprt_mean": math.nan, "mprt_undefined": math.nan},
        statistics=(
            Statistic("mprt_last", column="mprt_last", higher_is_better=False, title="MPRT"),
            Statistic("mprt_mean", column="mprt_mean", higher_is_better=False, title="MPRT (mean)"),
        ),
        score=_score_mprt,
        protocol=_protocol_mprt,
        position=60,
        default=False,
    )
)
"""``--metrics mprt``: MPRT's correlation after the last step and over the steps (lower better)."""

EMPRT = register_metric(
    Metric(
        name="emprt",
        columns={"emprt": math.nan},
        statistics=(Statistic("emprt", column="emprt", title="eMPRT"),),
        score=_score_emprt,
        protocol=_protocol_emprt,
        position=70,
        default=False,
    )
)
"""``--metrics emprt``: eMPRT's relative rise in the map's entropy (higher better)."""
