"""The metric registry: each metric described once, for the runner, the summaries and the tables.

A :class:`Metric` is what ``--metrics`` names: its ``records.csv`` columns (with the value an
unscored item keeps), how it scores one explained item (:attr:`Metric.score`), its entry in a
run's protocol object (derived from the code's constants), and the ``summary.csv`` statistics it
contributes (:class:`Statistic`: direction, per-item or per-class, which rows it scores, whether
the report ranks it). The runner, the summaries, ``compare`` and ``report`` read only these
descriptions; each metric module registers its own (:func:`register_metric`), so adding a metric
touches that module and its tests only.

Example:
    >>> import math
    >>> peak = Metric(
    ...     name="doc_peak",
    ...     columns={"doc_peak": math.nan},
    ...     statistics=(Statistic("doc_peak", column="doc_peak"),),
    ...     score=lambda item, settings: MetricScore({"doc_peak": float(item.maps.max())}),
    ... )
    >>> _ = register_metric(peak)
    >>> list_metrics()[-1], get_statistic("doc_peak").higher_is_better
    ('doc_peak', True)
    >>> _ = unregister_metric("doc_peak")

"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from sidu_bench.registry import Registry

DEFAULT_POSITION = 100
"""Position of a metric that gives none: after the built-ins (ties in name order)."""


@dataclass(frozen=True)
class ScoringSettings:
    """The run settings a metric reads when it scores an item or describes its protocol.

    Protocol entries (:attr:`Metric.protocol`) read only ``tolerance``, ``steps`` and ``step``;
    ``batch_size``, ``backend``, ``precision`` and ``dtype`` choose how the numbers are computed
    (environment), not what they are.

    Attributes:
        tolerance: the pointing game's hit radius in pixels (None: the data set declares none).
        steps: insertion/deletion steps under the fixed-count rule.
        step: pixels per insertion/deletion step; overrides ``steps`` when given.
        batch_size: images per forward pass (None: sized by a memory budget).
        backend: engine of the model's forwards (``"torch"``, ``"onnxruntime"`` or ``"auto"``).
        precision: float32 CUDA arithmetic, ``"ieee"`` or ``"tf32"``.
        dtype: autocast dtype of the forwards (None: the model's own dtype).
        seed: the run's seed (a metric's randomness derives from it and the item id).
        mean: the model's input normalisation mean (per channel, on ``[0, 1]`` pixels), so a
            metric can work in pixel space: ``pixels = image * std + mean``.
        std: the normalisation's standard deviation.
        blocks: the model's blocks in forward order (module names the model spec declares;
            empty: none declared), for metrics that change the model block by block.
    """

    tolerance: float | None
    steps: int
    step: int | None
    batch_size: int | None = None
    backend: str = "torch"
    precision: str = "ieee"
    dtype: torch.dtype | None = None
    seed: int = 0
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    blocks: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScoredItem:
    """One explained item as a metric sees it.

    Attributes:
        model: the classifier, in eval mode, on the image's device.
        image: ``[1, C, H, W]`` normalised model input.
        maps: ``[1, S, S]`` float32 saliency map, finite, on the image's device.
        target: ``[1]`` int64, the explained class.
        region: boolean ground-truth region ``[H0, W0]`` at the original size, or None.
        item_id: the item's id (to seed a metric's randomness per item).
        explain_under: ``explain_under(other_model) -> [1, S, S]`` maps of this item by the same
            explainer (same options, layer and seed) rebuilt on ``other_model``, a model of the
            same architecture (its modules named alike), explaining the same ``target``; for
            metrics that need the explanation under changed weights. None where the caller
            cannot rebuild the explainer.
    """

    model: nn.Module
    image: Tensor
    maps: Tensor
    target: Tensor
    region: Tensor | None
    item_id: str = ""
    explain_under: Callable[[nn.Module], Tensor] | None = None


@dataclass(frozen=True)
class MetricScore:
    """What a metric gives for one item.

    Attributes:
        values: ``{record column: value}`` for some of the metric's columns (the others keep
            their unscored value).
        curves: ``{key: 1-D tensor}`` kept with the item as the array ``<key>@<explainer>``.
    """

    values: Mapping[str, object]
    curves: Mapping[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class Statistic:
    """One ``summary.csv`` statistic: a mean over the items it scores, with CI and n.

    Attributes:
        name: the ``summary.csv`` column (also ``<name>_ci_low``, ``_ci_high``, ``_n``).
        column: the ``records.csv`` column holding the per-item value.
        higher_is_better: the direction of the gate, the verdicts and the rankings.
        per_class: the mean over categories of the per-category mean (stratified bootstrap);
            not per-item, so not compared in pairs. Otherwise the mean over items.
        scored_by: a boolean record column marking the scored items; None: ``column`` is set.
        subset: a boolean record column restricting the items further (e.g. ``center_miss``).
        in_report: the report shows it as a column.
        ranked_by: for a per-class statistic, the per-item statistic whose paired verdicts rank
            it in the report (None: not ranked). A per-item statistic ranks on itself.
        title: its name in prose (default: ``name``).
        variant_of: for a sensitivity variant (the same measurement of a transformed map, e.g.
            the energy pointing game of the squared map), the per-item statistic it varies. A
            variant is summarised (mean, CI, n) but stays out of the tables' comparisons and
            rankings; the trust section compares the explainers on it in a family of its own
            (:mod:`sidu_bench.tables.trust`).
    """

    name: str
    column: str
    higher_is_better: bool = True
    per_class: bool = False
    scored_by: str | None = None
    subset: str | None = None
    in_report: bool = True
    ranked_by: str | None = None
    title: str = ""
    variant_of: str | None = None

    def __post_init__(self) -> None:
        for attribute in ("name", "column"):
            value = getattr(self, attribute)
            if not isinstance(value, str) or not value.isidentifier():
                raise ValueError(f"Statistic {attribute} must be an identifier, got {value!r}")
        if self.ranked_by is not None and not self.per_class:
            raise ValueError(
                f"statistic {self.name!r}: ranked_by is for per-class statistics (a per-item "
                "statistic ranks on itself)"
            )

    @property
    def label(self) -> str:
        """The statistic's name in prose."""
        return self.title or self.name

    @property
    def compared(self) -> bool:
        """Whether the tables compare explainers in pairs on it (per-item, not a variant)."""
        return not self.per_class and self.variant_of is None

    @property
    def ranking(self) -> str | None:
        """The per-item statistic whose paired verdicts rank this one (None: unranked)."""
        return self.ranked_by if self.per_class else self.name


