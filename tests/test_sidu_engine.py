"""The masked-forward engine against a plain loop of one forward pass per masked image."""

import pytest
import torch

from sidu.engine import TensorMasks, auto_batch_size, estimate_bytes_per_image, masked_forward


def plain_loop(model, images, masks_per_image):
    with torch.no_grad():
        return [
            torch.stack([model((image * mask)[None])[0] for mask in masks])
            for image, masks in zip(images, masks_per_image, strict=True)
        ]


class RaggedMasks:
    """Image b has b + 2 continuous masks: chunks must cross image boundaries correctly."""

    def __init__(self, size, seed=0):
        generator = torch.Generator().manual_seed(seed)
        self.per_image = [
            torch.rand(b + 2, *size, generator=generator, dtype=torch.float64) for b in range(3)
        ]

    def num_masks(self, image_index):
        return self.per_image[image_index].shape[0]

    def masks(self, image_index, start, stop):
        return self.per_image[image_index][start:stop]


@pytest.mark.parametrize("batch_size", [1, 2, 4, 100])
def test_ragged_sources_match_the_plain_loop(batch_size, tiny_cnn):
    model = tiny_cnn(seed=1)
    images = torch.randn(3, 3, 10, 9, dtype=torch.float64)
    source = RaggedMasks((10, 9))
    ours = masked_forward(model, images, source, batch_size=batch_size)
    expected = plain_loop(model, images, source.per_image)
    for got, want in zip(ours, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_shared_and_per_channel_masks(tiny_cnn):
    model = tiny_cnn(seed=2)
    images = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    shared = torch.rand(5, 3, 8, 8, dtype=torch.float64)
    ours = masked_forward(model, images, shared, batch_size=3)
    expected = plain_loop(model, images, [shared, shared])
    for got, want in zip(ours, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    per_image = torch.rand(2, 4, 8, 8, dtype=torch.float64)
    ours = masked_forward(model, images, TensorMasks(per_image, per_image=True), batch_size=5)
    expected = plain_loop(model, images, list(per_image))
    for got, want in zip(ours, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_transform_sees_the_owner_of_each_row(tiny_cnn):
    model = tiny_cnn(seed=3)
    images = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    source = RaggedMasks((8, 8), seed=1)
    targets = torch.tensor([4, 0, 2])

    def pick_target(outputs, owner):
        return torch.softmax(outputs, dim=1).gather(1, targets[owner][:, None])[:, 0]

    ours = masked_forward(model, images, source, transform=pick_target, batch_size=3)
    expected = plain_loop(model, images, source.per_image)
    for b in range(3):
        torch.testing.assert_close(
            ours[b], torch.softmax(expected[b], dim=1)[:, targets[b]], rtol=0, atol=1e-12
        )


def test_progress_counts_every_forwarded_image(tiny_cnn):
    model = tiny_cnn(seed=4, dtype=torch.float32)
    seen = []
    masked_forward(
        model, torch.rand(2, 3, 8, 8), torch.rand(7, 8, 8), batch_size=4, progress=seen.append
    )
    assert seen == [4, 4, 4, 2]


def test_model_runs_without_gradients(tiny_cnn):
    model = tiny_cnn(seed=5, dtype=torch.float32)
    out = masked_forward(model, torch.rand(1, 3, 8, 8), torch.rand(2, 8, 8), batch_size=2)
    assert not out[0].requires_grad


def test_bad_masks_and_batch_size(tiny_cnn):
    model = tiny_cnn(seed=6, dtype=torch.float32)
    images = torch.rand(2, 3, 8, 8)
    with pytest.raises(
        ValueError, match=r"mask source returned shape \(3, 1, 7, 8\).*expected \[3, \(C,\) 8, 8\]"
    ):
        masked_forward(model, images, torch.rand(3, 7, 8), batch_size=4)
    with pytest.raises(ValueError, match="masks must have 3 or 4 dimensions"):
        masked_forward(model, images, torch.rand(8, 8), batch_size=4)
    with pytest.raises(TypeError, match=r"masks must be a torch\.Tensor or a MaskSource"):
        masked_forward(model, images, [1, 2], batch_size=4)
    with pytest.raises(ValueError, match="batch_size must be a positive int or None"):
        masked_forward(model, images, torch.rand(3, 8, 8), batch_size=0)


def test_batch_size_follows_the_memory_budget(tiny_cnn):
    model = tiny_cnn(seed=7, dtype=torch.float32)
    image = torch.rand(1, 3, 32, 32)
    per_image = estimate_bytes_per_image(model, image)
    # input (3*32*32*4) + 3 x largest leaf output (8*32*32*4)
    assert per_image == 3 * 32 * 32 * 4 + 3 * 8 * 32 * 32 * 4
    assert auto_batch_size(model, image, memory_budget=5 * per_image) == 5
    assert auto_batch_size(model, image, memory_budget=1) == 1
    assert auto_batch_size(model, image, memory_budget=10**12) == 256
