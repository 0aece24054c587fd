"""CPU and CUDA agree: why the device is environment, not protocol (skipped without CUDA).

The same seeded inputs run through SIDU, insertion/deletion and the pointing game on the CPU and
on CUDA at IEEE float32 (:func:`sidu.precision.fp32_precision`). Tolerances, from issue 13:

* SIDU maps: ``max |cpu - cuda| <= 1e-4 * max |cpu|`` per image;
* insertion/deletion AUCs: ``<= 1e-5`` absolute, for the same saliency (the CPU map) on both
  devices, and for each device's own map whenever the two maps rank the pixels identically
  (otherwise the curves perturb pixels in another order, and the difference is reported only);
* pointing-game hits: equal, each device on its own map.

Runs for a seeded tiny CNN and, when its weights package is installed, EfficientNet-Lite0.
``SIDU_PARITY_DEVICE`` names the second device (default ``cuda``; ``cpu`` exercises the
comparison itself without a GPU), and ``SIDU_PARITY_REPORT`` a JSON file that receives the
measured differences (the GPU check, ``tests/gpu/check.sh``, sets both).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import torch
from sidu_models import tiny_cnn

import sidu
from sidu.precision import fp32_precision
from sidu_bench.metrics import insertion_deletion, pointing_game

OTHER = os.environ.get("SIDU_PARITY_DEVICE", "cuda")
REPORT = os.environ.get("SIDU_PARITY_REPORT")

pytestmark = pytest.mark.skipif(
    OTHER.startswith("cuda") and not torch.cuda.is_available(), reason="needs CUDA"
)

MAP_TOLERANCE = 1e-4
AUC_TOLERANCE = 1e-5
_measured: dict[str, dict[str, object]] = {}


@pytest.fixture(scope="module", autouse=True)
def _write_report():
    yield
    if REPORT:
        Path(REPORT).write_text(json.dumps({"device": OTHER, "cases": _measured}, indent=2))


def _boxes(count: int, size: int, seed: int) -> torch.Tensor:
    """Random boxes ``[count, size, size]`` (bool), a quarter to a half of the side each."""
    generator = torch.Generator().manual_seed(seed)
    regions = torch.zeros(count, size, size, dtype=torch.bool)
    for b in range(count):
        side = int(torch.randint(size // 4, size // 2 + 1, (1,), generator=generator))
        top, left = (
            int(torch.randint(0, size - side + 1, (1,), generator=generator)) for _ in "yx"
        )
        regions[b, top : top + side, left : left + side] = True
    return regions


def _run(model: torch.nn.Module, layer: str, images: torch.Tensor, regions: torch.Tensor, device):
    """SIDU, insertion/deletion (own map and the given CPU map) and pointing game on ``device``."""
    model = copy.deepcopy(model).to(device).eval()
    images, regions = images.to(device), regions.to(device)
    with fp32_precision("ieee"):
        result = sidu.SIDU(model, layer).explain(images)
        own = insertion_deletion(model, images, result.saliency, steps=32)
    assert result.num_distinct_masks.device == images.device
    hits, valid = pointing_game(result.saliency, regions, tolerance=4.0)
    return model, result, own, hits, valid


def _ranks(maps: torch.Tensor) -> torch.Tensor:
    """Pixel order of insertion/deletion: saliency descending, ties by index."""
    return torch.sort(-maps.flatten(1).to(torch.float64) + 0.0, dim=1, stable=True).indices


def _compare(name: str, model: torch.nn.Module, layer: str, images: torch.Tensor, seed: int):
    regions = _boxes(images.shape[0], images.shape[-1], seed)
    _, cpu, cpu_own, cpu_hits, valid = _run(model, layer, images, regions, "cpu")
    other_model, other, other_own, other_hits, _ = _run(model, layer, images, regions, OTHER)
    with fp32_precision("ieee"):
        same_map = insertion_deletion(
            other_model, images.to(OTHER), cpu.saliency.to(OTHER), steps=32
        )

    maps_cpu, maps_other = cpu.saliency, other.saliency.cpu()
    scale = maps_cpu.flatten(1).abs().amax(dim=1)
    map_error = ((maps_cpu - maps_other).flatten(1).abs().amax(dim=1) / scale).tolist()
    same_map_auc = max(
        float((cpu_own.insertion_auc - same_map.insertion_auc.cpu()).abs().max()),
        float((cpu_own.deletion_auc - same_map.deletion_auc.cpu()).abs().max()),
    )
    own_map_auc = max(
        float((cpu_own.insertion_auc - other_own.insertion_auc.cpu()).abs().max()),
        float((cpu_own.deletion_auc - other_own.deletion_auc.cpu()).abs().max()),
    )
    same_ranks = torch.equal(_ranks(maps_cpu), _ranks(maps_other))
    _measured[name] = {
        "images": list(images.shape),
        "map_max_abs_diff_over_max": map_error,
        "auc_max_abs_diff_same_map": same_map_auc,
        "auc_max_abs_diff_own_maps": own_map_auc,
        "own_maps_rank_pixels_identically": same_ranks,
        "pointing_game_hits_cpu": cpu_hits.tolist(),
        "pointing_game_hits_other": other_hits.cpu().tolist(),
        "distinct_masks": cpu.num_distinct_masks.tolist(),
    }
    assert bool(valid.all())
    assert max(map_error) <= MAP_TOLERANCE, f"{name}: SIDU maps differ by {map_error}"
    assert same_map_auc <= AUC_TOLERANCE, f"{name}: AUCs on the same map differ by {same_map_auc}"
    if same_ranks:
        assert own_map_auc <= AUC_TOLERANCE, f"{name}: AUCs on own maps differ by {own_map_auc}"
    assert torch.equal(cpu_hits, other_hits.cpu()), f"{name}: pointing-game hits differ"
    assert torch.equal(cpu.num_distinct_masks, other.num_distinct_masks.cpu())


def test_tiny_cnn_agrees_across_devices():
    model = tiny_cnn(seed=3, channels=16, dtype=torch.float32)
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(11))
    _compare("tiny_cnn", model, "3", images, seed=12)


def test_efficientnet_lite0_agrees_across_devices():
    from sidu_bench.models import get_model

    try:
        spec = get_model("efficientnet_lite0")
    except (ImportError, ModuleNotFoundError) as error:
        pytest.skip(f"EfficientNet-Lite0 weights are not installed: {error}")
    size = spec.input_size
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(21))
    _compare("efficientnet_lite0", spec.module, spec.default_layer, images, seed=22)