@dataclass(frozen=True)
class Metric:
    """A metric as ``--metrics`` names it.

    Attributes:
        name: the ``--metrics`` name.
        columns: ``{records.csv column: value of an item it does not score}``, in table order.
        statistics: the ``summary.csv`` statistics it contributes, in table order.
        score: ``score(item, settings) -> MetricScore`` for one explained item.
        protocol: ``protocol(settings) -> dict``, its entry in the run's protocol object, derived
            from the code's constants (None: nothing beyond the shared protocol fields).
        uses_regions: it scores against the ground-truth region (a localisation metric).
        position: where its columns go in ``records.csv`` and ``summary.csv`` (ascending; ties
            in name order).
        default: computed when ``--metrics`` is not given (a costly metric is opt-in).
        monotone_invariant: its values do not change when a strictly increasing function is
            applied to the map (it reads only the order of the map's values, at the resolution
            it scores). A metric that is not (e.g. the energy pointing game) compares how sharp
            maps are as much as where they point; the trust section says so, and a variant
            statistic (:attr:`Statistic.variant_of`) can record it on a transformed map.
            Declared False unless the metric states otherwise (tests/test_metric_invariance.py
            checks each built-in declaration).
    """

    name: str
    columns: Mapping[str, object]
    statistics: tuple[Statistic, ...]
    score: Callable[[ScoredItem, ScoringSettings], MetricScore]
    protocol: Callable[[ScoringSettings], dict[str, object]] | None = None
    uses_regions: bool = False
    position: int = DEFAULT_POSITION
    default: bool = True
    monotone_invariant: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"Metric name must be an identifier, got {self.name!r}")
        if not self.columns or not self.statistics:
            raise ValueError(f"metric {self.name!r} needs at least one column and one statistic")
        for statistic in self.statistics:
            if not isinstance(statistic, Statistic):
                raise TypeError(
                    f"metric {self.name!r}: statistics must be Statistic objects, "
                    f"got {type(statistic).__name__}"
                )
            for column in (statistic.column, statistic.scored_by):
                if column is not None and column not in self.columns:
                    raise ValueError(
                        f"metric {self.name!r}: statistic {statistic.name!r} reads column "
                        f"{column!r}, which is not one of its columns ({', '.join(self.columns)})"
                    )
        compared = {s.name for s in self.statistics if s.compared}
        for statistic in self.statistics:
            if statistic.ranked_by is not None and statistic.ranked_by not in compared:
                raise ValueError(
                    f"metric {self.name!r}: statistic {statistic.name!r} is ranked by "
                    f"{statistic.ranked_by!r}, which is not one of its per-item statistics"
                )

    def evaluate(self, item: ScoredItem, settings: ScoringSettings) -> MetricScore:
        """Score ``item``, checking that only the metric's own columns are set."""
        score = self.score(item, settings)
        if not isinstance(score, MetricScore):
            raise TypeError(
                f"metric {self.name!r} must return a MetricScore, got {type(score).__name__}"
            )
        unknown = [column for column in score.values if column not in self.columns]
        if unknown:
            raise ValueError(
                f"metric {self.name!r} returned column(s) {', '.join(map(repr, unknown))}; its "
                f"columns are {', '.join(self.columns)}"
            )
        return score


