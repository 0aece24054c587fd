"""Score-CAM's ``max_channels`` (Faster Score-CAM): top-variance channels only, exactly."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from sidu_models import tiny_cnn

from sidu_bench.explainers import get_explainer, parse_spec
from sidu_bench.explainers.scorecam import ScoreCAM, ScoreCAMOptions, top_variance_channels

pytestmark = pytest.mark.usefixtures("one_thread")

CHANNELS = 12
IDS = ["a", "b", "c"]
TARGETS = torch.tensor([0, 3, 1])


def case(*, dtype=torch.float64, size=(14, 18), batch=2, stride=2, seed=5):
    model = tiny_cnn(seed=seed, channels=CHANNELS, stride=stride, dtype=dtype)
    generator = torch.Generator().manual_seed(200 + seed)
    images = torch.randn(batch, 3, *size, generator=generator, dtype=dtype)
    return model, images


def layer_activations(model, images):
    """The explained layer's output ``[B, K, h, w]`` for the clean images."""
    store = []
    handle = model[3].register_forward_hook(lambda module, args, output: store.append(output))
    try:
        with torch.no_grad():
            model(images)
    finally:
        handle.remove()
    return store[0]


def minmax(x):
    return (x - x.min()) / (x.max() - x.min() + 1e-7)


def reference_fast_scorecam(model, images, targets, count):
    """Faster Score-CAM written plainly: one channel, one masked forward at a time."""
    activations = layer_activations(model, images)
    size = tuple(images.shape[-2:])
    maps, selections = [], []
    for b in range(images.shape[0]):
        a = activations[b]
        variances = []
        for k in range(a.shape[0]):
            values = a[k].flatten().tolist()
            mean = sum(values) / len(values)
            variances.append(sum((v - mean) ** 2 for v in values) / len(values))
        ranked = sorted(range(a.shape[0]), key=lambda k: (-variances[k], k))
        kept = ranked[:count]
        if count < len(ranked):
            # the selection must not hinge on rounding
            assert variances[ranked[count - 1]] - variances[ranked[count]] > 1e-9
        scores = []
        for k in kept:
            up = F.interpolate(a[k][None, None], size=size, mode="bilinear", align_corners=True)
            up = up[0, 0]
            mask = (up - up.min()) / (up.max() - up.min() + 1e-8)
            with torch.no_grad():
                logits = model((images[b] * mask)[None])
            scores.append(float(logits[0, int(targets[b])]))
        weights = torch.softmax(torch.tensor(scores, dtype=torch.float64), dim=0)
        cam = torch.zeros_like(a[0])
        for weight, k in zip(weights, kept, strict=True):
            cam = cam + weight * a[k]
        small = minmax(cam.clamp_min(0.0))
        resized = F.interpolate(small[None, None], size=size, mode="bilinear", align_corners=False)
        maps.append(minmax(resized[0, 0]))
        selections.append(kept)
    return torch.stack(maps), selections


@pytest.mark.parametrize("count", [3, 7])
def test_matches_a_plain_float64_reference(count):
    model, images = case()
    targets = TARGETS[:2]
    reference, selections = reference_fast_scorecam(model, images, targets, count)
    explainer = get_explainer(f"scorecam:max_channels={count}", model, "3", batch_size=4)
    ours = explainer.explain(images, targets, ("a", "b"))
    assert ours.dtype == torch.float64
    assert float(reference.amax(dim=(1, 2)).min()) > 0.9, "a flat map proves nothing"
    torch.testing.assert_close(ours, reference, atol=1e-10, rtol=0)
    # the public selection is the reference's, and differs between the two images
    assert top_variance_channels(layer_activations(model, images), count).tolist() == selections
    assert selections[0] != selections[1]
    # and the option changes the map (not plain Score-CAM in disguise)
    plain = get_explainer("scorecam", model, "3").explain(images, targets, ("a", "b"))
    assert float((plain - ours).abs().max()) > 1e-3


@pytest.mark.parametrize("count", [CHANNELS, CHANNELS + 5])
def test_max_channels_at_least_k_is_plain_scorecam(count):
    model, images = case()
    targets = TARGETS[:2]
    plain = get_explainer("scorecam", model, "3")(images, targets, ("a", "b"))
    capped = get_explainer(f"scorecam:max_channels={count}", model, "3")(
        images, targets, ("a", "b")
    )
    assert torch.equal(capped, plain)
    reference, _ = reference_fast_scorecam(model, images, targets, count)
    torch.testing.assert_close(capped.double(), reference, atol=1e-6, rtol=0)


@pytest.mark.parametrize("count", [3, 7])
def test_matches_pytorch_grad_cam_with_a_channel_gathering_reshape_transform(count):
    library = pytest.importorskip("pytorch_grad_cam")
    targets_module = pytest.importorskip("pytorch_grad_cam.utils.model_targets")
    model, images = case(dtype=torch.float32, size=(20, 28), batch=3)
    idx = top_variance_channels(layer_activations(model, images), count)
    assert idx.shape == (3, count)
    ours = get_explainer(f"scorecam:max_channels={count}", model, "3", batch_size=5)(
        images, TARGETS, IDS
    ).numpy()
    with library.ScoreCAM(
        model=model,
        target_layers=[model[3]],
        reshape_transform=lambda a: a.gather(1, idx[:, :, None, None].expand(-1, -1, *a.shape[2:])),
    ) as cam:
        targets = [targets_module.ClassifierOutputTarget(int(t)) for t in TARGETS]
        reference = cam(input_tensor=images, targets=targets)
    assert reference.shape == ours.shape == (3, 20, 28)
    assert np.ptp(reference, axis=(1, 2)).min() > 0.9, "a flat map proves nothing"
    assert np.abs(ours - reference).max() <= 1e-5


