"""The seeded, category-stratified ``--limit`` order."""

from __future__ import annotations

import random

import pytest

from sidu_bench.data.order import limit_order, stratified_order

IDS = [f"{c}{i}" for c in "abcd" for i in range(5)] + ["e0", "e1"]
CATEGORIES = [i[0] for i in IDS]


def test_is_a_permutation_that_cycles_through_categories():
    order = stratified_order(IDS, CATEGORIES, seed=3)
    assert sorted(order) == list(range(len(IDS)))
    first_round = [CATEGORIES[i] for i in order[:5]]
    assert sorted(first_round) == list("abcde")
    second_round = [CATEGORIES[i] for i in order[5:10]]
    assert sorted(second_round) == list("abcde")
    # Category "e" runs out after two rounds; the others keep cycling in the same order.
    assert [CATEGORIES[i] for i in order[10:14]] == [c for c in first_round if c != "e"]


def test_depends_on_seed_and_ids_only():
    order = stratified_order(IDS, CATEGORIES, seed=0)
    assert order == stratified_order(IDS, CATEGORIES, seed=0)
    assert order != stratified_order(IDS, CATEGORIES, seed=1)
    shuffled = list(range(len(IDS)))
    random.Random(0).shuffle(shuffled)
    reordered = stratified_order(
        [IDS[i] for i in shuffled], [CATEGORIES[i] for i in shuffled], seed=0
    )
    assert [IDS[shuffled[i]] for i in reordered] == [IDS[i] for i in order]


def test_limit_takes_a_prefix():
    assert (
        limit_order(IDS, CATEGORIES, limit=7, seed=2)
        == stratified_order(IDS, CATEGORIES, seed=2)[:7]
    )
    assert limit_order(IDS, CATEGORIES, limit=None, seed=2) == stratified_order(
        IDS, CATEGORIES, seed=2
    )
    assert limit_order(IDS, CATEGORIES, limit=0) == []


def test_bad_arguments():
    with pytest.raises(ValueError, match="limit"):
        limit_order(IDS, CATEGORIES, limit=-1)
    with pytest.raises(ValueError, match="differ in length"):
        stratified_order(IDS, CATEGORIES[:-1])
