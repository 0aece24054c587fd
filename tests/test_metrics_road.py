"""ROAD (sidu_bench.metrics.road) against the peers' code and plain float64 references.

- the imputation against pytorch-grad-cam's ``NoisyLinearImputer(noise=0)`` and Quantus's
  ``noisy_linear_imputation(noise=0)`` on real images with saliency-ordered (blob) removal sets
  at 10, 50 and 90 %, and against a dense ``numpy.linalg.solve`` of the system written with loops;
- the conjugate-gradient solver of the CUDA path, run on the CPU, against the direct solve;
- the per-fraction probabilities against pytorch-grad-cam's ``PerturbationConfidenceMetric``
  and against a plain loop;
- the noise (seeded, reproducible, its spread; pixel space = denormalise, impute, renormalise),
  the argument checks, and the registered metric end to end.
"""

from __future__ import annotations

import hashlib
import json
import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
import torch
from fixtures_data import fake_spec, shared_data
from sidu_models import tiny_cnn
from torch import nn

import sidu_bench.metrics.road as road
from sidu_bench.data import get_dataset
from sidu_bench.metrics import (
    ScoredItem,
    ScoringSettings,
    get_metric,
    impute_noisy_linear,
    road_curves,
)

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = shared_data()
needs_real_data = pytest.mark.skipif(
    not (ROOT / "imagenet-val").is_dir(),
    reason=f"real ImageNet subset not found at {ROOT} (set SIDU_BENCH_SHARED_DATA)",
)
PEER_NUMPY_WARNING = "ignore:__array_wrap__ must accept context:DeprecationWarning"
"""pytorch-grad-cam's imputer calls numpy functions on torch tensors (its code, not ours)."""
OFFSETS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


# --- plain references -------------------------------------------------------------------------


