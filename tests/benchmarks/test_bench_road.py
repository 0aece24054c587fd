"""Speed of ROAD's imputation against pytorch-grad-cam's ``NoisyLinearImputer`` (CPU, 224 px).

One image at 224 px (a real ImageNet image when ``../shared/data`` holds them, else a smooth
random one) and the 18 removal sets ROAD uses (fractions 0.1, ..., 0.9, most and least salient
first) of a smooth saliency map, whose removal sets are blobs. Ours imputes the 18 sets in one
call (:func:`sidu_bench.metrics.impute_noisy_linear` with ``removed [1, 18, H, W]``: vectorised
assembly, nested-dissection ordering, SuperLU on ``torch.get_num_threads()`` threads); the peer
is called once per set, as its ``ROADCombined`` does (``lil_matrix`` assembly, ``spsolve``). Both
add the default noise (0.01). Each side runs :data:`REPEATS` times in the same process (ours
after a warm-up); the medians are compared and kept in ``extra_info``, and ours must be at least
:data:`MIN_SPEEDUP` times faster. Run with
``pytest tests/benchmarks/test_bench_road.py --benchmark-only``.
"""

from __future__ import annotations

import math
import statistics
import time

import pytest
import torch
from fixtures_data import fake_spec, shared_data

from sidu_bench.metrics import impute_noisy_linear
from sidu_bench.metrics.road import FRACTIONS

SIZE = 224
REPEATS = 3
MIN_SPEEDUP = 4.0


def _image() -> tuple[torch.Tensor, str]:
    """A real 224 px ImageNet image if available, else a smooth random one; and its source."""
    root = shared_data()
    if (root / "imagenet-val").is_dir():
        from sidu_bench.data import get_dataset

        dataset = get_dataset("imagenet-val", root, fake_spec(input_size=SIZE))
        return dataset[0].image, f"imagenet-val {dataset[0].id}"
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(1, 3, 7, 7, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear")[0], "random"


def _removal_sets() -> torch.Tensor:
    """Boolean ``[18, S, S]``: MoRF and LeRF sets of a two-bump map at each fraction."""
    rows = torch.arange(SIZE, dtype=torch.float64)[:, None]
    cols = torch.arange(SIZE, dtype=torch.float64)[None, :]
    saliency = torch.exp(-((rows - 90) ** 2 + (cols - 130) ** 2) / (2 * 40**2))
    saliency += 0.5 * torch.exp(-((rows - 170) ** 2 + (cols - 50) ** 2) / (2 * 25**2))
    rank = torch.empty(SIZE * SIZE, dtype=torch.long)
    rank[torch.sort(-saliency.flatten(), stable=True).indices] = torch.arange(SIZE * SIZE)
    sets = []
    for fraction in FRACTIONS:
        count = math.floor(fraction * SIZE * SIZE)
        sets += [rank < count, rank >= SIZE * SIZE - count]
    return torch.stack(sets).view(-1, SIZE, SIZE)


@pytest.mark.filterwarnings("ignore:__array_wrap__ must accept context:DeprecationWarning")
def test_imputation_against_pytorch_grad_cam(benchmark):
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    image, source = _image()
    removed = _removal_sets()
    peer = NoisyLinearImputer()  # noise 0.01

    peer_seconds = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for kept in (~removed).float():  # its mask: 1 = kept
            peer(image, kept)
        peer_seconds.append(time.perf_counter() - start)

    generator = torch.Generator().manual_seed(0)
    result = benchmark.pedantic(
        lambda: impute_noisy_linear(image[None], removed[None], generator=generator),
        rounds=REPEATS,
        iterations=1,
        warmup_rounds=1,
    )
    ours = benchmark.stats.stats.median
    theirs = statistics.median(peer_seconds)
    benchmark.extra_info.update(
        {
            "image": source,
            "size": SIZE,
            "removal_sets": len(removed),
            "removed_pixels": int(removed.sum()),
            "torch_threads": torch.get_num_threads(),
            "seconds_ours_median": round(ours, 4),
            "seconds_ours": [round(s, 4) for s in benchmark.stats.stats.data],
            "seconds_peer_median": round(theirs, 4),
            "seconds_peer": [round(s, 4) for s in peer_seconds],
            "speedup_over_peer": round(theirs / ours, 2),
        }
    )
    assert result.shape == (1, len(removed), 3, SIZE, SIZE)
    assert theirs / ours >= MIN_SPEEDUP, benchmark.extra_info
