"""Token-sequence and channels-last layers: one reshape, read by every explainer (sidu.tokens)."""

import numpy as np
import pytest
import torch
from reference_sidu import reference_sidu
from sidu_models import tiny_swin, tiny_vit

import sidu
from sidu.capture import ActivationCapture
from sidu.tokens import ChannelsLast, TokenGrid, grid_view
from sidu_bench.explainers import get_explainer

IDS = ["a", "b"]
TARGETS = torch.tensor([1, 3])


VIT_LAYER = "encoder.layers.encoder_layer_1.ln_1"


def pgc_tokens(tensor, height=4, width=4):
    """pytorch-grad-cam's ViT ``reshape_transform``, as its tutorial writes it."""
    result = tensor[:, 1:, :].reshape(tensor.size(0), height, width, tensor.size(2))
    return result.transpose(2, 3).transpose(1, 2)


def test_token_grid_drops_the_prefix_and_folds_row_major():
    tokens = torch.arange(2 * 7 * 3, dtype=torch.float64).reshape(2, 7, 3)
    grid = TokenGrid(prefix=3)(tokens)
    assert grid.shape == (2, 3, 2, 2)
    for b in range(2):
        for i in range(2):
            for j in range(2):
                assert grid[b, :, i, j].tolist() == tokens[b, 3 + i * 2 + j].tolist()
    assert TokenGrid(prefix=0, size=(1, 7))(tokens).shape == (2, 3, 1, 7)
    assert ChannelsLast()(torch.zeros(2, 3, 5, 4)).shape == (2, 4, 3, 5)


@pytest.mark.parametrize(
    ("reshape", "output", "message"),
    [
        (TokenGrid(prefix=1), torch.zeros(2, 196, 8), "a square number of patch tokens"),
        (TokenGrid(prefix=2), torch.zeros(2, 197, 8), r"got shape \(2, 197, 8\) \(195 patch"),
        (TokenGrid(prefix=0, size=(3, 3)), torch.zeros(1, 10, 4), "needs 3 x 3 patch tokens"),
        (TokenGrid(prefix=1), torch.zeros(2, 8), r"needs a token sequence \[B, N, C\]"),
        (ChannelsLast(), torch.zeros(2, 5, 8), r"channels-last grid \[B, h, w, C\], got shape"),
        (lambda t: t * 2, torch.zeros(1, 2, 2, 2), "only select and rearrange"),
        (lambda t: t.flip(0), torch.zeros(2, 1, 2, 2), "no mixing of items"),
        (lambda t: t[:, :, [0, 0]], torch.zeros(1, 1, 2, 2), "each at most once"),
        (lambda t: t[:, 0], torch.zeros(1, 2, 2, 2), r"into \[B, C, h, w\] with the same B"),
    ],
)
def test_outputs_that_are_no_grid_are_refused_naming_layer_and_shape(reshape, output, message):
    with pytest.raises(ValueError, match=message) as error:
        grid_view(reshape, output, "blocks.11")
    assert "layer 'blocks.11'" in str(error.value)


def test_bad_fields_and_non_callables_are_refused():
    with pytest.raises(ValueError, match="prefix must be an int >= 0"):
        TokenGrid(prefix=-1)
    with pytest.raises(ValueError, match=r"size must be \(h, w\)"):
        TokenGrid(size=(0, 4))
    with pytest.raises(TypeError, match=r"reshape must be None, sidu\.TokenGrid"):
        sidu.SIDU(tiny_vit(), VIT_LAYER, reshape="tokens")


def test_grid_view_rebuilds_the_output_and_carries_gradients_to_the_grid():
    generator = torch.Generator().manual_seed(0)
    output = torch.randn(2, 10, 3, generator=generator, requires_grad=True)
    weights = torch.randn(2, 10, 3, generator=generator)
    grid, rebuilt = grid_view(TokenGrid(prefix=1), output, "x")
    assert torch.equal(rebuilt, output)
    (from_grid,) = torch.autograd.grad((rebuilt * weights).sum(), grid)
    # d/d grid of sum(w * output) is w at the patch tokens, read as the grid
    assert torch.equal(from_grid, TokenGrid(prefix=1)(weights))
    # a pytorch-grad-cam style callable finds the same elements
    same, _ = grid_view(lambda t: pgc_tokens(t, 3, 3), output, "x")
    assert torch.equal(same, grid)


def test_class_and_register_tokens_never_enter_the_grid():
    tokens = torch.zeros(2, 5 + 16, 4)
    tokens[:, :5] = 1e6  # class + 4 register tokens
    grid, _ = grid_view(TokenGrid(prefix=5), tokens, "x")
    assert grid.shape == (2, 4, 4, 4)
    assert float(grid.abs().max()) == 0.0