def dense_impute(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """The imputation system written plainly: one equation per removed pixel, dense solve.

    ``sum_j w_ij (u_i - x_j) = 0`` over the in-frame neighbours ``j`` (w = 1/6 edge, 1/12
    diagonal), ``x_j`` the unknown of a removed neighbour or the value of a kept one.
    """
    channels, height, width = image.shape
    pixels = [(y, x) for y in range(height) for x in range(width) if removed[y, x]]
    number = {pixel: i for i, pixel in enumerate(pixels)}
    matrix = np.zeros((len(pixels), len(pixels)))
    rhs = np.zeros((len(pixels), channels))
    for i, (y, x) in enumerate(pixels):
        for dy, dx in OFFSETS:
            ny, nx = y + dy, x + dx
            if not (0 <= ny < height and 0 <= nx < width):
                continue
            weight = 1 / 6 if dy == 0 or dx == 0 else 1 / 12
            matrix[i, i] += weight
            if removed[ny, nx]:
                matrix[i, number[(ny, nx)]] -= weight
            else:
                rhs[i] += weight * image[:, ny, nx]
    solution = np.linalg.solve(matrix, rhs)
    out = image.copy()
    for i, (y, x) in enumerate(pixels):
        out[:, y, x] = solution[i]
    return out


def plain_order(saliency: np.ndarray) -> list[int]:
    """Row-major pixel indices by descending saliency, ties by ascending index."""
    flat = saliency.reshape(-1)
    return sorted(range(flat.size), key=lambda index: (-flat[index], index))


def plain_road(model, images, saliency, target, fractions):
    """ROAD without noise, one image and one removal set at a time (float64 softmax)."""
    batch, _, height, width = images.shape
    curves = {"morf": np.zeros((batch, len(fractions))), "lerf": np.zeros((batch, len(fractions)))}
    for b in range(batch):
        order = plain_order(saliency[b].numpy())
        for i, fraction in enumerate(fractions):
            count = math.floor(Fraction(str(fraction)) * height * width)
            for name, chosen in (("morf", order[:count]), ("lerf", order[len(order) - count :])):
                removed = np.zeros(height * width, dtype=bool)
                removed[chosen] = True
                imputed = dense_impute(images[b].numpy(), removed.reshape(height, width))
                with torch.no_grad():
                    logits = model(torch.from_numpy(imputed)[None])
                probabilities = torch.softmax(logits.double(), dim=1)
                curves[name][b, i] = float(probabilities[0, target[b]])
    return curves


def blob_saliency(height: int, width: int, seed: int) -> torch.Tensor:
    """A smooth map (two Gaussian bumps) whose ordered removal sets are blobs."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.rand(2, 2, generator=generator) * torch.tensor([height, width])
    rows = torch.arange(height, dtype=torch.float64)[:, None]
    cols = torch.arange(width, dtype=torch.float64)[None, :]
    bumps = [
        torch.exp(-((rows - cy) ** 2 + (cols - cx) ** 2) / (2 * (0.2 * height) ** 2))
        for cy, cx in centres.double()
    ]
    return (bumps[0] + 0.6 * bumps[1]).float()


def morf_set(saliency: torch.Tensor, fraction: float) -> torch.Tensor:
    """The MoRF removal set of a map (our rule), boolean ``[H, W]``."""
    count = math.floor(Fraction(str(fraction)) * saliency.numel())
    removed = torch.zeros(saliency.numel(), dtype=torch.bool)
    removed[plain_order(saliency.numpy())[:count]] = True
    return removed.view(saliency.shape)


@pytest.fixture(scope="module")
def real_images() -> torch.Tensor:
    """Two real ImageNet images at 224 px (normalised with mean 0.5, std 0.25)."""
    dataset = get_dataset("imagenet-val", ROOT, fake_spec(input_size=224))
    return torch.stack([dataset[0].image, dataset[7].image])


# --- the imputation -------------------------------------------------------------------------


@needs_real_data
@pytest.mark.filterwarnings(PEER_NUMPY_WARNING)
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_imputation_matches_pytorch_grad_cam(real_images, fraction):
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    peer = NoisyLinearImputer(noise=0)
    for index, image in enumerate(real_images):
        removed = morf_set(blob_saliency(224, 224, seed=index), fraction)
        ours = impute_noisy_linear(image[None], removed[None], noise=0.0)[0]
        theirs = peer(image, (~removed).float())  # its mask: 1 = kept
        assert int(removed.sum()) == math.floor(fraction * 224 * 224)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


@needs_real_data
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_imputation_matches_quantus(real_images, fraction):
    perturb = pytest.importorskip("quantus.functions.perturb_func")
    for index, image in enumerate(real_images):
        # LeRF sets here: the complement-shaped case (everything but the top removed)
        saliency = -blob_saliency(224, 224, seed=index)
        removed = morf_set(saliency, fraction)
        ours = impute_noisy_linear(image[None].double(), removed[None], noise=0.0)[0]
        indices = np.flatnonzero(removed.numpy().reshape(-1))
        theirs = perturb.noisy_linear_imputation(image.double().numpy(), indices, noise=0.0)
        np.testing.assert_allclose(ours.numpy(), theirs, rtol=0, atol=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_imputation_equals_a_dense_solve_of_the_plain_system(seed):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(2, 3, 9, 11, generator=generator, dtype=torch.float64)
    share = (0.2, 0.5, 0.8, 0.97)[seed]
    removed = torch.rand(2, 9, 11, generator=generator) < share
    removed[:, 4, 5] = False  # every image keeps a pixel
    ours = impute_noisy_linear(images, removed, noise=0.0)
    for b in range(2):
        expected = dense_impute(images[b].numpy(), removed[b].numpy())
        np.testing.assert_allclose(ours[b].numpy(), expected, rtol=0, atol=1e-12)


def test_many_removal_sets_at_once_equal_one_at_a_time():
    generator = torch.Generator().manual_seed(3)
    images = torch.randn(2, 3, 12, 10, generator=generator, dtype=torch.float64)
    removed = torch.rand(2, 5, 12, 10, generator=generator) < 0.6
    removed[..., 0, 0] = False
    together = impute_noisy_linear(images, removed, noise=0.0)
    assert together.shape == (2, 5, 3, 12, 10)
    for r in range(5):
        alone = impute_noisy_linear(images, removed[:, r], noise=0.0)
        torch.testing.assert_close(together[:, r], alone, rtol=0, atol=1e-13)


def test_the_thread_pool_gives_the_same_numbers():
    generator = torch.Generator().manual_seed(4)
    image = torch.rand(3, 30, 34, generator=generator, dtype=torch.float64)
    removed = (
        torch.rand(7, 30, 34, generator=generator) < torch.linspace(0.1, 0.9, 7)[:, None, None]
    )
    alone = road._solve_direct(image.numpy(), removed.numpy())
    threads = torch.get_num_threads()
    torch.set_num_threads(3)  # groups of 3 sets, the last one of 1
    try:
        pooled = road._solve_direct(image.numpy(), removed.numpy())
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(pooled, alone)
    for r in range(7):
        expected = dense_impute(image.numpy(), removed[r].numpy())
        np.testing.assert_allclose(pooled[r], expected, rtol=0, atol=1e-12)


def test_kept_pixels_are_unchanged_and_the_noise_is_seeded():
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 40, 48, generator=generator)
    removed = torch.rand(2, 40, 48, generator=generator) < 0.5

    def noisy(seed: int) -> torch.Tensor:
        return impute_noisy_linear(
            images, removed, noise=0.01, generator=torch.Generator().manual_seed(seed)
        )

    first, again, other = noisy(1), noisy(1), noisy(2)
    clean = impute_noisy_linear(images, removed, noise=0.0)
    kept = ~removed[:, None].expand_as(images)
    assert torch.equal(first[kept], images[kept])
    assert torch.equal(first, again)
    assert not torch.equal(first[~kept], other[~kept])
    spread = (first - clean)[~kept].double()
    assert spread.numel() > 5000
    assert abs(float(spread.std()) - 0.01) < 0.0005
    assert abs(float(spread.mean())) < 0.0005
    assert torch.equal(clean[kept], images[kept])


def test_the_conjugate_gradient_solver_agrees_with_the_direct_solve():
    # the CUDA path's solver, run on the CPU: 10-90 % removal sets of a smooth map, both orders
    generator = torch.Generator().manual_seed(5)
    image = torch.rand(3, 40, 48, generator=generator, dtype=torch.float64)
    saliency = blob_saliency(40, 48, seed=5)
    sets = []
    for fraction in road.FRACTIONS:
        sets += [morf_set(saliency, fraction), morf_set(-saliency, fraction)]
    removed = torch.stack(sets)
    direct = torch.from_numpy(road._solve_direct(image.numpy(), removed.numpy()))
    iterative = road._solve_cg(image, removed)
    torch.testing.assert_close(iterative, direct, rtol=0, atol=1e-9)


@pytest.mark.parametrize("cap", [16, 21])
def test_the_conjugate_gradient_solver_refuses_to_stop_early(monkeypatch, cap):
    monkeypatch.setattr(road, "cg_iteration_cap", lambda height, width: cap)
    image = torch.rand(3, 30, 30, dtype=torch.float64)
    removed = torch.ones(1, 30, 30, dtype=torch.bool)
    removed[0, 0, 0] = False
    with pytest.raises(RuntimeError, match=f"did not converge in {cap} iterations"):
        road._solve_cg(image, removed)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_imputation_agrees_with_the_cpu():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(1, 3, 224, 224, generator=generator)
    saliency = blob_saliency(224, 224, seed=0)
    sets = []
    for fraction in road.FRACTIONS:
        sets += [morf_set(saliency, fraction), morf_set(-saliency, fraction)]
    removed = torch.stack(sets)[None]
    cpu = impute_noisy_linear(images, removed, generator=torch.Generator().manual_seed(1))
    cuda = impute_noisy_linear(
        images.cuda(), removed.cuda(), generator=torch.Generator().manual_seed(1)
    )
    torch.testing.assert_close(cuda.cpu(), cpu, rtol=0, atol=1e-5)


# --- the curves -----------------------------------------------------------------------------


@pytest.mark.filterwarnings(PEER_NUMPY_WARNING)
def test_probabilities_equal_pytorch_grad_cams_perturbation_confidence():
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        PerturbationConfidenceMetric,
        RemoveLeastRelevantFirst,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    model = tiny_cnn(seed=0, dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 20, 20, generator=generator)  # N = 400: its counts equal ours
    # tie-free maps: distinct integers, exact in float32 (and 1 - map too)
    cams = np.stack([torch.randperm(400, generator=generator).view(20, 20).float().numpy()] * 2)
    cams[1] = cams[1].T
    with torch.no_grad():
        target = model(images).argmax(dim=1)
    targets = [ClassifierOutputSoftmaxTarget(int(t)) for t in target]
    ours = road_curves(
        model, images, torch.from_numpy(cams), target=target, noise=0.0, space="normalised"
    )
    for i, fraction in enumerate(road.FRACTIONS):
        percentile = round(100 * (1 - fraction))
        for name, removal in (
            ("morf", RemoveMostRelevantFirst),
            ("lerf", RemoveLeastRelevantFirst),
        ):
            metric = PerturbationConfidenceMetric(removal(percentile, NoisyLinearImputer(noise=0)))
            theirs = metric(images, cams, targets, model, return_diff=False)
            np.testing.assert_allclose(ours.curves[name][:, i].numpy(), theirs, rtol=0, atol=1e-5)


@pytest.mark.parametrize("size", [20, 224])
def test_peer_percentiles_remove_the_documented_counts(size):
    # pytorch-grad-cam's percentile q removes N - ceil(q (N - 1) / 100) pixels in both orders:
    # our floor(f N) for f = 1 - q / 100, one more where frac(f N) >= f (the module docstring)
    n_pixels = size * size
    cam = np.random.default_rng(0).permutation(n_pixels).reshape(size, size).astype(np.float32)
    more = []
    for fraction in road.FRACTIONS:
        percentile = round(100 * (1 - fraction))
        morf = int((cam >= np.percentile(cam, percentile)).sum())
        lerf = int((1 - cam >= np.percentile(1 - cam, percentile)).sum())
        expected = n_pixels - math.ceil(Fraction(percentile, 100) * (n_pixels - 1))
        assert morf == lerf == expected
        ours = road.removed_count(fraction, n_pixels)
        exact = Fraction(str(fraction)) * n_pixels
        assert expected == ours + (exact - math.floor(exact) >= Fraction(str(fraction)))
        more += [fraction] if expected > ours else []
    assert more == ([] if size == 20 else [0.1, 0.2, 0.3, 0.4, 0.6, 0.8])


def test_probabilities_equal_a_plain_loop():
    model = tiny_cnn(seed=1)
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, 10, 12, generator=generator, dtype=torch.float64)
    saliency = torch.rand(2, 10, 12, generator=generator)
    saliency[0, :3] = 0.5  # ties: broken by row-major index
    target = torch.tensor([1, 3])
    fractions = (0.1, 0.25, 0.5, 0.75, 0.9)
    ours = road_curves(
        model,
        images,
        saliency,
        target=target,
        fractions=fractions,
        noise=0.0,
        space="normalised",
        batch_size=3,
    )
    expected = plain_road(model, images, saliency, target, fractions)
    for name in ("morf", "lerf"):
        np.testing.assert_allclose(ours.curves[name].numpy(), expected[name], rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        ours.road.numpy(),
        (expected["lerf"].mean(1) - expected["morf"].mean(1)) / 2,
        rtol=0,
        atol=1e-12,
    )
    assert ours.removed_pixels == (12, 30, 60, 90, 108)


class Recorder(nn.Module):
    """Wraps a model and keeps every batch it is given."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.batches: list[torch.Tensor] = []

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        self.batches.append(batch.clone())
        return self.model(batch)


def test_pixel_space_noise_is_denormalise_impute_renormalise():
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.5)
    model = Recorder(tiny_cnn(seed=2))
    generator = torch.Generator().manual_seed(2)
    images = torch.randn(1, 3, 16, 16, generator=generator, dtype=torch.float64)
    saliency = torch.rand(1, 16, 16, generator=generator)
    fractions = (0.3, 0.6)
    road_curves(
        model,
        images,
        saliency,
        target=[0],
        fractions=fractions,
        std=std,
        generator=torch.Generator().manual_seed(9),
        batch_size=4,
    )
    forwarded = torch.cat(model.batches)
    shift = torch.tensor(mean, dtype=torch.float64)[:, None, None]
    scale = torch.tensor(std, dtype=torch.float64)[:, None, None]
    sets = [morf_set(saliency[0], f) for f in fractions]
    sets += [morf_set(-saliency[0] + 0.0, f) for f in fractions]
    # LeRF: the last of the order, ties by row-major index; the map is tie-free here
    pixels = impute_noisy_linear(
        images * scale + shift,
        torch.stack(sets)[None],
        noise=0.01,
        generator=torch.Generator().manual_seed(9),
    )[0]
    torch.testing.assert_close(forwarded, (pixels - shift) / scale, rtol=0, atol=1e-12)


