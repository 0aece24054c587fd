"""Summary statistics of a run: means with seeded percentile-bootstrap 95 % CIs, and paired tests.

Protocol (docs/protocol.md, item 8): per metric the mean, a 95 % CI by seeded
percentile bootstrap (1000 resamples; stratified by category for the per-class pointing-game
mean) and n, the number of items actually scored. Comparisons between explainers are paired
(the same items): the mean per-item difference with its paired bootstrap CI (the effect size),
and a two-sided paired sign-flip permutation test of that mean (:func:`sign_flip_test`). The
verdict of a comparison (:func:`verdict`) comes from Holm-adjusted p-values (:func:`holm`) over
the family of comparisons printed in one table, at family-wise level :data:`FAMILYWISE_ALPHA`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 1000
CONFIDENCE = 0.95
PERMUTATION_DRAWS = 10_000
"""Monte Carlo draws of the sign-flip test when it cannot enumerate every sign pattern."""
EXACT_LIMIT = 16
"""Up to this many non-zero differences the sign-flip test enumerates all ``2 ** n0`` patterns."""
FAMILYWISE_ALPHA = 0.05
"""Family-wise error rate of the Holm-adjusted verdicts."""
TIE_RTOL = 1e-9
"""Relative tolerance (of ``sum |d|``) within which a permuted statistic ties the observed one."""
VERDICT_BETTER = "better than reference"
VERDICT_WORSE = "worse than reference"
VERDICT_NONE = "no significant difference"
VERDICT_TOO_SMALL = "n too small"
VERDICT_NA = "n/a"
VERDICT_REFERENCE = "reference"
"""The verdict of the reference explainer's own row (it is not compared with itself)."""
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


def stratified_interval(
    groups: Sequence[Sequence[float] | np.ndarray],
    *,
    seed: int,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Percentile-bootstrap CI of the mean over groups of the per-group mean, stratified.

    The CI of TorchRay's per-class pointing-game score (its point estimate is
    :func:`sidu_bench.tables.statistics.per_class_mean`). Each resample
    redraws, within every group and in the given order, as many values as the group has, from
    one generator seeded with ``seed``, so every group keeps its weight ``1 / n_groups``. A
    group with a single value never varies under that scheme, so the CI would shrink to
    nothing: when any group has fewer than two values (or there is none) the CI is undefined.

    Args:
        groups: the values of each group (e.g. 1.0 for a hit, 0.0 for a miss), groups in a
            fixed order (e.g. sorted category names).
        seed: the bootstrap's seed.
        resamples: number of bootstrap resamples.
        confidence: CI level.

    Returns:
        ``(low, high)``, NaN when undefined.

    Example:
        >>> stratified_interval([[1.0, 1.0], [0.0, 0.0]], seed=0)
        (0.5, 0.5)
    """
    arrays = [_clean(group, "each group") for group in groups]
    if not arrays or min(array.size for array in arrays) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    per_group = np.stack(
        [
            array[rng.integers(0, array.size, size=(resamples, array.size))].mean(axis=1)
            for array in arrays
        ]
    )
    return _interval(per_group.mean(axis=0), confidence)


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
        The :class:`Estimate` of the difference (an effect size; verdicts come from
        :func:`sign_flip_test` and :func:`holm`).
    """
    a = _clean(first, "first")
    b = _clean(second, "second")
    if a.shape != b.shape:
        raise ValueError(f"paired values must have equal lengths, got {a.size} and {b.size}")
    return bootstrap_mean(a - b, seed=seed, resamples=resamples, confidence=confidence)


