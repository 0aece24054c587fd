"""The seeded, category-stratified item order behind ``--limit`` (docs/protocol.md, item 10).

Categories are put in a seeded random order, the items of each category (sorted by id) in a seeded
random order, and the result takes one item from each category in turn until all are used. The
first N items of this order are therefore spread over the categories, and the order depends only on
the item ids, their categories and the seed: the same for every model.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch


def stratified_order(ids: Sequence[str], categories: Sequence[str], *, seed: int = 0) -> list[int]:
    """Return all item indices in the seeded order that cycles through the categories.

    Args:
        ids: stable item ids, one per item (ties in the within-category order are broken by id).
        categories: the ground-truth category of each item.
        seed: seed of both permutations.

    Returns:
        A permutation of ``range(len(ids))``.

    Example:
        >>> categories = ["x", "x", "x", "y", "y", "z"]
        >>> order = stratified_order(["a", "b", "c", "d", "e", "f"], categories, seed=0)
        >>> sorted(categories[i] for i in order[:3])
        ['x', 'y', 'z']
    """
    if len(ids) != len(categories):
        raise ValueError(f"ids ({len(ids)}) and categories ({len(categories)}) differ in length")
    generator = torch.Generator().manual_seed(seed)
    groups: dict[str, list[int]] = defaultdict(list)
    for index in sorted(range(len(ids)), key=lambda i: ids[i]):
        groups[categories[index]].append(index)
    names = sorted(groups)
    names = [names[i] for i in torch.randperm(len(names), generator=generator).tolist()]
    queues = []
    for name in names:
        members = groups[name]
        queues.append([members[i] for i in torch.randperm(len(members), generator=generator)])
    order: list[int] = []
    for rank in range(max((len(q) for q in queues), default=0)):
        order.extend(queue[rank] for queue in queues if rank < len(queue))
    return order


def limit_order(
    ids: Sequence[str], categories: Sequence[str], *, limit: int | None, seed: int = 0
) -> list[int]:
    """Return the first ``limit`` indices of :func:`stratified_order` (all of them for ``None``)."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    order = stratified_order(ids, categories, seed=seed)
    return order if limit is None else order[:limit]