# --- argument checks ------------------------------------------------------------------------


def _curves(**options):
    model = tiny_cnn(seed=0)
    images = torch.zeros(1, 3, 8, 8, dtype=torch.float64)
    options = {"space": "normalised", **options}
    return road_curves(model, images, torch.rand(1, 8, 8), **options)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"fractions": (0.0, 0.5)}, ValueError, "fractions must lie strictly between 0 and 1"),
        ({"fractions": (0.5, 1.0)}, ValueError, "fractions must lie strictly between 0 and 1"),
        ({"fractions": (float("nan"),)}, ValueError, "fractions must lie strictly"),
        ({"fractions": ()}, TypeError, "fractions must be a non-empty sequence"),
        ({"fractions": ("0.5",)}, TypeError, "fractions must hold real numbers"),
        ({"orders": ("morf", "random")}, ValueError, "orders: unknown order 'random'"),
        ({"orders": ("morf", "morf")}, ValueError, "orders must not repeat"),
        ({"space": "pixel"}, ValueError, "space must be one of 'pixels', 'normalised'"),
        ({"space": "pixels"}, ValueError, "std is required with space='pixels'"),
        ({"space": "pixels", "std": (0.5, 0.5)}, ValueError, "std must hold one number per"),
        ({"space": "pixels", "std": (0.5, 0.5, 0.0)}, ValueError, "std must hold finite"),
        ({"noise": -0.1}, ValueError, "noise must be a finite number >= 0"),
        ({"noise": "0.1"}, TypeError, "noise must be a real number"),
        ({"generator": 3}, TypeError, "generator must be a torch.Generator"),
        ({"batch_size": 0}, ValueError, "batch_size must be an integer >= 1"),
        ({"target": [7]}, ValueError, "target"),
    ],
)
def test_bad_options_are_refused_by_name(options, error, message):
    with pytest.raises(error, match=message):
        _curves(**options)


