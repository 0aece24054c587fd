"""Each built-in metric's declaration ``monotone_invariant`` holds on random maps (issue 25).

A metric declared invariant gives exactly the same record values when a strictly increasing
function is applied to the map (and, for the sanity checks, to every map it compares); one
declared not invariant changes under at least one such function. The energy pointing game's
temperature variants are checked against a plain loop.
"""

import math

import numpy as np
import pytest
import torch
from reference_metrics import tiny_cnn

from sidu_bench.metrics import ScoredItem, ScoringSettings, get_metric, list_metrics
from sidu_bench.metrics.localisation import TEMPERATURE_POWERS, tempered

SIZE = 16
TRANSFORMS = {
    "cube plus identity": lambda m: m**3 + m,
    "exp": lambda m: torch.exp(2 * m),
    "shift": lambda m: m + 1.5,
}
BUILT_IN = (
    "pointing_game",
    "energy_pointing_game",
    "energy_temperature",
    "region_auc",
    "insertion_deletion",
    "road",
    "mprt",
    "emprt",
)


def item(maps, region, model, transform, seed):
    """An item whose maps (its own and, for the sanity checks, under changed weights) go
    through ``transform``; the maps under other weights are fixed random maps per model."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(1, 3, SIZE, SIZE, generator=generator)
    under = {}

    def explain_under(other):
        if id(other) not in under:
            under[id(other)] = torch.randn(1, SIZE, SIZE, generator=generator)
        return transform(under[id(other)])

    return ScoredItem(
        model,
        image,
        transform(maps),
        torch.tensor([0]),
        region,
        item_id=f"x/{seed}",
        explain_under=explain_under,
    )


def record_values(name, maps, region, transform, seed):
    torch.manual_seed(0)
    model = tiny_cnn(seed=1, n_classes=3).eval()
    settings = ScoringSettings(tolerance=2.0, steps=8, step=None, seed=seed, blocks=())
    score = get_metric(name).evaluate(item(maps, region, model, transform, seed), settings)
    return {key: value for key, value in score.values.items() if not key.endswith("_undefined")}


def test_every_built_in_metric_is_checked():
    # a metric added to the package without a checked declaration fails here
    assert set(list_metrics()) == set(BUILT_IN)


@pytest.mark.parametrize("name", BUILT_IN)
def test_declared_invariance_holds_on_random_maps(name):
    metric = get_metric(name)
    changed = []
    for seed in range(3):
        generator = torch.Generator().manual_seed(100 + seed)
        maps = torch.randn(1, SIZE, SIZE, generator=generator, dtype=torch.float64).float()
        region = torch.rand(SIZE, SIZE, generator=generator) > 0.6
        plain = record_values(name, maps, region, lambda m: m, seed)
        assert plain, f"{name} scored nothing"
        for label, transform in TRANSFORMS.items():
            values = record_values(name, maps, region, transform, seed)
            for column, value in plain.items():
                same = value == values[column] or (
                    isinstance(value, float) and math.isnan(value) and math.isnan(values[column])
                )
                if not same:
                    changed.append((seed, label, column, value, values[column]))
    if metric.monotone_invariant:
        assert changed == [], f"{name} is declared invariant but changed: {changed[:3]}"
    else:
        assert changed, f"{name} is declared not invariant but never changed"


def test_only_the_energy_pointing_game_among_the_region_metrics_is_not_invariant():
    declared = {name: get_metric(name).monotone_invariant for name in BUILT_IN}
    assert declared == {
        "pointing_game": True,
        "energy_pointing_game": False,
        "energy_temperature": False,
        "region_auc": True,
        "insertion_deletion": True,
        "road": True,
        "mprt": False,
        "emprt": False,
    }


def energy_reference(saliency: np.ndarray, region: np.ndarray, power: float) -> float:
    """The energy share of the min-max scaled map ** power, by plain loops (same size)."""
    low, high = saliency.min(), saliency.max()
    inside = total = 0.0
    for y in range(saliency.shape[0]):
        for x in range(saliency.shape[1]):
            value = ((saliency[y, x] - low) / (high - low)) ** power if high > low else 0.0
            total += value
            inside += value if region[y, x] else 0.0
    return inside / total if total > 0 else 0.0


def test_temperature_variants_against_a_loop():
    rng = np.random.default_rng(3)
    saliency = rng.normal(size=(SIZE, SIZE))
    region = rng.random((SIZE, SIZE)) > 0.5
    model = tiny_cnn(seed=1, n_classes=3).eval()
    settings = ScoringSettings(tolerance=None, steps=8, step=None)
    scored = ScoredItem(
        model,
        torch.zeros(1, 3, SIZE, SIZE),
        torch.from_numpy(saliency).float()[None],
        torch.tensor([0]),
        torch.from_numpy(region),
    )
    values = get_metric("energy_temperature").evaluate(scored, settings).values
    for column, power in TEMPERATURE_POWERS.items():
        expected = energy_reference(saliency.astype(np.float32).astype(np.float64), region, power)
        assert values[column] == pytest.approx(expected, rel=1e-5)
    flat = ScoredItem(
        model,
        torch.zeros(1, 3, SIZE, SIZE),
        torch.full((1, SIZE, SIZE), 2.0),
        torch.tensor([0]),
        torch.from_numpy(region),
    )
    flat_values = get_metric("energy_temperature").evaluate(flat, settings).values
    assert flat_values["energy_pointing_game_sqrt"] == 0.0
    assert flat_values["energy_pointing_game_sq"] == 0.0


def test_tempered_keeps_the_order():
    maps = torch.randn(2, 5, 7)
    for power in (0.5, 2.0):
        out = tempered(maps, power)
        assert out.min() >= 0
        assert out.max() <= 1
        for b in range(2):
            assert torch.equal(maps[b].flatten().argsort(), out[b].flatten().argsort())
