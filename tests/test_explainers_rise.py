"""RISE against a plain float64 reference (one forward per mask), and its seeding invariants."""

import contextlib
import hashlib
import math

import numpy as np
import pytest
import torch
from sidu_models import tiny_cnn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from sidu_bench.explainers import get_explainer
from sidu_bench.explainers.rise import RISEMasks, RISEOptions, draw_grids


@pytest.fixture
def skimage_transform():
    return pytest.importorskip("skimage.transform")


def plain_generator(seed, item_id):
    """The documented per-item seed, written out: SHA-256, first 8 bytes little-endian, >> 1."""
    digest = hashlib.sha256(f"sidu-bench/explainers/rise/{seed}/{item_id}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def reference_rise(resize, model, image, target, *, item_id, seed, masks, cells, p):
    """RISE for one image, written plainly in float64: the authors' generate_masks + one
    forward per mask + S = sum_i P_target(x * M_i) M_i / (N p)."""
    height, width = image.shape[-2:]
    cell_h, cell_w = math.ceil(height / cells), math.ceil(width / cells)
    generator = plain_generator(seed, item_id)
    grid = (torch.rand((masks, cells, cells), dtype=torch.float64, generator=generator) < p).numpy()
    dy = torch.randint(0, cell_h, (masks,), generator=generator).numpy()
    dx = torch.randint(0, cell_w, (masks,), generator=generator).numpy()
    up_size = ((cells + 1) * cell_h, (cells + 1) * cell_w)
    saliency = np.zeros((height, width))
    with torch.no_grad():
        for i in range(masks):
            up = resize(
                grid[i].astype(np.float64), up_size, order=1, mode="reflect", anti_aliasing=False
            )
            mask = up[dy[i] : dy[i] + height, dx[i] : dx[i] + width]
            logits = model(image[None] * torch.from_numpy(mask))
            probability = torch.softmax(logits, dim=1)[0, target].item()
            saliency += probability * mask
    return saliency / (masks * p)


@pytest.mark.parametrize(
    ("size", "cells", "p"),
    [((20, 20), 7, 0.5), ((18, 25), 4, 0.3), ((13, 9), 5, 0.8)],
)
def test_matches_plain_float64_reference(skimage_transform, size, cells, p):
    model = tiny_cnn(seed=3, stride=2)
    images = torch.randn(
        2, 3, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(4)
    )
    targets = torch.tensor([1, 4])
    ids = ["cat/001", "dog/017"]
    spec = f"rise:masks=80,cells={cells},p={p}"
    ours = get_explainer(spec, model, seed=11, batch_size=16)(images, targets, ids)
    for b in range(2):
        reference = reference_rise(
            skimage_transform.resize,
            model,
            images[b],
            int(targets[b]),
            item_id=ids[b],
            seed=11,
            masks=80,
            cells=cells,
            p=p,
        )
        assert np.ptp(reference) > 0.01, "a flat map proves nothing"
        np.testing.assert_allclose(ours[b].numpy(), reference, atol=1e-6, rtol=0)


def test_masks_are_binary_grids_upsampled_and_shifted(skimage_transform):
    options = RISEOptions(masks=40, cells=3, p=0.5)
    grids, shifts = draw_grids(torch.Generator().manual_seed(0), options, (9, 7))
    assert grids.dtype == torch.bool
    # cell sizes ceil(9 / 3) = ceil(7 / 3) = 3
    assert int(shifts.max()) == 2
    assert int(shifts.min()) == 0
    assert 0.3 < grids.double().mean() < 0.7
    masks = RISEMasks([(grids, shifts)], (9, 7), dtype=torch.float64, device=torch.device("cpu"))
    built = masks.masks(0, 0, 40)
    assert built.shape == (40, 9, 7)
    assert float(built.min()) >= 0.0
    assert float(built.max()) <= 1.0
    for i in (0, 17, 39):
        up = skimage_transform.resize(
            grids[i].double().numpy(), (12, 12), order=1, mode="reflect", anti_aliasing=False
        )
        dy, dx = shifts[i].tolist()
        np.testing.assert_allclose(built[i].numpy(), up[dy : dy + 9, dx : dx + 7], atol=1e-12)
    weights = torch.rand(40, dtype=torch.float64)
    torch.testing.assert_close(
        masks.weighted_sum(0, weights), torch.einsum("n,nhw->hw", weights, built)
    )


def test_chunk_size_invariance_and_engine_chunks(masked_forward_spy):
    model = tiny_cnn(seed=5, stride=2)
    images = torch.randn(
        2, 3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
    )
    targets, ids = torch.tensor([0, 2]), ["x", "y"]
    reference = get_explainer("rise:masks=100", model, batch_size=150)(images, targets, ids)
    for batch_size in (1, 7, 64):
        masked_forward_spy.slices.clear()
        maps = get_explainer("rise:masks=100", model, batch_size=batch_size)(images, targets, ids)
        assert max(masked_forward_spy.slices) <= batch_size, "masks are made chunk by chunk"
        assert sum(masked_forward_spy.slices) == 2 * 100
        torch.testing.assert_close(maps, reference, atol=1e-7, rtol=0)


def test_seeded_per_item_independent_of_batch():
    model = tiny_cnn(seed=6, stride=2, dtype=torch.float32)
    generator = torch.Generator().manual_seed(2)
    images = torch.randn(3, 3, 14, 14, generator=generator)
    targets, ids = torch.tensor([0, 1, 2]), ["a", "b", "c"]
    explainer = get_explainer("rise:masks=60", model, seed=3, batch_size=8)
    together = explainer(images, targets, ids)
    reordered = explainer(images[[2, 0]], targets[[2, 0]], ["c", "a"])
    torch.testing.assert_close(reordered, together[[2, 0]], atol=1e-6, rtol=0)
    for b in range(3):
        alone = explainer(images[b : b + 1], targets[b : b + 1], ids[b : b + 1])
        torch.testing.assert_close(alone[0], together[b], atol=1e-6, rtol=0)
    again = get_explainer("rise:masks=60", model, seed=3, batch_size=5)(images, targets, ids)
    torch.testing.assert_close(again, together, atol=1e-6, rtol=0)
    # another id (same image) or another seed draws other masks
    same_image = images[[0, 0]]
    other = explainer(same_image, targets[[0, 0]], ["a", "z"])
    assert (other[0] - other[1]).abs().max() > 1e-2
    reseeded = get_explainer("rise:masks=60", model, seed=4)(images[:1], targets[:1], ["a"])
    assert (reseeded[0] - together[0]).abs().max() > 1e-2


def test_bfloat16_masks_stay_full_precision():
    model = tiny_cnn(seed=6, stride=2, dtype=torch.float32)
    images = torch.randn(1, 3, 14, 14, generator=torch.Generator().manual_seed(2))
    full = get_explainer("rise:masks=60", model)(images, torch.tensor([1]), ["a"])
    reduced = get_explainer("rise:masks=60", model, dtype=torch.bfloat16)(
        images, torch.tensor([1]), ["a"]
    )
    assert not torch.equal(full, reduced), "autocast was not applied"
    assert (full - reduced).abs().max() < 2e-2


class DevicesSeen(TorchDispatchMode):
    """Records the device types of every tensor an operation reads or makes."""

    def __init__(self):
        super().__init__()
        self.devices = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves((args, kwargs or {}, out)):
            if isinstance(leaf, torch.Tensor):
                self.devices.add(leaf.device.type)
        return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunks_and_weighted_sum_never_read_the_host(monkeypatch, dtype):
    """After one copy at construction, building masks and the weighted sum run on the device
    alone (the meta device stands in for a GPU: a host tensor in any op would show up)."""
    real_autocast = torch.autocast

    def autocast(device_type, **kwargs):  # torch has no autocast state for "meta"
        if device_type == "meta":
            return contextlib.nullcontext()
        return real_autocast(device_type, **kwargs)

    monkeypatch.setattr(torch, "autocast", autocast)
    device = torch.device("meta")
    options = RISEOptions(masks=150, cells=4)
    draws = [draw_grids(torch.Generator().manual_seed(i), options, (12, 10)) for i in range(2)]
    source = RISEMasks(draws, (12, 10), dtype=dtype, device=device)
    weights = torch.empty(150, dtype=torch.float64, device=device)
    with DevicesSeen() as seen:
        masks = source.masks(1, 20, 90)
        total = source.weighted_sum(1, weights)
    assert seen.devices == {"meta"}
    assert (masks.shape, masks.dtype, masks.device) == ((70, 12, 10), dtype, device)
    assert (total.shape, total.dtype, total.device) == ((12, 10), torch.float64, device)