@pytest.mark.parametrize(("spec", "count"), [("scorecam:max_channels=4", 4), ("scorecam", 12)])
def test_forwards_one_clean_and_n_masked_images_per_image(spec, count):
    model, images = case(batch=3)
    rows = []
    handle = model.register_forward_pre_hook(lambda module, args: rows.append(args[0].shape[0]))
    try:
        get_explainer(spec, model, "3", batch_size=5)(images, TARGETS, IDS)
    finally:
        handle.remove()
    assert rows[0] == 3, "one clean forward of the batch"
    assert sum(rows[1:]) == 3 * count
    assert max(rows[1:]) <= 5


def test_batch_and_chunk_invariance():
    model, images = case(batch=3, size=(17, 13), stride=3)
    reference = get_explainer("scorecam:max_channels=5", model, "3", batch_size=64)(
        images, TARGETS, IDS
    )
    for batch_size in (1, 4):
        maps = get_explainer("scorecam:max_channels=5", model, "3", batch_size=batch_size)(
            images, TARGETS, IDS
        )
        torch.testing.assert_close(maps, reference, atol=1e-7, rtol=0)
    for b in range(3):
        single = get_explainer("scorecam:max_channels=5", model, "3")(
            images[b : b + 1], TARGETS[b : b + 1], IDS[b : b + 1]
        )
        torch.testing.assert_close(single[0], reference[b], atol=1e-7, rtol=0)


def test_label_validation_and_get_explainer():
    assert parse_spec("scorecam:max_channels=4").label == "scorecam:max_channels=4"
    assert parse_spec("scorecam:max_channels=+04").label == "scorecam:max_channels=4"
    assert parse_spec("scorecam:max_channels=-1").label == "scorecam", "-1 (all) is the default"
    assert parse_spec("scorecam").options == ScoreCAMOptions()
    for text in ("0", "-2"):
        with pytest.raises(ValueError, match=r"max_channels must be an int >= 1"):
            parse_spec(f"scorecam:max_channels={text}")
    with pytest.raises(ValueError, match=r"scorecam option 'max_channels' expects an integer"):
        parse_spec("scorecam:max_channels=2.5")
    for value in (0, None, 2.0, True):
        with pytest.raises(ValueError, match="max_channels"):
            ScoreCAMOptions(max_channels=value)
    explainer = get_explainer("scorecam:max_channels=4", tiny_cnn(seed=0), "3")
    assert isinstance(explainer, ScoreCAM)
    assert explainer.label == "scorecam:max_channels=4"
    assert explainer.options.max_channels == 4


def test_top_variance_channels_breaks_ties_by_lower_index():
    ramp = torch.tensor([[0.0, 2.0], [0.0, 2.0]])  # population variance 1 (sample: 4/3)
    activations = torch.stack(
        [
            torch.stack(
                [
                    torch.full((2, 2), 5.0),  # 0: variance 0
                    ramp,  # 1: 1
                    2 * ramp,  # 2: 4
                    2 * ramp + 3,  # 3: 4 (tie with 2)
                    -ramp,  # 4: 1 (tie with 1)
                    torch.zeros(2, 2),  # 5: 0 (tie with 0)
                ]
            ),
            torch.stack(
                [
                    torch.zeros(2, 2),  # 0: 0
                    torch.tensor([[0.0, 0.0], [0.0, 4.0]]),  # 1: 3
                    -ramp,  # 2: 1
                    ramp,  # 3: 1 (tie with 2)
                    3 * ramp,  # 4: 9
                    torch.zeros(2, 2),  # 5: 0
                ]
            ),
        ]
    )
    assert top_variance_channels(activations, 6).tolist() == [
        [2, 3, 1, 4, 0, 5],
        [4, 1, 2, 3, 0, 5],
    ]
    top = top_variance_channels(activations, 3)
    assert top.dtype == torch.long
    assert top.tolist() == [[2, 3, 1], [4, 1, 2]]
    assert top_variance_channels(activations, 1).tolist() == [[2], [4]]
    assert top_variance_channels(activations, 9).tolist() == [
        [2, 3, 1, 4, 0, 5],
        [4, 1, 2, 3, 0, 5],
    ]
    # the reshape_transform of the benchmark keeps those channels, in that order
    gathered = activations.gather(1, top[:, :, None, None].expand(-1, -1, 2, 2))
    assert torch.equal(gathered[0], activations[0, [2, 3, 1]])
    assert torch.equal(gathered[1], activations[1, [4, 1, 2]])
    with pytest.raises(ValueError, match="count must be an int >= 1"):
        top_variance_channels(activations, 0)
    with pytest.raises(ValueError, match=r"activations must be \[B, K, h, w\]"):
        top_variance_channels(activations[0, 0], 1)