def test_a_token_layer_without_reshape_names_the_fix():
    with pytest.raises(ValueError, match=r"got \(2, 17, 16\); a token sequence .*sidu\.TokenGrid"):
        sidu.sidu(tiny_vit(), VIT_LAYER, torch.randn(2, 3, 32, 32))


@pytest.mark.parametrize("threshold", [0.1, 0.5])
def test_sidu_on_a_vit_equals_the_float64_reference_on_the_patch_tokens(threshold):
    model = tiny_vit(torch.float64)
    images = torch.randn(
        2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(3)
    )
    layer = model.get_submodule(VIT_LAYER)
    result = sidu.SIDU(model, VIT_LAYER, threshold=threshold, reshape=TokenGrid()).explain(images)
    assert result.saliency.shape == (2, 32, 32)
    for b in range(2):
        reference = reference_sidu(
            model, layer, images[b].numpy(), threshold=threshold, tokens_prefix=1
        )
        assert reference["saliency"].max() > 0, "an all-zero map proves nothing"
        error = np.abs(result.saliency[b].numpy() - reference["saliency"]).max()
        assert error <= 1e-5 * np.abs(reference["saliency"]).max()
        np.testing.assert_allclose(result.uniqueness[b].numpy(), reference["uniqueness"], atol=1e-9)


def test_sidu_float32_on_a_vit_stays_within_1e_5_and_the_functional_form_agrees():
    model64 = tiny_vit(torch.float64)
    model = tiny_vit(torch.float32)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    maps = sidu.sidu(model, VIT_LAYER, images, reshape=TokenGrid(prefix=1))
    layer = model64.get_submodule(VIT_LAYER)
    for b in range(2):
        reference = reference_sidu(model64, layer, images[b].double().numpy(), tokens_prefix=1)
        assert np.abs(maps[b].numpy() - reference["saliency"]).max() <= 1e-5


def test_an_index_made_under_inference_mode_serves_a_later_gradient():
    model = tiny_vit()
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    reshape = TokenGrid(prefix=1)
    with torch.inference_mode():
        sidu.sidu(model, VIT_LAYER, images, reshape=reshape)  # builds and caches the index
    maps = get_explainer("gradcam", model, VIT_LAYER, reshape=reshape)(images, TARGETS, IDS)
    assert maps.shape == (2, 32, 32)
    assert float(maps.amax()) > 0.9


def test_the_forward_is_unchanged_by_the_capture():
    model = tiny_vit()
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        clean = model(images)
    capture = ActivationCapture(model.get_submodule(VIT_LAYER), VIT_LAYER, TokenGrid())
    capture.attach()
    capture.arm()
    with torch.no_grad():
        captured = model(images)
    grid = capture.take()
    capture.detach()
    assert torch.equal(captured, clean)
    assert grid.shape == (2, 16, 4, 4)


@pytest.mark.parametrize(
    ("name", "library_class"), [("gradcam", "GradCAM"), ("scorecam", "ScoreCAM")]
)
@pytest.mark.parametrize("family", ["vit", "swin"])
# float64 models: the methods agree to pytorch-grad-cam's float32 output (measured <= 1.2e-7);
# float32: Score-CAM's masked forwards in other batch compositions round apart (measured 1.9e-6)
@pytest.mark.parametrize(("dtype", "bound"), [(torch.float64, 1e-6), (torch.float32, 1e-5)])
def test_cams_on_transformers_equal_pytorch_grad_cam_with_its_reshape_transform(
    name, library_class, family, dtype, bound
):
    library = pytest.importorskip("pytorch_grad_cam")
    targets_module = pytest.importorskip("pytorch_grad_cam.utils.model_targets")
    if family == "vit":
        model, layer, ours, theirs = tiny_vit(dtype), VIT_LAYER, TokenGrid(prefix=1), pgc_tokens
    else:
        model, layer = tiny_swin().to(dtype), "features.3"  # the last stage: [B, h, w, C]
        ours, theirs = ChannelsLast(), lambda t: t.permute(0, 3, 1, 2)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(6)).to(dtype)
    maps = get_explainer(name, model, layer, reshape=ours)(images, TARGETS, IDS).numpy()
    module = model.get_submodule(layer)
    with getattr(library, library_class)(
        model=model, target_layers=[module], reshape_transform=theirs
    ) as cam:
        wanted = [targets_module.ClassifierOutputTarget(int(t)) for t in TARGETS]
        reference = cam(input_tensor=images, targets=wanted)
    assert np.ptp(reference, axis=(1, 2)).min() > 0.9, "a flat map proves nothing"
    assert np.abs(maps - reference).max() <= bound