@pytest.mark.parametrize(
    ("images", "removed", "error", "message"),
    [
        (torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4), TypeError, "removed must be a boolean"),
        (torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 5, dtype=torch.bool), ValueError, "removed"),
        (torch.zeros(1, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.bool), ValueError, "removed"),
        (torch.zeros(1, 3, 4, 4), torch.zeros(4, 4, dtype=torch.bool), ValueError, "removed"),
        (torch.zeros(1, 3, 4, 4), [[True]], TypeError, "removed must be a boolean torch.Tensor"),
        (torch.ones(1, 3, 4, 4), torch.ones(1, 4, 4, dtype=torch.bool), ValueError, "keep at"),
        (
            torch.zeros(1, 3, 4, 4, dtype=torch.long),
            torch.zeros(1, 4, 4).bool(),
            TypeError,
            "images",
        ),
        (torch.zeros(3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.bool), ValueError, "images"),
    ],
)
def test_bad_imputation_inputs_are_refused_by_name(images, removed, error, message):
    with pytest.raises(error, match=message):
        impute_noisy_linear(images, removed)


def test_bad_saliency_is_refused_by_name():
    model = tiny_cnn(seed=0)
    with pytest.raises(ValueError, match="saliency must hold one map per image"):
        road_curves(model, torch.zeros(2, 3, 8, 8, dtype=torch.float64), torch.rand(1, 8, 8))