def sign_flip_test(
    differences: Sequence[float] | np.ndarray, *, seed: int, draws: int = PERMUTATION_DRAWS
) -> float:
    """Two-sided p-value of a paired sign-flip permutation test of the mean difference.

    Under the null hypothesis each per-item difference is as likely to have either sign. The
    statistic is the sum of the differences (the mean times ``n``; the same test). Zero
    differences carry no sign: flipping them changes nothing, so only the ``n0`` non-zero ones
    are flipped, while the statistic still sums every item. With ``n0 <= EXACT_LIMIT`` all
    ``2 ** n0`` sign patterns are enumerated and ``p`` is the share whose ``|statistic|`` is at
    least the observed one (so ``p >= 2 ** (1 - n0)``); beyond that ``draws`` patterns are drawn
    from a generator seeded with ``seed`` and ``p = (b + 1) / (draws + 1)``, with ``b`` the draws
    at least as extreme. A permuted statistic within ``TIE_RTOL * sum |d|`` of the observed one
    counts as a tie (as extreme), so rounding never splits patterns that are equal in exact
    arithmetic. ``n0 = 0`` gives ``p = 1``.

    Args:
        differences: one paired difference per item (e.g. explainer minus reference).
        seed: the Monte Carlo generator's seed (unused when the test is exact).
        draws: Monte Carlo draws, at least 1.

    Returns:
        The two-sided p-value, in ``(0, 1]``.

    Raises:
        ValueError: ``differences`` is not one-dimensional, holds NaN or infinities, or
            ``draws`` < 1.

    Example:
        >>> sign_flip_test([1.0, 2.0, 3.0], seed=0)  # only +++ and --- reach |6|: 2 of 8
        0.25
    """
    array = _clean(differences, "differences")
    if not np.isfinite(array).all():
        raise ValueError("differences must be finite")
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    magnitudes = np.abs(array[array != 0])
    n0 = magnitudes.size
    if n0 == 0:
        return 1.0
    total = float(magnitudes.sum())
    threshold = abs(float(array.sum())) - TIE_RTOL * total
    if n0 <= EXACT_LIMIT:
        patterns = np.arange(2**n0, dtype=np.int64)[:, None] >> np.arange(n0) & 1
        extreme = int(np.count_nonzero(np.abs(total - 2.0 * (patterns @ magnitudes)) >= threshold))
        return extreme / 2**n0
    rng = np.random.default_rng(seed)
    block = max(1, _DRAWS_PER_BLOCK // n0)
    extreme = 0
    for start in range(0, draws, block):
        flips = rng.integers(0, 2, size=(min(block, draws - start), n0), dtype=np.int8)
        extreme += int(np.count_nonzero(np.abs(total - 2.0 * (flips @ magnitudes)) >= threshold))
    return (extreme + 1) / (draws + 1)


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control), capped at 1.

    Sorted ascending, the ``k``-th smallest of ``m`` p-values (``k`` from 1) becomes
    ``max_{j <= k} min(1, (m - j + 1) * p_(j))``, so adjusted values keep the order of the raw
    ones; a hypothesis is rejected at family-wise level ``alpha`` when its adjusted p is at most
    ``alpha``. NaN entries are not tests: they stay NaN and do not count in ``m``.

    Args:
        p_values: raw p-values in ``[0, 1]`` (NaN for comparisons that were not tested).

    Returns:
        The adjusted p-values, in the input order.

    Raises:
        ValueError: ``p_values`` is not one-dimensional or has a value outside ``[0, 1]``.

    Example:
        >>> holm([0.01, 0.04, 0.03, 0.005]).tolist()
        [0.03, 0.06, 0.06, 0.02]
    """
    array = np.asarray(p_values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"p_values must be one-dimensional, got shape {array.shape}")
    tested = ~np.isnan(array)
    if ((array[tested] < 0) | (array[tested] > 1)).any():
        raise ValueError("p_values must lie in [0, 1] (or be NaN for untested comparisons)")
    adjusted = np.full(array.shape, np.nan)
    positions = np.flatnonzero(tested)
    order = positions[np.argsort(array[positions], kind="stable")]
    m = order.size
    running = 0.0
    for k, index in enumerate(order):
        running = max(running, min(1.0, (m - k) * float(array[index])))
        adjusted[index] = running
    return adjusted


def min_achievable_p(n_nonzero: int) -> float:
    """The smallest p-value of the exact two-sided sign-flip test with ``n_nonzero`` signs.

    Only the observed sign pattern and its mirror image can be the most extreme, so
    ``p >= 2 / 2 ** n0 = 2 ** (1 - n0)`` (2 for ``n0 = 0``, where ``p`` is 1).

    Example:
        >>> min_achievable_p(10)
        0.001953125
    """
    if n_nonzero < 0:
        raise ValueError(f"n_nonzero must be >= 0, got {n_nonzero}")
    return 2.0 ** (1 - n_nonzero)


def too_small(n_nonzero: int, family_size: int, *, alpha: float = FAMILYWISE_ALPHA) -> bool:
    """Whether even the smallest achievable p could not pass: ``m * 2 ** (1 - n0) > alpha``.

    This is the first (strictest) Holm step, ``alpha / m``; with ``m = 25`` it holds for
    ``n0 <= 9``.

    Example:
        >>> too_small(9, 25), too_small(10, 25)
        (True, False)
    """
    if family_size < 1:
        raise ValueError(f"family_size must be at least 1, got {family_size}")
    return family_size * min_achievable_p(n_nonzero) > alpha


def verdict(
    difference: float,
    p_holm: float,
    *,
    n: int,
    n_nonzero: int,
    family_size: int,
    higher_is_better: bool,
    alpha: float = FAMILYWISE_ALPHA,
) -> str:
    """The verdict of one comparison ``explainer - reference`` within a family of ``m``.

    In order: ``"n/a"`` when nothing was compared (``n = 0``); ``"better than reference"`` or
    ``"worse than reference"`` when the Holm-adjusted p is at most ``alpha`` (the direction is the
    sign of the mean difference, reversed for a metric where lower is better); ``"n too small"``
    when :func:`too_small` (too few non-zero differences for any p to pass the first Holm step);
    otherwise ``"no significant difference"``.

    Args:
        difference: the mean per-item difference, explainer minus reference.
        p_holm: its Holm-adjusted p-value.
        n: the number of paired items.
        n_nonzero: how many of them have a non-zero difference.
        family_size: ``m``, the number of tested comparisons in the family.
        higher_is_better: the metric's direction.
        alpha: the family-wise level.

    Returns:
        One of the ``VERDICT_*`` strings.

    Example:
        >>> verdict(0.2, 0.01, n=40, n_nonzero=40, family_size=25, higher_is_better=False)
        'worse than reference'
    """
    if n == 0:
        return VERDICT_NA
    if p_holm <= alpha:
        better = difference > 0 if higher_is_better else difference < 0
        return VERDICT_BETTER if better else VERDICT_WORSE
    if too_small(n_nonzero, family_size, alpha=alpha):
        return VERDICT_TOO_SMALL
    return VERDICT_NONE
