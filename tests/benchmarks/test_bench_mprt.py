"""Speed of our MPRT against ``quantus.MPRT``: same model, items, explainer and granularity.

The synthetic CNN (9 layers with ``reset_parameters``) and 8 synthetic items, Grad-CAM on
``features``, layer granularity (Quantus has no other), on the CPU. Both sides do the whole job
from a trained model to the per-layer correlations of every item: Quantus its ``__call__``
(once with its default ``batch_size=64``, which covers the items: one explanation call per
layer, and once with ``batch_size=1``, one call per item and layer as the runner makes them; it
explains the original model twice, for ``a_batch`` and for its ``"original"`` score); ours
the original maps and the registered ``mprt`` metric item by item as the runner calls it, on a
fresh copy of the model so that the randomised sequence is built inside the timing (a run
builds it once and reuses it for every item). Each side runs ``ROUNDS`` times alternately; the
medians are compared and recorded in ``extra_info``. Run with
``pytest tests/benchmarks/test_bench_mprt.py --benchmark-only``.
"""

import copy
import statistics
import time

import numpy as np
import pytest
import torch

from sidu_bench.data import get_dataset
from sidu_bench.explainers import get_explainer
from sidu_bench.metrics import ScoredItem, ScoringSettings, get_metric
from sidu_bench.models import get_model

quantus = pytest.importorskip("quantus")

SEED = 0
N_ITEMS = 8
ROUNDS = 5
EXPLAINER = "gradcam"
LAYER = "features"


def _explain(model, images, targets):
    explainer = get_explainer(EXPLAINER, model, LAYER, seed=SEED)
    return explainer(images, targets, ["bench"] * len(images)).detach()


def _quantus(model, images, targets, batch_size=64):
    def explain_func(model, inputs, targets, **kwargs):
        return _explain(
            model, torch.as_tensor(inputs), torch.as_tensor(targets, dtype=torch.long)
        ).numpy()

    metric = quantus.MPRT(seed=SEED, disable_warnings=True, display_progressbar=False)
    with torch.random.fork_rng(devices=[]):
        scores = metric(
            model=model,
            x_batch=images.numpy(),
            y_batch=targets.numpy(),
            a_batch=None,
            explain_func=explain_func,
            device="cpu",
            batch_size=batch_size,
        )
    return np.array([scores[layer] for layer in list(scores)[1:]]).T


def _ours(model, images, targets):
    metric = get_metric("mprt")
    settings = ScoringSettings(tolerance=None, steps=8, step=None, seed=SEED)
    curves = []
    for index in range(len(images)):
        image, target = images[index : index + 1], targets[index : index + 1]
        item = ScoredItem(
            model,
            image,
            _explain(model, image, target),
            target,
            None,
            item_id=str(index),
            explain_under=lambda other, image=image, target=target: _explain(other, image, target),
        )
        curves.append(metric.evaluate(item, settings).curves["mprt"].numpy())
    return np.stack(curves)


def test_mprt_against_quantus(benchmark, one_thread):
    spec = get_model("synthetic_cnn")
    dataset = get_dataset("synthetic", None, spec, num_items=N_ITEMS, seed=3)
    images = torch.stack([dataset[index].image for index in range(N_ITEMS)])
    with torch.no_grad():
        targets = spec.module(images).argmax(1)
    # Warm-up, and the two must agree: within 1e-4, not 1e-9, because Quantus explains the 8
    # items in one batch (float32 sums in another order than one item at a time) and divides by
    # the batch's maximum in float32, so a few near-ties change (tests/test_metrics_sanity.py
    # compares item by item within 1e-9).
    np.testing.assert_allclose(
        _ours(copy.deepcopy(spec.module), images, targets),
        _quantus(spec.module, images, targets),
        rtol=0,
        atol=1e-4,
    )
    seconds = {"ours": [], "quantus": [], "quantus_per_item": []}
    for _ in range(ROUNDS):
        fresh = copy.deepcopy(spec.module)  # an empty cache: the sequence is built in the timing
        start = time.perf_counter()
        _ours(fresh, images, targets)
        seconds["ours"].append(time.perf_counter() - start)
        start = time.perf_counter()
        _quantus(spec.module, images, targets)
        seconds["quantus"].append(time.perf_counter() - start)
        start = time.perf_counter()
        _quantus(spec.module, images, targets, batch_size=1)
        seconds["quantus_per_item"].append(time.perf_counter() - start)
    benchmark.pedantic(
        lambda: _ours(copy.deepcopy(spec.module), images, targets), rounds=1, iterations=1
    )
    ours, theirs, per_item = (statistics.median(times) for times in seconds.values())
    benchmark.extra_info.update(
        {
            "model": "synthetic_cnn",
            "explainer": EXPLAINER,
            "granularity": "layer",
            "items": N_ITEMS,
            "layers": 9,
            "rounds": ROUNDS,
            "ours_seconds_median": round(ours, 4),
            "quantus_seconds_median": round(theirs, 4),
            "quantus_per_item_seconds_median": round(per_item, 4),
            **{f"{side}_seconds": [round(t, 4) for t in times] for side, times in seconds.items()},
            "speed_up_over_quantus": round(theirs / ours, 2),
            "speed_up_over_quantus_per_item": round(per_item / ours, 2),
        }
    )
    # Like for like (one explanation call per item and layer, as the runner calls metrics), ours
    # must not be slower. Quantus's batched call makes 8x fewer explainer calls; on this tiny
    # model the per-call cost of our explainers (their model-state checks) dominates, and ours is
    # slower than it (about 0.6x on a busy 2-core CPU): extra_info records that ratio.
    assert ours <= per_item, f"ours {ours:.3f} s, quantus.MPRT {per_item:.3f} s (median)"