# --- the registered metric ------------------------------------------------------------------


def test_the_item_seed_is_the_documented_hash():
    digest = hashlib.sha256(b"sidu-bench/metrics/road/7/some/item").digest()
    assert road.road_item_seed(7, "some/item") == int.from_bytes(digest[:8], "little") >> 1


def test_the_metric_scores_an_item_reproducibly():
    metric = get_metric("road")
    model = tiny_cnn(seed=3)
    generator = torch.Generator().manual_seed(3)
    image = torch.randn(1, 3, 16, 16, generator=generator, dtype=torch.float64)
    maps = torch.rand(1, 16, 16, generator=generator)
    settings = ScoringSettings(tolerance=None, steps=8, step=None, seed=5, std=(0.5, 0.5, 0.5))

    def score(item_id: str):
        item = ScoredItem(model, image, maps, torch.tensor([2]), None, item_id=item_id)
        return metric.evaluate(item, settings)

    first, again, other = score("a"), score("a"), score("b")
    assert first.values == again.values
    assert first.values != other.values
    morf, lerf = first.curves["road_morf"], first.curves["road_lerf"]
    assert morf.shape == lerf.shape == (9,)
    assert first.values["road_morf"] == pytest.approx(float(morf.mean()), abs=1e-15)
    assert first.values["road"] == pytest.approx(float(lerf.mean() - morf.mean()) / 2, abs=1e-15)
    # the same numbers by hand: the functional form with the item's generator, pixel space
    expected = road_curves(
        model,
        image,
        maps,
        target=[2],
        std=(0.5, 0.5, 0.5),
        generator=torch.Generator().manual_seed(road.road_item_seed(5, "a")),
    )
    torch.testing.assert_close(morf, expected.curves["morf"][0], rtol=0, atol=0)


