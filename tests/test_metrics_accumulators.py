"""Accumulators: hand-computed per-class numbers, functional vs class agreement, subsets,
reset and input errors."""

import math

import numpy as np
import pytest
import torch
from reference_metrics import tiny_cnn

from sidu_bench.metrics import (
    EnergyPointingGame,
    InsertionDeletion,
    PointingGame,
    RegionAUC,
    energy_pointing_game,
    insertion_deletion,
    insertion_deletion_summary,
    localisation_summary,
    pointing_game,
    region_auc,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _bools(*values: int) -> torch.Tensor:
    return torch.tensor([bool(v) for v in values])


def test_pointing_game_per_class_hand_computed():
    metric = PointingGame()
    # Category 0: hits 1 of 2. Category 1: 2 of 3. Category 2: only a skipped item.
    metric.update(
        _bools(1, 0, 1), _bools(1, 1, 1), categories=torch.tensor([0, 0, 1]), subset=_bools(0, 1, 1)
    )
    metric.update(
        _bools(1, 0, 0), _bools(1, 1, 0), categories=torch.tensor([1, 1, 2]), subset=_bools(0, 1, 1)
    )
    report = metric.compute()
    summary = report.all_items
    assert summary.categories.tolist() == [0, 1]
    assert summary.class_sums.tolist() == [1.0, 2.0]  # hits
    assert summary.class_counts.tolist() == [2, 3]  # trials
    assert summary.class_means.tolist() == pytest.approx([1 / 2, 2 / 3], abs=1e-15)
    assert summary.per_class_mean == pytest.approx((1 / 2 + 2 / 3) / 2, abs=1e-15)
    assert summary.overall_mean == pytest.approx(3 / 5, abs=1e-15)
    assert (summary.n_valid, summary.n_skipped) == (5, 1)
    # Subset: items 2, 3, 5, 6 -> category 0: 0 of 1, category 1: 1 of 2, one skipped.
    subset = report.subset
    assert subset.class_sums.tolist() == [0.0, 1.0]
    assert subset.class_counts.tolist() == [1, 2]
    assert subset.per_class_mean == pytest.approx((0 + 1 / 2) / 2, abs=1e-15)
    assert subset.overall_mean == pytest.approx(1 / 3, abs=1e-15)
    assert (subset.n_valid, subset.n_skipped) == (3, 1)


def test_functional_and_class_agree_on_real_metric_outputs():
    generator = np.random.default_rng(1)
    batches = []
    for _ in range(4):
        maps = torch.from_numpy(generator.random((8, 6, 6)))
        regions = []
        for _ in range(8):
            region = torch.zeros(24, 30, dtype=torch.bool)
            if generator.random() > 0.2:
                top, left = generator.integers(0, 20), generator.integers(0, 26)
                region[top : top + 4, left : left + 4] = True
            regions.append(region)
        categories = torch.from_numpy(generator.integers(0, 3, 8))
        subset = torch.from_numpy(generator.random(8) > 0.5)
        batches.append((maps, regions, categories, subset))

    for cls, function, options in (
        (PointingGame, pointing_game, {"tolerance": 6.0}),
        (EnergyPointingGame, energy_pointing_game, {}),
        (RegionAUC, region_auc, {}),
    ):
        metric = cls()
        outputs = []
        for maps, regions, categories, subset in batches:
            values, valid = function(maps, regions, **options)
            metric.update(values, valid, categories=categories, subset=subset)
            outputs.append((values, valid, categories, subset))
        report = metric.compute()
        values, valid, categories, subset = (
            torch.cat(parts) for parts in zip(*outputs, strict=True)
        )
        functional = localisation_summary(values, valid, categories=categories, subset=subset)
        for got, expected in (
            (report.all_items, functional.all_items),
            (report.subset, functional.subset),
        ):
            assert got.per_class_mean == expected.per_class_mean
            assert got.overall_mean == expected.overall_mean
            assert torch.equal(got.class_sums, expected.class_sums)
        # And both equal a plain per-class loop.
        for mask, summary in ((torch.ones_like(subset), report.all_items), (subset, report.subset)):
            per_class = {}
            for value, ok, category, keep in zip(
                values.tolist(), valid.tolist(), categories.tolist(), mask.tolist(), strict=True
            ):
                if ok and keep:
                    per_class.setdefault(category, []).append(float(value))
            means = [sum(v) / len(v) for _, v in sorted(per_class.items())]
            everything = [x for _, v in sorted(per_class.items()) for x in v]
            assert summary.per_class_mean == pytest.approx(sum(means) / len(means), abs=1e-12)
            assert summary.overall_mean == pytest.approx(
                sum(everything) / len(everything), abs=1e-12
            )
            assert summary.n_valid == len(everything)
            assert summary.n_skipped == int((mask & ~valid).sum())
        assert report.all_items.n_skipped > 0


def test_invalid_values_are_ignored_even_when_nan():
    metric = RegionAUC()
    metric.update(
        torch.tensor([0.9, math.nan, 0.5, 0.25], dtype=torch.float64),
        _bools(1, 0, 1, 1),
        categories=[7, 7, 7, 9],
    )
    summary = metric.compute().all_items
    assert summary.categories.tolist() == [7, 9]
    assert summary.per_class_mean == pytest.approx((0.7 + 0.25) / 2, abs=1e-15)
    assert summary.overall_mean == pytest.approx(1.65 / 3, abs=1e-15)
    assert (summary.n_valid, summary.n_skipped) == (3, 1)
    assert metric.compute().subset is None


def test_untagged_updates_count_as_outside_the_subset_and_empty_subset_is_nan():
    metric = EnergyPointingGame()
    metric.update(torch.tensor([0.5, 1.0]), _bools(1, 1), categories=[0, 1])
    metric.update(torch.tensor([0.25]), _bools(1), categories=[0], subset=_bools(1))
    subset = metric.compute().subset
    assert (subset.n_valid, subset.overall_mean) == (1, 0.25)
    metric.reset()
    metric.update(torch.tensor([0.5]), _bools(1), categories=[0], subset=_bools(0))
    subset = metric.compute().subset
    assert subset.n_valid == 0
    assert math.isnan(subset.per_class_mean)
    assert math.isnan(subset.overall_mean)


def test_reset_forgets_and_compute_before_update_raises():
    metric = PointingGame()
    with pytest.raises(RuntimeError, match=r"PointingGame.compute\(\) called before any update"):
        metric.compute()
    metric.update(_bools(1), _bools(1), categories=[0])
    assert metric.n_updates == 1
    metric.reset()
    assert metric.n_updates == 0
    metric.update(_bools(0), _bools(1), categories=[0])
    assert metric.compute().all_items.overall_mean == 0.0


def test_insertion_deletion_accumulator_matches_the_functional_means():
    model = tiny_cnn(seed=2)
    generator = torch.Generator().manual_seed(3)
    metric = InsertionDeletion()
    results = []
    subsets = [_bools(1, 0, 0), _bools(0, 1, 1)]
    for subset in subsets:
        images = torch.randn(3, 3, 10, 10, generator=generator)
        maps = torch.rand(3, 10, 10, generator=generator)
        result = insertion_deletion(model, images, maps, steps=12)
        metric.update(result, subset=subset)
        results.append(result)
    report = metric.compute()
    insertion = torch.cat([r.insertion_auc for r in results])
    deletion_curves = torch.cat([r.deletion_curve for r in results])
    assert report.all_items.n == 6
    assert report.all_items.insertion_auc == pytest.approx(insertion.mean().item(), abs=1e-15)
    np.testing.assert_allclose(
        report.all_items.deletion_curve.numpy(), deletion_curves.mean(0).numpy(), atol=1e-15
    )
    mask = torch.cat(subsets)
    assert report.subset.n == 3
    assert report.subset.insertion_auc == pytest.approx(insertion[mask].mean().item(), abs=1e-15)
    functional = insertion_deletion_summary(
        insertion,
        torch.cat([r.deletion_auc for r in results]),
        torch.cat([r.insertion_curve for r in results]),
        deletion_curves,
        subset=mask,
    )
    assert functional.all_items.deletion_auc == report.all_items.deletion_auc
    assert functional.subset.insertion_auc == report.subset.insertion_auc
    # Hand check of the functional means.
    curve = torch.tensor([[1.0, 0.5, 0.0], [1.0, 1.0, 1.0]])
    hand = insertion_deletion_summary(
        torch.tensor([0.5, 1.0]), torch.tensor([0.5, 1.0]), curve, curve
    )
    assert hand.all_items.deletion_auc == 0.75
    assert hand.all_items.deletion_curve.tolist() == [1.0, 0.75, 0.5]


def test_insertion_deletion_accumulator_rejects_mixed_step_counts():
    model = tiny_cnn(seed=4)
    images, maps = torch.randn(1, 3, 6, 6), torch.rand(1, 6, 6)
    metric = InsertionDeletion()
    metric.update(insertion_deletion(model, images, maps, steps=4))
    with pytest.raises(ValueError, match=r"result has 5 steps, earlier updates had 4"):
        metric.update(insertion_deletion(model, images, maps, steps=5))
    with pytest.raises(TypeError, match=r"result must be an InsertionDeletionResult"):
        metric.update({"insertion_auc": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"subset must have shape \(1,\)"):
        metric.update(insertion_deletion(model, images, maps, steps=4), subset=_bools(1, 0))


@pytest.mark.parametrize(
    ("cls", "values", "valid", "categories", "subset", "error", "message"),
    [
        (
            PointingGame,
            torch.tensor([1.0]),
            _bools(1),
            [0],
            None,
            TypeError,
            r"hits must be a boolean",
        ),
        (
            EnergyPointingGame,
            _bools(1),
            _bools(1),
            [0],
            None,
            TypeError,
            r"values must be a floating",
        ),
        (
            RegionAUC,
            torch.zeros(2, 2),
            _bools(1),
            [0],
            None,
            ValueError,
            r"values must be a 1-D tensor",
        ),
        (
            RegionAUC,
            torch.zeros(2),
            _bools(1),
            [0, 1],
            None,
            ValueError,
            r"valid must have shape \(2,\)",
        ),
        (
            RegionAUC,
            torch.zeros(1),
            torch.ones(1),
            [0],
            None,
            TypeError,
            r"valid must be a boolean tensor",
        ),
        (
            RegionAUC,
            torch.zeros(1),
            _bools(1),
            [0.5],
            None,
            TypeError,
            r"categories must hold integer",
        ),
        (
            RegionAUC,
            torch.zeros(1),
            _bools(1),
            [0, 1],
            None,
            ValueError,
            r"categories must have shape \(1,\)",
        ),
        (
            RegionAUC,
            torch.zeros(1),
            _bools(1),
            [0],
            torch.ones(1),
            TypeError,
            r"subset must be a boolean tensor",
        ),
        (
            RegionAUC,
            torch.zeros(1),
            _bools(1),
            [0],
            _bools(1, 1),
            ValueError,
            r"subset must have shape \(1,\)",
        ),
    ],
)
def test_bad_updates_raise_clear_errors(cls, values, valid, categories, subset, error, message):
    with pytest.raises(error, match=message):
        cls().update(values, valid, categories=categories, subset=subset)
