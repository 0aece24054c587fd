"""Faithfulness and localisation metrics: per-item functions and their registry.

- :func:`insertion_deletion`: RISE's insertion/deletion curves and AUCs, batched on the device.
- :func:`pointing_game`, :func:`energy_pointing_game`, :func:`region_auc`: localisation against
  ground-truth regions at each image's original size, with a validity mask.
- :func:`register_metric`, :func:`get_metric`, :func:`list_metrics`: the registry of metric
  descriptions (:class:`Metric`, :class:`Statistic`) that the runner, summaries, ``compare``
  and ``report`` read; each metric module registers its own.
"""

from .insertion_deletion import InsertionDeletionResult, curve_auc, insertion_deletion
from .localisation import energy_pointing_game, pointing_game, region_auc
from .registry import (
    Metric,
    MetricScore,
    ScoredItem,
    ScoringSettings,
    Statistic,
    get_metric,
    get_statistic,
    list_metrics,
    metric_columns,
    protocol_entries,
    register_metric,
    registered_metrics,
    summary_statistics,
    unregister_metric,
)
from .substrates import rise_blur, rise_blur_kernel

__all__ = [
    "InsertionDeletionResult",
    "Metric",
    "MetricScore",
    "ScoredItem",
    "ScoringSettings",
    "Statistic",
    "curve_auc",
    "energy_pointing_game",
    "get_metric",
    "get_statistic",
    "insertion_deletion",
    "list_metrics",
    "metric_columns",
    "pointing_game",
    "protocol_entries",
    "region_auc",
    "register_metric",
    "registered_metrics",
    "rise_blur",
    "rise_blur_kernel",
    "summary_statistics",
    "unregister_metric",
]