def test_the_protocol_entry_comes_from_the_constants():
    entry = get_metric("road").protocol(ScoringSettings(tolerance=None, steps=8, step=None))
    assert entry["fractions"] == list(road.FRACTIONS)
    assert entry["noise"] == road.DEFAULT_NOISE
    assert "(edge 1/6, diagonal 1/12;" in entry["imputation"]
    assert "sidu-bench/metrics/road/<seed>/<item id>" in entry["seeding"]
    assert json.loads(json.dumps(entry)) == entry


def test_the_registered_metric_end_to_end(tmp_path):
    from sidu_bench.cli import main

    arguments = ["evaluate", "--metrics", "road", "--explainers", "center", "--limit", "2"]
    main([*arguments, "--steps", "8", "--device", "cpu", "--out", str(tmp_path)])
    (folder,) = [path for path in tmp_path.iterdir() if path.is_dir()]
    records = pd.read_csv(folder / "records.csv")
    assert len(records) == 2
    for column in ("road_morf", "road_lerf", "road"):
        assert np.isfinite(records[column]).all()
    np.testing.assert_allclose(
        records["road"], (records["road_lerf"] - records["road_morf"]) / 2, rtol=0, atol=1e-12
    )
    items = sorted((folder / "items").glob("*.npz"))
    assert len(items) == 2
    for path in items:
        with np.load(path) as arrays:
            assert arrays["road_morf@center"].shape == arrays["road_lerf@center"].shape == (9,)
            assert np.all((arrays["road_morf@center"] >= 0) & (arrays["road_morf@center"] <= 1))
    summary = pd.read_csv(folder / "summary.csv").set_index("explainer")
    assert summary.loc["center", "road_n"] == 2
    assert summary.loc["center", "road"] == pytest.approx(records["road"].mean())
    config = json.loads((folder / "config.json").read_text())
    assert config["protocol"]["road"]["fractions"] == list(road.FRACTIONS)
