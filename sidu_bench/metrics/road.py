"""ROAD, RemOve And Debias, with the authors' noisy linear imputation.

Rong, Leemann, Borisov, Kasneci and Kasneci, "A Consistent and Efficient Evaluation Strategy for
Attribution Methods", ICML 2022.

For each fraction ``f`` of :data:`FRACTIONS` the ``floor(f * H * W)`` most salient pixels
(MoRF, most relevant first) or least salient pixels (LeRF, least relevant first) of an image are
removed and imputed from their neighbours (:func:`impute_noisy_linear`), and the model's softmax
probability of the explained class is read on each imputed image (:func:`road_curves`). The
registered metric ``road`` keeps per item ``road_morf`` and ``road_lerf`` (the means over the
fractions; lower and higher is better) and ``road = (road_lerf - road_morf) / 2`` (higher is
better; pytorch-grad-cam's ``ROADCombined``), and the 9-point curves.

The imputation solves, per image and removal set, the sparse linear system that makes every
removed pixel the weighted mean of its in-frame 8-neighbours (weights 1/6 for the 4 edge
neighbours, 1/12 for the 4 diagonal ones; an out-of-frame neighbour's weight is dropped), the
same system as the authors' ``NoisyLinearImputer`` (tleemann/road_evaluation, copied into
pytorch-grad-cam) and Quantus's ``noisy_linear_imputation``. On the CPU each system is
factorised directly in float64 (SuperLU without pivoting, which the symmetric positive definite
M-matrix does not need, on a nested-dissection ordering of the pixel grid; the systems of an
image are solved on a pool of ``torch.get_num_threads()`` threads: SuperLU releases the GIL
while it factorises, 1.35x faster on 2 idle cores).
On other devices (CUDA) the same systems are solved on the device by Jacobi-preconditioned
conjugate gradients in float64 until every relative residual is below :data:`CG_TOLERANCE`
(an error otherwise after :func:`cg_iteration_cap` iterations); run on the CPU, that solver
agreed with the direct one within 4e-12 (224 px, two real images, the 18 removal sets of a
smooth map, 1,040 iterations) and 2e-12 (random removal of 10-99 % of the pixels). The CUDA path
has not been run on a GPU.

Peer conventions, for the same removed pixel sets (``N = H * W``, tie-free maps):

- pytorch-grad-cam's ``RemoveMostRelevantFirst(percentile=q)`` keeps the pixels whose
  saliency is below ``numpy.percentile(map, q)``: it removes the ``N - ceil(q / 100 * (N - 1))``
  most salient pixels, our MoRF fraction ``f = 1 - q / 100``. ``RemoveLeastRelevantFirst(q)``
  applies the same rule to ``1 - map``: it keeps the ``ceil(q / 100 * (N - 1))`` most salient
  pixels and removes the ``N - ceil(q / 100 * (N - 1))`` least salient, our LeRF fraction
  ``f = 1 - q / 100`` too. Both counts equal our ``floor(f * N)`` unless the fractional part of
  ``f * N`` is at least ``f``, where they remove one pixel more (at 224 px: f = 0.1, 0.2, 0.3,
  0.4, 0.6, 0.8). Its ``ROADCombined(percentiles=[10, ..., 90])`` averages the same 9 fractions, in
  the images' own (normalised) space, on float32 probabilities.
- the authors' ``ImputedDataset(th_p, remove)`` (tleemann/road_evaluation): MoRF
  (``remove=True``) removes the ``int(N * th_p)`` most salient pixels, ``f = th_p``; LeRF
  (``remove=False``) keeps the ``int(N * th_p)`` most salient and removes the rest,
  ``f = 1 - th_p``. They break ties with ``1e-4`` Gaussian noise on the rescaled map and impute
  before the normalising transform, in pixel space, as our metric does.
- Quantus's ``ROAD(percentages=p)`` removes the ``int(N * p / 100)`` most salient pixels
  (MoRF only; ``f = p / 100``, default ``p = 1, 3, ..., 99``) and scores top-1 accuracy.

pytorch-grad-cam and Quantus impute in whatever space they are given (normalised model inputs).
Linear imputation commutes with the per-channel affine normalisation (each removed pixel is a
weighted mean with weights summing to one), so the imputed values are the same in either space
and the space only scales the noise: ``space="pixels"`` adds ``noise`` in ``[0, 1]`` pixel
units (``noise / std[c]`` in normalised units of channel ``c``), ``space="normalised"`` adds
``noise`` to the normalised values, as those two do.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from numbers import Real

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch
from torch import Tensor, nn

from sidu.backends import ForwardBackend, resolve_backend, torch_threads_for
from sidu.engine import forward_context
from sidu.modes import eval_mode
from sidu.precision import fp32_precision
from sidu.resize import resize
from sidu.scores import target_probability
from sidu.validation import check_images, check_logits, check_model_device, resolve_target

from ._validation import check_saliency
from .insertion_deletion import CURVE_SCORE, PIXEL_ORDER, _chunk_size, _pixel_rank
from .registry import Metric, MetricScore, ScoredItem, ScoringSettings, Statistic, register_metric

logger = logging.getLogger(__name__)

FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""Fractions of the pixels removed (the authors' and pytorch-grad-cam's 9 thresholds)."""
ORDERS = ("morf", "lerf")
"""Removal orders: most relevant first, least relevant first."""
SPACES = ("pixels", "normalised")
"""Where the imputation noise is added (see the module docstring)."""
DEFAULT_NOISE = 0.01
"""Standard deviation of the Gaussian noise added to each imputed value (the authors')."""
NEIGHBOUR_WEIGHTS = (
    ((-1, -1), 1 / 12),
    ((-1, 0), 1 / 6),
    ((-1, 1), 1 / 12),
    ((0, -1), 1 / 6),
    ((0, 1), 1 / 6),
    ((1, -1), 1 / 12),
    ((1, 0), 1 / 6),
    ((1, 1), 1 / 12),
)
"""``((row offset, column offset), weight)`` of the 8 neighbours in the imputation."""
CG_TOLERANCE = 1e-12
"""Relative residual (2-norm, per system and channel) at which conjugate gradients stop."""
CG_CHECK_EVERY = 16
"""Conjugate-gradient iterations between two convergence checks (one host sync each)."""
SEED_STREAM = "road"
"""The per-item seed's stream name (see :func:`road_item_seed`)."""