_METRICS = Registry[Metric]("metric")


def register_metric(metric: Metric) -> Metric:
    """Register ``metric`` (its name, record columns and statistic names must be new).

    Returns:
        ``metric``, so a module can keep it: ``POINTING_GAME = register_metric(Metric(...))``.

    Raises:
        TypeError: ``metric`` is not a :class:`Metric`.
        ValueError: its name, a column or a statistic name is taken.
    """
    if not isinstance(metric, Metric):
        raise TypeError(f"metric must be a Metric, got {type(metric).__name__}")
    if metric.name in _METRICS:
        raise ValueError(f"metric {metric.name!r} is already registered")
    taken_columns = set(metric_columns())
    taken_statistics = {statistic.name for statistic in summary_statistics()}
    clashes = [column for column in metric.columns if column in taken_columns]
    clashes += [s.name for s in metric.statistics if s.name in taken_statistics]
    if clashes:
        raise ValueError(
            f"metric {metric.name!r}: column or statistic name(s) already taken by another "
            f"metric: {', '.join(map(repr, clashes))}"
        )
    compared = {s.name for s in (*summary_statistics(), *metric.statistics) if s.compared}
    for statistic in metric.statistics:
        if statistic.variant_of is not None and statistic.variant_of not in compared:
            raise ValueError(
                f"metric {metric.name!r}: statistic {statistic.name!r} is a variant of "
                f"{statistic.variant_of!r}, which is no registered per-item statistic"
            )
    return _METRICS.register(metric.name, metric)


def unregister_metric(name: str) -> Metric:
    """Remove a registered metric (e.g. one a test registered) and return it."""
    return _METRICS.unregister(name)


def get_metric(name: str) -> Metric:
    """The registered metric called ``name``.

    Raises:
        ValueError: no metric has that name (the message names the closest ones).
    """
    return _METRICS.get(name)


def registered_metrics() -> tuple[Metric, ...]:
    """Every registered metric, by position (ties in name order)."""
    metrics = (_METRICS.get(name) for name in _METRICS)
    return tuple(sorted(metrics, key=lambda metric: metric.position))


def list_metrics(*, default_only: bool = False) -> list[str]:
    """The names ``--metrics`` accepts, in table order (``default_only``: those run by default)."""
    return [m.name for m in registered_metrics() if m.default or not default_only]


def _chosen(metrics: Sequence[str] | None) -> tuple[Metric, ...]:
    """The registered metrics named in ``metrics`` (all for ``None``), in table order."""
    return tuple(m for m in registered_metrics() if metrics is None or m.name in metrics)


def metric_columns(metrics: Sequence[str] | None = None) -> tuple[str, ...]:
    """The ``records.csv`` columns of ``metrics`` (default: every registered metric), in order."""
    return tuple(column for metric in _chosen(metrics) for column in metric.columns)


def summary_statistics(metrics: Sequence[str] | None = None) -> tuple[Statistic, ...]:
    """The ``summary.csv`` statistics of ``metrics`` (default: every registered metric)."""
    return tuple(statistic for metric in _chosen(metrics) for statistic in metric.statistics)


def get_statistic(name: str) -> Statistic:
    """The registered statistic called ``name``.

    Raises:
        ValueError: no registered metric has a statistic of that name.
    """
    for statistic in summary_statistics():
        if statistic.name == name:
            return statistic
    names = ", ".join(statistic.name for statistic in summary_statistics())
    raise ValueError(f"unknown metric statistic {name!r}; statistics are {names}")


def protocol_entries(
    settings: ScoringSettings, metrics: Sequence[str]
) -> dict[str, dict[str, object]]:
    """``{metric name: protocol entry}`` of those of ``metrics`` that have one, in name order.

    Only the metrics a run computes describe its protocol: a registered metric the run does not
    compute (a plug-in merely imported) adds nothing.
    """
    chosen = (get_metric(name) for name in sorted(set(metrics)))
    return {metric.name: metric.protocol(settings) for metric in chosen if metric.protocol}
