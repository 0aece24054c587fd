"""Faithfulness and localisation metrics: per-item functions and their registry.

- :func:`insertion_deletion`: RISE's insertion/deletion curves and AUCs, batched on the device.
- :func:`pointing_game`, :func:`energy_pointing_game`, :func:`region_auc`: localisation against
  ground-truth regions at each image's original size, with a validity mask.
- :func:`road_curves`, :func:`impute_noisy_linear`: ROAD (metric ``road``, on by default):
  probabilities after removing pixels and filling them by noisy linear imputation.
- :func:`mprt`, :func:`emprt`: the model-randomisation sanity checks (opt-in metrics ``mprt``,
  ``emprt``), under the cascade of :func:`randomised_models`.
- :func:`register_metric`, :func:`get_metric`, :func:`list_metrics`: the registry of metric
  descriptions (:class:`Metric`, :class:`Statistic`) that the runner, summaries, ``compare``
  and ``report`` read; each metric module registers its own.
"""

from .insertion_deletion import InsertionDeletionResult, curve_auc, insertion_deletion
from .localisation import energy_pointing_game, pointing_game, region_auc
from .randomisation import RandomisedModels, randomised_models
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
from .road import RoadResult, impute_noisy_linear, road_curves
from .sanity import discrete_entropy, emprt, mprt, rank_correlation
from .substrates import rise_blur, rise_blur_kernel

__all__ = [
    "InsertionDeletionResult",
    "Metric",
    "MetricScore",
    "RandomisedModels",
    "RoadResult",
    "ScoredItem",
    "ScoringSettings",
    "Statistic",
    "curve_auc",
    "discrete_entropy",
    "emprt",
    "energy_pointing_game",
    "get_metric",
    "get_statistic",
    "impute_noisy_linear",
    "insertion_deletion",
    "list_metrics",
    "metric_columns",
    "mprt",
    "pointing_game",
    "protocol_entries",
    "randomised_models",
    "rank_correlation",
    "region_auc",
    "register_metric",
    "registered_metrics",
    "rise_blur",
    "rise_blur_kernel",
    "road_curves",
    "summary_statistics",
    "unregister_metric",
]