@dataclass(frozen=True)
class RoadResult:
    """ROAD curves of a batch of images, as :func:`road_curves` returns them.

    Attributes:
        curves: ``{order: [B, F] float64}``, the target's softmax probability on the image with
            fraction ``fractions[i]`` removed in that order, for each order computed.
        fractions: the removed fractions ``F``.
        removed_pixels: pixels removed at each fraction, ``floor(f * H * W)``.
        target: ``[B]`` int64, the explained class of each image.
    """

    curves: dict[str, Tensor]
    fractions: tuple[float, ...]
    removed_pixels: tuple[int, ...]
    target: Tensor

    def mean(self, order: str) -> Tensor:
        """``[B]`` float64, the mean over the fractions of the ``order`` curve.

        Raises:
            ValueError: ``order`` was not computed.
        """
        if order not in self.curves:
            computed = ", ".join(map(repr, self.curves))
            raise ValueError(f"order {order!r} was not computed; computed orders: {computed}")
        return self.curves[order].mean(dim=1)

    @property
    def road(self) -> Tensor:
        """``[B]`` float64, ``(mean LeRF - mean MoRF) / 2`` (pytorch-grad-cam's ROADCombined)."""
        return (self.mean("lerf") - self.mean("morf")) / 2


def road_item_seed(seed: int, item_id: str) -> int:
    """Return the 63-bit seed of an item's ROAD noise.

    SHA-256 of ``"sidu-bench/metrics/road/{seed}/{item_id}"``, first 8 bytes little-endian,
    shifted right by one bit: the derivation of the explainers' per-item streams
    (``sidu_bench.explainers.seeding.item_seed``) under the metrics' own prefix, so it depends
    on the run's seed and the item's id only, never on the batch, order, shard or device.

    Example:
        >>> seed = road_item_seed(0, "item-1")
        >>> seed == road_item_seed(0, "item-1") != road_item_seed(1, "item-1")
        True
    """
    text = f"sidu-bench/metrics/{SEED_STREAM}/{seed}/{item_id}"
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def removed_count(fraction: float, n_pixels: int) -> int:
    """Return ``floor(fraction * n_pixels)``, ``fraction`` read as the decimal it prints as.

    In binary floating point ``0.29 * 100`` is ``28.999999999999996``, whose floor is 28; the
    decimal reading gives 29.

    Example:
        >>> removed_count(0.29, 100), removed_count(0.1, 50176)
        (29, 5017)
    """
    return math.floor(Fraction(repr(float(fraction))) * n_pixels)


