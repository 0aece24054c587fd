"""Streaming accumulators: thin stateful classes over the functional summaries.

In the spirit of torchmetrics: each class declares its states once (``STATES``), ``update``
appends one batch of per-item values, ``compute`` reduces everything seen with the functional
core of :mod:`sidu_bench.metrics.summary`, ``reset`` forgets it.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from ._validation import check_curves, check_flags, check_localisation_batch
from .insertion_deletion import InsertionDeletionResult
from .summary import (
    InsertionDeletionReport,
    LocalisationReport,
    insertion_deletion_summary,
    localisation_summary,
)


class _Accumulator:
    """Base: list states named in ``STATES``, concatenated at ``compute`` time."""

    STATES: ClassVar[tuple[str, ...]]

    def __init__(self) -> None:
        self._state: dict[str, list] = {}
        self.reset()

    def reset(self) -> None:
        """Forget every update."""
        self._state = {name: [] for name in self.STATES}

    @property
    def n_updates(self) -> int:
        """Number of ``update`` calls since construction or the last ``reset``."""
        return len(self._state[self.STATES[0]])

    def _append(self, **batch: Tensor | None) -> None:
        for name in self.STATES:
            self._state[name].append(batch[name])

    def _gathered(self) -> dict[str, Tensor | None]:
        """Each state concatenated; the subset is None unless some update tagged one."""
        if self.n_updates == 0:
            raise RuntimeError(f"{type(self).__name__}.compute() called before any update()")
        gathered: dict[str, Tensor | None] = {}
        for name, parts in self._state.items():
            if name == "subset":
                gathered[name] = _subset(parts, sizes=[len(p) for p in self._state[self.STATES[0]]])
            else:
                gathered[name] = torch.cat(parts)
        return gathered


class _LocalisationAccumulator(_Accumulator):
    STATES: ClassVar[tuple[str, ...]] = ("values", "valid", "categories", "subset")

    def update(
        self,
        values: Tensor,
        valid: Tensor,
        *,
        categories: Tensor,
        subset: Tensor | None = None,
    ) -> None:
        """Add one batch of per-item values.

        ``values`` and ``valid`` as the functional metric returns them, the data set's
        ground-truth ``categories`` and an optional bool ``subset`` tag (e.g. center-miss).
        """
        values, valid, categories, subset = check_localisation_batch(
            values, valid, categories=categories, subset=subset
        )
        self._check_values(values)
        self._append(values=values, valid=valid, categories=categories, subset=subset)

    def compute(self) -> LocalisationReport:
        """Per-class mean, overall mean, valid and skipped counts, on all items and the subset."""
        state = self._gathered()
        return localisation_summary(
            state["values"], state["valid"], categories=state["categories"], subset=state["subset"]
        )

    def _check_values(self, values: Tensor) -> None:
        if not values.is_floating_point():
            raise TypeError(f"values must be a floating tensor, got dtype {values.dtype}")


class PointingGame(_LocalisationAccumulator):
    """Pointing game over a data set (Zhang et al., 2016; TorchRay's benchmark).

    Per-class hits and trials, the per-class mean (TorchRay's score) and the overall hit rate,
    on all items and on a tagged subset. ``update(hits, valid, categories=..., subset=...)``.

    Example:
        >>> metric = PointingGame()
        >>> metric.update(torch.tensor([True, False]), torch.tensor([True, True]),
        ...               categories=torch.tensor([0, 1]))
        >>> metric.update(torch.tensor([True]), torch.tensor([True]), categories=torch.tensor([1]))
        >>> report = metric.compute().all_items
        >>> report.per_class_mean, report.overall_mean, report.class_counts.tolist()
        (0.75, 0.6666666666666666, [1, 2])

    """

    def _check_values(self, values: Tensor) -> None:
        if values.dtype != torch.bool:
            raise TypeError(f"hits must be a boolean tensor, got dtype {values.dtype}")


class EnergyPointingGame(_LocalisationAccumulator):
    """Energy pointing game over a data set.

    Per-class and overall mean share of positive saliency inside the region, on all items and
    on a tagged subset. ``update(values, valid, categories=..., subset=...)``.
    """


class RegionAUC(_LocalisationAccumulator):
    """Region ROC-AUC over a data set.

    Per-class and overall mean, on all items and on a tagged subset.
    ``update(values, valid, categories=..., subset=...)``.
    """


class InsertionDeletion(_Accumulator):
    """Insertion/deletion over a data set (Petsiuk et al., RISE, BMVC 2018).

    Mean AUCs and mean curves, on all items and on a tagged subset. All updates must share the
    number of steps. ``update(result, subset=...)``.
    """

    STATES: ClassVar[tuple[str, ...]] = (
        "insertion_auc",
        "deletion_auc",
        "insertion_curve",
        "deletion_curve",
        "subset",
    )

    def update(self, result: InsertionDeletionResult, *, subset: Tensor | None = None) -> None:
        """Add one batch of :func:`insertion_deletion` results and an optional bool ``subset``."""
        if not isinstance(result, InsertionDeletionResult):
            raise TypeError(
                f"result must be an InsertionDeletionResult, got {type(result).__name__}"
            )
        tensors = {
            name: getattr(result, name).detach().cpu().to(torch.float64)
            for name in self.STATES
            if name != "subset"
        }
        n_items = check_curves(*tensors.values())
        if self.n_updates and tensors["insertion_curve"].shape[1] != self._curve_length():
            raise ValueError(
                f"result has {tensors['insertion_curve'].shape[1] - 1} steps, earlier updates "
                f"had {self._curve_length() - 1}: curves of different lengths cannot be averaged"
            )
        if subset is not None:
            subset = check_flags(subset, name="subset", length=n_items).detach().cpu()
        self._append(**tensors, subset=subset)

    def compute(self) -> InsertionDeletionReport:
        """Mean AUCs and mean curves on all items and on the subset."""
        state = self._gathered()
        return insertion_deletion_summary(
            state["insertion_auc"],
            state["deletion_auc"],
            state["insertion_curve"],
            state["deletion_curve"],
            subset=state["subset"],
        )

    def _curve_length(self) -> int:
        return self._state["insertion_curve"][0].shape[1]


def _subset(parts: list[Tensor | None], *, sizes: list[int]) -> Tensor | None:
    """Concatenate per-update subset tags; untagged updates count as outside the subset."""
    if all(part is None for part in parts):
        return None
    return torch.cat(
        [
            torch.zeros(size, dtype=torch.bool) if part is None else part
            for part, size in zip(parts, sizes, strict=True)
        ]
    )
