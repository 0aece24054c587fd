"""Functional reductions of per-image metric values into the numbers a table reports."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ._validation import check_curves, check_flags, check_localisation_batch


@dataclass(frozen=True)
class LocalisationSummary:
    """Per-class and overall means of a localisation metric over a set of items.

    For the pointing game ``class_sums`` are the hits, ``class_counts`` the trials,
    ``per_class_mean`` is TorchRay's score and ``overall_mean`` the overall hit rate.

    Attributes:
        per_class_mean: mean over categories of ``class_sums / class_counts`` (NaN if none).
        overall_mean: mean over valid items (NaN if none).
        n_valid: items scored.
        n_skipped: items skipped (missing, empty or, for region AUC, full region).
        categories: ``[K]`` int64, the categories with at least one valid item, ascending.
        class_sums: ``[K]`` float64, sum of the values per category.
        class_counts: ``[K]`` int64, valid items per category.

    """

    per_class_mean: float
    overall_mean: float
    n_valid: int
    n_skipped: int
    categories: Tensor
    class_sums: Tensor
    class_counts: Tensor

    @property
    def class_means(self) -> Tensor:
        """``[K]`` float64, mean value per category (hits / trials for the pointing game)."""
        return self.class_sums / self.class_counts


@dataclass(frozen=True)
class LocalisationReport:
    """A localisation summary on all items and, when a subset was tagged, on the subset."""

    all_items: LocalisationSummary
    subset: LocalisationSummary | None


@dataclass(frozen=True)
class InsertionDeletionSummary:
    """Mean insertion/deletion AUCs and mean curves over ``n`` items (NaN when ``n`` is 0)."""

    insertion_auc: float
    deletion_auc: float
    insertion_curve: Tensor
    deletion_curve: Tensor
    n: int


@dataclass(frozen=True)
class InsertionDeletionReport:
    """An insertion/deletion summary on all items and, when a subset was tagged, on the subset."""

    all_items: InsertionDeletionSummary
    subset: InsertionDeletionSummary | None


def localisation_summary(
    values: Tensor, valid: Tensor, *, categories: Tensor, subset: Tensor | None = None
) -> LocalisationReport:
    """Reduce per-item localisation values to per-class and overall means.

    ``per_class_mean = mean_k (sum of values of category k / valid items of category k)`` over
    the categories with a valid item: TorchRay's pointing-game score (Zhang et al., 2016), with
    items grouped by the data set's ground-truth category (the one implementation of that mean:
    ``summary.csv``'s per-class statistics use it too); ``overall_mean`` = mean over valid
    items (the overall hit rate for the pointing game). Invalid items are skipped and counted.

    Args:
        values: ``[N]`` per-item values (bool hits or floats; ignored where invalid).
        valid: ``[N]`` bool.
        categories: ``[N]`` integer ground-truth category per item.
        subset: ``[N]`` bool tag (e.g. the center-miss items), summarised separately.

    Example:
        >>> hits = torch.tensor([True, False, True, True])
        >>> valid = torch.tensor([True, True, True, False])
        >>> report = localisation_summary(hits, valid, categories=torch.tensor([0, 0, 1, 1]))
        >>> report.all_items.per_class_mean, report.all_items.overall_mean
        (0.75, 0.6666666666666666)

    """
    values, valid, categories, subset = check_localisation_batch(
        values, valid, categories=categories, subset=subset
    )
    return LocalisationReport(
        all_items=_localisation(values, valid, categories),
        subset=None
        if subset is None
        else _localisation(values[subset], valid[subset], categories[subset]),
    )


def insertion_deletion_summary(
    insertion_auc: Tensor,
    deletion_auc: Tensor,
    insertion_curve: Tensor,
    deletion_curve: Tensor,
    *,
    subset: Tensor | None = None,
) -> InsertionDeletionReport:
    """Mean insertion/deletion AUCs and mean curves (Petsiuk et al., RISE, BMVC 2018).

    ``mean AUC = sum_i AUC_i / N`` and ``mean curve[j] = sum_i curve_i[j] / N``, on all items and
    on the tagged ``subset``.

    Example:
        >>> curve = torch.tensor([[1.0, 0.5, 0.0], [1.0, 1.0, 1.0]])
        >>> report = insertion_deletion_summary(
        ...     torch.tensor([0.5, 1.0]), torch.tensor([0.5, 1.0]), curve, curve
        ... )
        >>> report.all_items.deletion_auc, report.all_items.deletion_curve.tolist()
        (0.75, [1.0, 0.75, 0.5])

    """
    n_items = check_curves(insertion_auc, deletion_auc, insertion_curve, deletion_curve)
    if subset is not None:
        subset = check_flags(subset, name="subset", length=n_items).cpu()
    tensors = [
        t.detach().cpu().to(torch.float64)
        for t in (insertion_auc, deletion_auc, insertion_curve, deletion_curve)
    ]
    return InsertionDeletionReport(
        all_items=_insertion_deletion(*tensors),
        subset=None if subset is None else _insertion_deletion(*(t[subset] for t in tensors)),
    )


def _localisation(values: Tensor, valid: Tensor, categories: Tensor) -> LocalisationSummary:
    scored = values[valid].to(torch.float64)
    classes, group = torch.unique(categories[valid], return_inverse=True)
    sums = torch.zeros(len(classes), dtype=torch.float64).index_add_(0, group, scored)
    counts = torch.bincount(group, minlength=len(classes))
    return LocalisationSummary(
        per_class_mean=_mean_over_classes(sums / counts),
        overall_mean=scored.mean().item() if len(scored) else math.nan,
        n_valid=int(valid.sum()),
        n_skipped=int((~valid).sum()),
        categories=classes,
        class_sums=sums,
        class_counts=counts,
    )


def _mean_over_classes(class_means: Tensor) -> float:
    """TorchRay's score: the mean of the per-class means (NaN without a class).

    Summed as numpy sums float64 (pairwise), so that a summary rebuilt from ``records.csv``
    reproduces the published values to the last bit.
    """
    return float(np.mean(class_means.numpy())) if len(class_means) else math.nan


def _insertion_deletion(
    insertion_auc: Tensor, deletion_auc: Tensor, insertion_curve: Tensor, deletion_curve: Tensor
) -> InsertionDeletionSummary:
    return InsertionDeletionSummary(
        insertion_auc=insertion_auc.mean().item(),
        deletion_auc=deletion_auc.mean().item(),
        insertion_curve=insertion_curve.mean(0),
        deletion_curve=deletion_curve.mean(0),
        n=len(insertion_auc),
    )
