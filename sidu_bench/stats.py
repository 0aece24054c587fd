"""Summary statistics of a run: means with seeded percentile-bootstrap 95 % CIs, and paired tests.

Protocol (DESIGN.md, "Evaluation protocol" item 8): per metric the mean, a 95 % CI by seeded
percentile bootstrap (1000 resamples; stratified by category for the per-class pointing-game
mean) and n, the number of items actually scored. Comparisons between explainers are paired
(the same items): the CI of the mean per-item difference; a CI that contains 0 is a tie.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 1000
CONFIDENCE = 0.95
_DRAWS_PER_BLOCK = 4_000_000


@dataclass(frozen=True)
class Estimate:
    """A mean with its bootstrap confidence interval.

    Attributes:
        mean: the point estimate (NaN when ``n`` is 0).
        low: lower end of the CI (NaN when ``n`` < 2).
        high: upper end of the CI (NaN when ``n`` < 2).
        n: number of values it was computed from.
    """

    mean: float
    low: float
    high: float
    n: int

    @property
    def is_tie(self) -> bool:
        """For a paired difference: whether the CI contains 0 (or is undefined)."""
        return not (self.low > 0 or self.high < 0)


def _clean(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if np.isnan(array).any():
        raise ValueError(f"{name} contains NaN; drop unscored items before summarising")
    return array


def _interval(statistics: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(statistics, [tail, 1.0 - tail])
    return float(low), float(high)


def bootstrap_mean(
    values: Sequence[float] | np.ndarray,
    *,
    seed: int,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
) -> Estimate:
    """Mean of ``values`` with a percentile-bootstrap CI.

    Each resample draws ``n`` indices uniformly with replacement from a generator seeded with
    ``seed`` (in blocks of resamples, so memory stays bounded for large ``n``); the CI is the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles (numpy's linear rule) of the
    resampled means.

    Args:
        values: one number per scored item.
        seed: the bootstrap's seed.
        resamples: number of bootstrap resamples.
        confidence: CI level.

    Returns:
        The :class:`Estimate`.

    Example:
        >>> bootstrap_mean([1.0, 2.0, 3.0, 4.0], seed=0).mean
        2.5
    """
    array = _clean(values, "values")
    n = array.size
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    mean = float(array.mean())
    if n < 2:
        return Estimate(mean, float("nan"), float("nan"), n)
    rng = np.random.default_rng(seed)
    block = max(1, _DRAWS_PER_BLOCK // n)
    means = np.concatenate(
        [
            array[rng.integers(0, n, size=(min(block, resamples - start), n))].mean(axis=1)
            for start in range(0, resamples, block)
        ]
    )
    return Estimate(mean, *_interval(means, confidence), n)


def bootstrap_class_mean(
    values: Sequence[float] | np.ndarray,
    categories: Sequence[str],
    *,
    seed: int,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
) -> Estimate:
    """Mean over categories of the per-category mean (TorchRay's pointing-game score), with CI.

    The bootstrap is stratified: each resample redraws, within every category, as many items as
    it has, so every category keeps its weight ``1 / n_categories``. A category with a single
    item never varies under that scheme, so the CI would shrink to nothing: when any category
    has fewer than two items the CI is undefined (NaN) and only the mean is reported.

    Args:
        values: one number per scored item (e.g. 1.0 for a hit, 0.0 for a miss).
        categories: the data set category of each item.
        seed: the bootstrap's seed.
        resamples: number of bootstrap resamples.
        confidence: CI level.

    Returns:
        The :class:`Estimate`; ``n`` is the number of items.
    """
    array = _clean(values, "values")
    labels = np.asarray(categories, dtype=object)
    if labels.shape != array.shape:
        raise ValueError(
            f"categories must have one entry per value ({array.size}), got {labels.size}"
        )
    if array.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    groups = [array[labels == name] for name in sorted(set(labels.tolist()))]
    mean = float(np.mean([group.mean() for group in groups]))
    if min(group.size for group in groups) < 2:
        return Estimate(mean, float("nan"), float("nan"), int(array.size))
    rng = np.random.default_rng(seed)
    per_group = np.stack(
        [
            group[rng.integers(0, group.size, size=(resamples, group.size))].mean(axis=1)
            for group in groups
        ]
    )
    return Estimate(mean, *_interval(per_group.mean(axis=0), confidence), int(array.size))


def paired_difference(
    first: Sequence[float] | np.ndarray,
    second: Sequence[float] | np.ndarray,
    *,
    seed: int,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
) -> Estimate:
    """Mean per-item difference ``first - second`` on the same items, with a bootstrap CI.

    Args:
        first: one value per item.
        second: the other method's value on the same items, in the same order.
        seed: the bootstrap's seed.
        resamples: number of bootstrap resamples.
        confidence: CI level.

    Returns:
        The :class:`Estimate` of the difference; ``is_tie`` when its CI contains 0.
    """
    a = _clean(first, "first")
    b = _clean(second, "second")
    if a.shape != b.shape:
        raise ValueError(f"paired values must have equal lengths, got {a.size} and {b.size}")
    return bootstrap_mean(a - b, seed=seed, resamples=resamples, confidence=confidence)
