"""Faithfulness and localisation metrics: functional core plus streaming accumulators.

- :func:`insertion_deletion`: RISE's insertion/deletion curves and AUCs, batched on the device.
- :func:`pointing_game`, :func:`energy_pointing_game`, :func:`region_auc`: localisation against
  ground-truth regions at each image's original size, with a validity mask.
- :func:`localisation_summary`, :func:`insertion_deletion_summary`: per-class and overall means.
- :class:`PointingGame`, :class:`EnergyPointingGame`, :class:`RegionAUC`,
  :class:`InsertionDeletion`: the same reductions as update/compute/reset accumulators.
"""

from .accumulators import EnergyPointingGame, InsertionDeletion, PointingGame, RegionAUC
from .insertion_deletion import InsertionDeletionResult, curve_auc, insertion_deletion
from .localisation import energy_pointing_game, pointing_game, region_auc
from .substrates import rise_blur, rise_blur_kernel
from .summary import (
    InsertionDeletionReport,
    InsertionDeletionSummary,
    LocalisationReport,
    LocalisationSummary,
    insertion_deletion_summary,
    localisation_summary,
)

__all__ = [
    "EnergyPointingGame",
    "InsertionDeletion",
    "InsertionDeletionReport",
    "InsertionDeletionResult",
    "InsertionDeletionSummary",
    "LocalisationReport",
    "LocalisationSummary",
    "PointingGame",
    "RegionAUC",
    "curve_auc",
    "energy_pointing_game",
    "insertion_deletion",
    "insertion_deletion_summary",
    "localisation_summary",
    "pointing_game",
    "region_auc",
    "rise_blur",
    "rise_blur_kernel",
]