def impute_noisy_linear(
    images: Tensor,
    removed: Tensor,
    *,
    noise: float = DEFAULT_NOISE,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Replace the removed pixels of images by ROAD's noisy linear imputation.

    Each removed pixel becomes the weighted mean of its in-frame 8-neighbours
    (:data:`NEIGHBOUR_WEIGHTS`: 1/6 edge, 1/12 diagonal neighbours; an out-of-frame neighbour's
    weight is dropped, the diagonal of the system is minus the sum of the in-frame weights),
    removed neighbours being unknowns too: one sparse linear system per image and removal set,
    shared by the channels, solved in float64 (the authors' and pytorch-grad-cam's
    ``NoisyLinearImputer`` and Quantus's ``noisy_linear_imputation``, within 1e-5). Then
    ``noise * N(0, 1)`` is added per channel and removed pixel. Kept pixels are unchanged.

    The noise is drawn on the CPU, ``[(R,) C, H, W]`` float64 values per image in batch order
    (all pixels drawn, the kept pixels' draws unused), from ``generator``, so a seeded
    generator gives the same images on every device.

    Args:
        images: ``[B, C, H, W]`` floating images (any space: the imputation commutes with a
            per-channel affine map).
        removed: boolean ``[B, H, W]`` (True = removed), or ``[B, R, H, W]``: ``R`` removal sets
            per image, imputed in one call. Each set must keep at least one pixel.
        noise: standard deviation of the added noise, in the images' units (0: none).
        generator: CPU generator of the noise; None: torch's default generator.

    Returns:
        ``[B, C, H, W]`` (or ``[B, R, C, H, W]``) imputed images, of the images' dtype and on
        their device.

    Raises:
        TypeError: ``images`` not a floating tensor, ``removed`` not boolean, ``noise`` not a
            real number, ``generator`` not a CPU generator.
        ValueError: wrong shapes, non-finite images, a negative or non-finite ``noise``, or a
            removal set that removes every pixel.

    Example:
        >>> images = torch.arange(9.0).reshape(1, 1, 3, 3)
        >>> removed = torch.zeros(1, 3, 3, dtype=torch.bool)
        >>> removed[0, 1, 1] = True
        >>> impute_noisy_linear(images, removed, noise=0.0)[0, 0, 1, 1].item()
        4.0
    """
    images = check_images(images)
    sets = _check_removed(removed, images)
    scale = _check_noise(noise)
    _check_generator(generator)
    channels = images.shape[1]
    scales = torch.full((channels,), scale, dtype=torch.float64)
    imputed = _impute(images, sets, scales, generator)
    return imputed if removed.ndim == 4 else imputed[:, 0]


def road_curves(
    model: nn.Module,
    images: Tensor,
    saliency: Tensor,
    *,
    target: int | Sequence[int] | Tensor | None = None,
    fractions: Sequence[float] = FRACTIONS,
    orders: Sequence[str] = ORDERS,
    noise: float = DEFAULT_NOISE,
    space: str = "pixels",
    std: Sequence[float] | None = None,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    backend: str | ForwardBackend = "torch",
    precision: str = "ieee",
) -> RoadResult:
    """Compute ROAD's MoRF and LeRF curves of saliency maps (Rong et al., ICML 2022).

    Pixels are ranked by descending saliency, ties by ascending row-major index (insertion and
    deletion's rule). For each fraction ``f`` and order, ``k = floor(f * H * W)`` pixels are
    removed: MoRF the ``k`` first of that ranking, LeRF the ``k`` last. The removed pixels are
    imputed (:func:`impute_noisy_linear`, all removal sets of an image at once) with Gaussian
    noise of standard deviation ``noise`` added in ``space``, and the curve holds the softmax
    probability (float64) of the target on each imputed image. ``B * F * len(orders)`` imputed
    images go through the model, in chunks of ``batch_size`` (default sized by the memory
    budget); the model runs in eval mode under ``torch.inference_mode`` and every module's
    training flag is restored.

    Args:
        model: classifier returning logits ``[N, num_classes]``, on the images' device.
        images: normalised model inputs ``[B, C, H, W]`` (float32 or float64).
        saliency: maps ``[B, H, W]``, or ``[B, h, w]`` resized bilinearly (align_corners=False).
        target: explained class per image (int, sequence or tensor ``[B]``); None = the class the
            model predicts on the clean image.
        fractions: removed fractions, each strictly between 0 and 1.
        orders: any of ``"morf"`` and ``"lerf"``.
        noise: standard deviation of the imputation noise (0: none).
        space: ``"pixels"``: the noise is in ``[0, 1]`` pixel units, the images being
            ``(pixels - mean) / std``; ``"normalised"``: in the images' units (pytorch-grad-cam,
            Quantus). The imputed values are the same in both (module docstring).
        std: the per-channel normalisation std; required with ``space="pixels"``.
        generator: CPU generator of the noise, drawn image by image (None: torch's default).
        batch_size: imputed images per forward pass; overrides the memory budget.
        backend: engine of the model's forwards, ``"torch"`` (default), ``"onnxruntime"`` or
            ``"auto"`` (:func:`sidu.backends.resolve_backend`), or a resolved backend.
        precision: float32 CUDA arithmetic during the call, ``"ieee"`` or ``"tf32"``.

    Returns:
        A :class:`RoadResult` (curves on the images' device).

    Raises:
        TypeError: a wrongly typed argument.
        ValueError: a fraction outside (0, 1), an unknown order or space, ``std`` missing or of
            another length than the channels, bad shapes.

    Example:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
        >>> images, maps = torch.randn(2, 3, 4, 4), torch.rand(2, 4, 4)
        >>> result = road_curves(model, images, maps, space="normalised", fractions=(0.25, 0.5))
        >>> result.curves["morf"].shape, result.removed_pixels, result.road.shape
        (torch.Size([2, 2]), (4, 8), torch.Size([2]))

    """
    images = check_images(images)
    batch, channels, height, width = images.shape
    saliency = check_saliency(saliency, batch=batch)
    fractions = _check_fractions(fractions)
    orders = _check_orders(orders)
    scale = _check_noise(noise)
    scales = _noise_scales(scale, space, std, channels)
    _check_generator(generator)
    check_model_device(model, images)
    n_pixels = height * width
    counts = tuple(removed_count(fraction, n_pixels) for fraction in fractions)
    n_sets = len(orders) * len(fractions)
    with fp32_precision(precision), eval_mode(model), torch.inference_mode():
        forward = resolve_backend(model, images, backend)
        chunk = _chunk_size(images, batch_size, total=n_sets, model=model)
        rank = _pixel_rank(resize(saliency.to(images.device), (height, width), rule="clamp"))
        sets = _removal_sets(rank, counts, orders).view(batch, n_sets, height, width)
        target_index = None
        if target is None:
            with torch_threads_for(forward):
                clean_logits = torch.cat([forward(part) for part in images.split(chunk)])
            check_logits(clean_logits, batch=batch)
            target_index = resolve_target(None, clean_logits)
        probabilities = torch.empty(batch, n_sets, dtype=torch.float64, device=images.device)
        for index in range(batch):
            imputed = _impute(images[index : index + 1], sets[index : index + 1], scales, generator)
            imputed = imputed[0]
            with torch_threads_for(forward):
                for start in range(0, n_sets, chunk):
                    part = imputed[start : start + chunk]
                    logits = forward(part)
                    check_logits(logits, batch=len(part))
                    if target_index is None:  # given: checked against the number of classes
                        scores = logits.new_zeros(batch, logits.shape[1])
                        target_index = resolve_target(target, scores)
                    probabilities[index, start : start + len(part)] = target_probability(
                        logits, target_index[index].expand(len(part))
                    )
    curves = probabilities.view(batch, len(orders), len(fractions))
    return RoadResult(
        curves={order: curves[:, i].clone() for i, order in enumerate(orders)},
        fractions=fractions,
        removed_pixels=counts,
        target=target_index.clone(),
    )


def _removal_sets(rank: Tensor, counts: tuple[int, ...], orders: tuple[str, ...]) -> Tensor:
    """Boolean ``[B, len(orders) * len(counts), H*W]``: order-major, then fraction."""
    n_pixels = rank.shape[1]
    limits = torch.tensor(counts, device=rank.device, dtype=rank.dtype)
    sets = []
    for order in orders:
        if order == "morf":
            sets.append(rank[:, None, :] < limits[None, :, None])
        else:
            sets.append(rank[:, None, :] >= (n_pixels - limits)[None, :, None])
    return torch.cat(sets, dim=1)


# --- imputation -----------------------------------------------------------------------------


def _impute(
    images: Tensor, removed: Tensor, scales: Tensor, generator: torch.Generator | None
) -> Tensor:
    """Imputed ``[B, R, C, H, W]`` images (images' dtype and device), image by image.

    ``scales [C]`` float64: the noise's standard deviation per channel, in the images' units.
    """
    batch, n_sets, height, width = removed.shape
    channels = images.shape[1]
    out = torch.empty(
        batch, n_sets, channels, height, width, dtype=images.dtype, device=images.device
    )
    noisy = bool((scales != 0).any())
    for index in range(batch):
        image = images[index]
        sets = removed[index]
        if image.device.type == "cpu":
            values = image.detach().double().numpy()
            solved = torch.from_numpy(_solve_direct(values, sets.numpy()))
        else:
            with torch.autocast(image.device.type, enabled=False):
                solved = _solve_cg(image.detach().double(), sets)
        if noisy:
            draws = torch.randn(
                (n_sets, channels, height, width), generator=generator, dtype=torch.float64
            )
            solved += draws.mul_(scales[:, None, None]).to(solved.device)
            del draws
        out[index] = torch.where(sets[:, None], solved.to(images.dtype), image[None])
    return out


@lru_cache(maxsize=8)
def _dissection_order(height: int, width: int) -> np.ndarray:
    """The ``H*W`` pixels in a nested-dissection elimination order of the grid.

    The box is bisected across its longer side; the pixels of the middle row (or column), which
    separate the two halves for 8-neighbour stencils, come after both halves, each ordered
    recursively (boxes of at most 2x2 in row-major order). Restricted to a removal set it is a
    nested dissection of that set's graph: it factorised the 224 px systems 1.5x faster than
    SuperLU's minimum degree orderings, with less fill.
    """
    y, x = np.divmod(np.arange(height * width, dtype=np.int64), width)
    y0, y1 = np.zeros_like(y), np.full_like(y, height)
    x0, x1 = np.zeros_like(x), np.full_like(x, width)
    digits = []
    done = np.zeros(y.shape, dtype=bool)
    while True:
        rows, cols = y1 - y0, x1 - x0
        active = ~done & ((rows > 2) | (cols > 2))
        if not active.any():
            break
        across_rows = rows >= cols
        middle = np.where(across_rows, (y0 + y1) // 2, (x0 + x1) // 2)
        coordinate = np.where(across_rows, y, x)
        low = active & (coordinate < middle)
        high = active & (coordinate > middle)
        separator = active & (coordinate == middle)
        digits.append(np.where(separator, 2, np.where(high, 1, 0)).astype(np.int8))
        done |= separator | ~active
        y1 = np.where(low & across_rows, middle, y1)
        y0 = np.where(high & across_rows, middle + 1, y0)
        x1 = np.where(low & ~across_rows, middle, x1)
        x0 = np.where(high & ~across_rows, middle + 1, x0)
    # lexicographic order of the digit strings (first digit most significant), ties row-major
    order = np.lexsort(digits[::-1]) if digits else np.arange(height * width)
    order.flags.writeable = False  # cached: shared by every call
    return order


@dataclass(frozen=True)
class _Systems:
    """The imputation systems of one image's removal sets, stacked (see :func:`_assemble`).

    Attributes:
        starts: ``[R + 1]``, system ``r``'s unknowns are ``starts[r]:starts[r + 1]``.
        pixel: ``[n]`` row-major pixel index of each unknown.
        indptr: ``[n + 1]``, ``indices``, ``data``: the rows of the block-diagonal matrix ``M``
            (CSR; unknowns numbered across the systems).
        rhs: ``[n, C]`` right-hand sides.
    """

    starts: np.ndarray
    pixel: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    rhs: np.ndarray


def _assemble(image: np.ndarray, removed: np.ndarray) -> _Systems:
    """The imputation systems ``M u = b`` of one image, all removal sets at once, vectorised.

    For a removed pixel ``i`` with in-frame neighbours ``j`` (weights ``w_ij``):
    ``(sum_j w_ij) u_i - sum_{j removed} w_ij u_j = sum_{j kept} w_ij v_j``: ``M`` is the
    authors' matrix times -1, symmetric positive definite (an M-matrix; every connected removed
    region touches a kept pixel). Unknowns are numbered system by system, each system's pixels
    in the nested-dissection order. Neighbours are looked up in a grid padded by one pixel
    (-2: out of frame, -1: kept, else the unknown's number), so no bounds checks.

    Args:
        image: ``[C, H, W]`` float64.
        removed: ``[R, H, W]`` bool removal sets.
    """
    n_sets, height, width = removed.shape
    channels = image.shape[0]
    padded_width = width + 2
    padded_size = (height + 2) * padded_width
    index_type = np.int32 if n_sets * padded_size < 2**31 else np.int64
    order = _dissection_order(height, width)
    system, position = np.nonzero(removed.reshape(n_sets, height * width)[:, order])
    pixel = order[position]
    n_unknowns = pixel.size
    starts = np.zeros(n_sets + 1, dtype=np.int64)
    np.cumsum(np.bincount(system, minlength=n_sets), out=starts[1:])
    row, col = np.divmod(pixel, width)
    padded = (row + 1) * padded_width + col + 1
    status = np.full((n_sets, height + 2, padded_width), -2, dtype=index_type)
    status[:, 1:-1, 1:-1] = -1
    status = status.reshape(-1)
    where = system * padded_size + padded
    status[where] = np.arange(n_unknowns, dtype=index_type)
    values = np.zeros((channels, height + 2, padded_width))
    values[:, 1:-1, 1:-1] = image
    values = values.reshape(channels, padded_size)
    columns = np.empty((n_unknowns, 1 + len(NEIGHBOUR_WEIGHTS)), dtype=index_type)
    columns[:, 0] = np.arange(n_unknowns, dtype=index_type)
    entries = np.empty(columns.shape)
    entries[:, 0] = 0.0
    rhs = np.zeros((n_unknowns, channels))
    for slot, ((dy, dx), weight) in enumerate(NEIGHBOUR_WEIGHTS, start=1):
        offset = dy * padded_width + dx
        neighbour = status[where + offset]
        columns[:, slot] = neighbour  # negative: no matrix entry
        entries[:, slot] = -weight
        entries[:, 0] += weight * (neighbour != -2)
        kept = np.flatnonzero(neighbour == -1)
        rhs[kept] += weight * values[:, padded[kept] + offset].T
    present = columns >= 0
    indptr = np.zeros(n_unknowns + 1, dtype=np.int64)
    np.cumsum(np.count_nonzero(present, axis=1), out=indptr[1:])
    return _Systems(starts, pixel, indptr, columns[present], entries[present], rhs)


def _solve_direct(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Imputed ``[R, C, H, W]`` float64 values of one image: kept pixels copied, removed solved.

    Each system is factorised by SuperLU in the dissection order without pivoting (``M`` is
    symmetric positive definite). The sets go largest first in groups of one per thread
    (``torch.get_num_threads()``; SuperLU releases the GIL while it factorises), each group
    assembled just before it is solved, so that memory holds one group's systems and factors
    (MoRF and LeRF sets of a fraction have the same size: a pair keeps two threads equally busy).

    Args:
        image: ``[C, H, W]`` float64.
        removed: ``[R, H, W]`` bool removal sets.
    """
    n_sets, height, width = removed.shape
    channels = image.shape[0]
    out = np.repeat(image.reshape(1, channels, height * width), n_sets, axis=0)
    sizes = np.count_nonzero(removed.reshape(n_sets, -1), axis=1)
    by_size = [int(index) for index in np.argsort(-sizes, kind="stable") if sizes[index] > 0]
    workers = max(1, min(torch.get_num_threads(), len(by_size)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for first in range(0, len(by_size), workers):
            group = by_size[first : first + workers]
            systems = _assemble(image, removed[group])

            def solve(member: int, systems: _Systems = systems, group: list[int] = group) -> None:
                start, stop = systems.starts[member], systems.starts[member + 1]
                lo, hi = systems.indptr[start], systems.indptr[stop]
                # symmetric: its rows given as CSR are its columns as CSC
                matrix = scipy.sparse.csc_matrix(
                    (
                        systems.data[lo:hi],
                        systems.indices[lo:hi] - start,
                        systems.indptr[start : stop + 1] - lo,
                    ),
                    shape=(stop - start, stop - start),
                )
                factor = scipy.sparse.linalg.splu(
                    matrix,
                    permc_spec="NATURAL",
                    diag_pivot_thresh=0.0,
                    options={"SymmetricMode": True},
                )
                solution = factor.solve(systems.rhs[start:stop])
                out[group[member]][:, systems.pixel[start:stop]] = solution.T

            if workers == 1:
                solve(0)
            else:
                list(pool.map(solve, range(len(group))))
    return out.reshape(n_sets, channels, height, width)


def cg_iteration_cap(height: int, width: int) -> int:
    """Conjugate-gradient iterations after which :func:`impute_noisy_linear` gives up on a device.

    ``max(100, 10 * (H + W))``: Jacobi-preconditioned CG needs about ``sqrt(cond)`` iterations
    per digit and the condition number of these systems grows with the square of the removed
    region's diameter; the 18 removal sets of 224 px images converged in 1,040 iterations (the
    cap is 4,480).
    """
    return max(100, 10 * (height + width))


def _solve_cg(image: Tensor, removed: Tensor) -> Tensor:
    """Imputed ``[R, C, H, W]`` float64 values of one image by batched conjugate gradients.

    Jacobi-preconditioned CG on every (removal set, channel) system at once, matrix-free (the
    8-neighbour stencil as shifted sums), in float64 on the image's device, until every
    relative residual ``|b - M u| / |b|`` is at most :data:`CG_TOLERANCE`.

    Args:
        image: ``[C, H, W]`` float64.
        removed: ``[R, H, W]`` bool removal sets (each keeps a pixel).

    Raises:
        RuntimeError: not converged within :func:`cg_iteration_cap` iterations.
    """
    height, width = image.shape[1:]

    def neighbours(values: Tensor) -> Tensor:
        """``sum_j w_ij values_j`` over the in-frame neighbours (zeros outside the frame)."""
        padded = torch.nn.functional.pad(values, (1, 1, 1, 1))
        total = torch.zeros_like(values)
        for (dy, dx), weight in NEIGHBOUR_WEIGHTS:
            total.add_(padded[..., 1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width], alpha=weight)
        return total

    mask = removed[:, None].to(torch.float64)  # [R, 1, H, W]
    diagonal = neighbours(torch.ones(1, 1, height, width, dtype=torch.float64, device=image.device))
    inverse = mask / diagonal.clamp(min=1 / 12)
    rhs = mask * neighbours(image[None] * (1 - mask))  # [R, C, H, W]
    target = CG_TOLERANCE**2 * rhs.square().sum(dim=(2, 3))
    solution = torch.zeros_like(rhs)
    residual = rhs.clone()
    preconditioned = inverse * residual
    direction = preconditioned.clone()
    rz = (residual * preconditioned).sum(dim=(2, 3))
    cap = cg_iteration_cap(height, width)
    for iteration in range(cap + 1):
        if iteration % CG_CHECK_EVERY == 0 or iteration == cap:
            squares = residual.square().sum(dim=(2, 3))
            if not bool((squares > target).any()):
                logger.debug("ROAD imputation: CG converged in %d iterations", iteration)
                break
            if iteration == cap:
                worst = float((squares / target.clamp(min=1e-300)).max())
                raise RuntimeError(
                    f"ROAD imputation: conjugate gradients did not converge in {cap} iterations "
                    f"({height}x{width} px; worst relative residual "
                    f"{CG_TOLERANCE * math.sqrt(worst):.3g} > {CG_TOLERANCE})"
                )
        product = mask * (diagonal * direction - neighbours(direction))
        curvature = (direction * product).sum(dim=(2, 3))
        step = torch.where(curvature > 0, rz / curvature.clamp(min=1e-300), 0.0)[..., None, None]
        solution += step * direction
        residual -= step * product
        preconditioned = inverse * residual
        rz_next = (residual * preconditioned).sum(dim=(2, 3))
        ratio = torch.where(rz > 0, rz_next / rz.clamp(min=1e-300), 0.0)[..., None, None]
        direction = preconditioned + ratio * direction
        rz = rz_next
    return torch.where(removed[:, None], solution, image[None])


# --- argument checks ------------------------------------------------------------------------


def _check_removed(removed: object, images: Tensor) -> Tensor:
    """``removed`` as boolean ``[B, R, H, W]`` on the images' device, else raise."""
    batch, _, height, width = images.shape
    if not isinstance(removed, Tensor):
        raise TypeError(
            f"removed must be a boolean torch.Tensor [B, H, W] or [B, R, H, W], "
            f"got {type(removed).__name__}"
        )
    if removed.dtype != torch.bool:
        raise TypeError(f"removed must be a boolean tensor (True = removed), got {removed.dtype}")
    if (
        removed.ndim not in (3, 4)
        or tuple(removed.shape[::-1][:2]) != (width, height)
        or (removed.shape[0] != batch)
    ):
        raise ValueError(
            f"removed must be [B, H, W] or [B, R, H, W] with B, H, W = {batch}, {height}, {width} "
            f"(the images' shape {tuple(images.shape)}), got shape {tuple(removed.shape)}"
        )
    sets = removed.to(images.device)
    sets = sets[:, None] if sets.ndim == 3 else sets
    if bool(sets.flatten(2).all(dim=2).any()):
        raise ValueError("removed must keep at least one pixel of each image and removal set")
    return sets


def _check_noise(noise: object) -> float:
    if isinstance(noise, bool) or not isinstance(noise, Real):
        raise TypeError(f"noise must be a real number >= 0, got {noise!r}")
    if not 0 <= float(noise) < math.inf:
        raise ValueError(f"noise must be a finite number >= 0, got {noise}")
    return float(noise)


def _check_generator(generator: object) -> None:
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {generator!r}")
    if generator.device.type != "cpu":
        raise ValueError(
            f"generator must be a CPU generator (the noise is drawn on the CPU), got one on "
            f"{generator.device}"
        )


def _check_fractions(fractions: object) -> tuple[float, ...]:
    if not isinstance(fractions, Sequence) or isinstance(fractions, str) or not fractions:
        raise TypeError(f"fractions must be a non-empty sequence of numbers, got {fractions!r}")
    for fraction in fractions:
        if isinstance(fraction, bool) or not isinstance(fraction, Real):
            raise TypeError(f"fractions must hold real numbers, got {fraction!r}")
        if not 0 < float(fraction) < 1:
            raise ValueError(
                f"fractions must lie strictly between 0 and 1 (the share of pixels removed), "
                f"got {fraction}"
            )
    return tuple(float(fraction) for fraction in fractions)


def _check_orders(orders: object) -> tuple[str, ...]:
    if isinstance(orders, str):
        orders = (orders,)
    if not isinstance(orders, Sequence) or not orders:
        raise TypeError(f"orders must be a non-empty sequence of strings, got {orders!r}")
    allowed = ", ".join(map(repr, ORDERS))
    for order in orders:
        if order not in ORDERS:
            raise ValueError(f"orders: unknown order {order!r}; orders are {allowed}")
    if len(set(orders)) != len(orders):
        raise ValueError(f"orders must not repeat an order, got {tuple(orders)}")
    return tuple(orders)


def _noise_scales(
    noise: float, space: object, std: Sequence[float] | None, channels: int
) -> Tensor:
    """The noise's standard deviation per channel in the images' (normalised) units."""
    if space not in SPACES:
        allowed = ", ".join(map(repr, SPACES))
        raise ValueError(f"space must be one of {allowed}, got {space!r}")
    if space == "normalised":
        return torch.full((channels,), noise, dtype=torch.float64)
    if std is None:
        raise ValueError(
            "std is required with space='pixels' (the images' normalisation std per channel); "
            "use space='normalised' to add the noise to the images as given"
        )
    if not isinstance(std, Sequence) or isinstance(std, str) or len(std) != channels:
        raise ValueError(f"std must hold one number per channel ({channels}), got {std!r}")
    for value in std:
        if isinstance(value, bool) or not isinstance(value, Real) or not 0 < value < math.inf:
            raise ValueError(f"std must hold finite numbers > 0, got {std!r}")
    return noise / torch.tensor([float(value) for value in std], dtype=torch.float64)


# --- the registered metric ------------------------------------------------------------------


def _score_item(item: ScoredItem, settings: ScoringSettings) -> MetricScore:
    """ROAD of one explained item: both means, their combination and both curves."""
    generator = torch.Generator().manual_seed(road_item_seed(settings.seed, item.item_id))
    with forward_context(item.image.device, settings.dtype):
        result = road_curves(
            item.model,
            item.image,
            item.maps,
            target=item.target,
            space="pixels",
            std=settings.std,
            generator=generator,
            batch_size=settings.batch_size,
            backend=settings.backend,
            precision=settings.precision,
        )
    return MetricScore(
        {
            "road_morf": float(result.mean("morf")[0]),
            "road_lerf": float(result.mean("lerf")[0]),
            "road": float(result.road[0]),
        },
        curves={"road_morf": result.curves["morf"][0], "road_lerf": result.curves["lerf"][0]},
    )


def _protocol(settings: ScoringSettings) -> dict[str, object]:
    """ROAD's protocol entry, from the module's constants (it reads no setting)."""
    edge, diagonal = (
        str(Fraction(weight).limit_denominator(1000))
        for weight in (NEIGHBOUR_WEIGHTS[1][1], NEIGHBOUR_WEIGHTS[0][1])
    )
    return {
        "fractions": list(FRACTIONS),
        "removed_pixels": "floor(f * H * W) at each fraction f",
        "order": PIXEL_ORDER,
        "road_morf": "mean over the fractions, the first removed_pixels of the order removed",
        "road_lerf": "mean over the fractions, the last removed_pixels of the order removed",
        "road": "(road_lerf - road_morf) / 2",
        "imputation": (
            "noisy linear (Rong et al. 2022): each removed pixel the weighted mean of its "
            f"in-frame 8-neighbours (edge {edge}, diagonal {diagonal}; out-of-frame weights "
            "dropped), one sparse linear system per image and removal set, solved in float64"
        ),
        "noise": DEFAULT_NOISE,
        "noise_space": "pixels: [0, 1] units (noise / std per channel on the model's inputs)",
        "seeding": (
            f"standard normal draws [{len(ORDERS) * len(FRACTIONS)}, C, H, W] per item (all "
            "pixels; the removed ones used, order-major, fractions ascending) "
            "from a CPU generator seeded with SHA-256('sidu-bench/metrics/"
            f"{SEED_STREAM}/<seed>/<item id>'), first 8 bytes little-endian, >> 1"
        ),
        "score": CURVE_SCORE,
    }


ROAD = register_metric(
    Metric(
        name="road",
        columns={"road_morf": math.nan, "road_lerf": math.nan, "road": math.nan},
        statistics=(
            Statistic("road_morf", column="road_morf", higher_is_better=False, title="ROAD MoRF"),
            Statistic("road_lerf", column="road_lerf", title="ROAD LeRF"),
            Statistic("road", column="road", title="ROAD"),
        ),
        score=_score_item,
        protocol=_protocol,
        position=50,
        monotone_invariant=True,
    )
)
"""``--metrics road`` (computed by default): ROAD's MoRF and LeRF means and their combination.

On by default: on the CPU it costs 0.36-0.49 of an item's insertion/deletion (EfficientNet-Lite0,
one explainer, ONNX Runtime forwards; the imputation 0.9-1.3 s of it), and it is the faithfulness
measure that is not confounded by out-of-distribution inputs.
"""
