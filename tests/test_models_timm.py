"""timm models by name (``timm:<name>``): weights, preprocessing, class space, default layers.

Offline: every model is built with random weights, saved where the test says, and loaded from
there (a checkpoint or a fake Hugging Face cache); nothing is downloaded.
"""

import json
import math
import re
import sys

import pandas as pd
import pytest
import torch
from fixtures_data import standard_folder

from sidu_bench.cli import main
from sidu_bench.metrics.randomisation import randomisation_steps
from sidu_bench.models import get_model
from sidu_bench.models.checkpoint import save_checkpoint
from sidu_bench.models.timm_models import (
    MissingWeightsError,
    cached_weights,
    class_space,
    default_blocks,
    default_layer,
    default_reshape,
    default_sidu_layer,
)

timm = pytest.importorskip("timm")
save_file = pytest.importorskip("safetensors.torch").save_file  # a dependency of timm

pytestmark = pytest.mark.usefixtures("one_thread")

VIT = "vit_tiny_patch16_224"
VIT_REPO = "models--timm--vit_tiny_patch16_224.augreg_in21k_ft_in1k"


def seeded(name, seed=0, **options):
    """A timm model with random weights drawn after ``torch.manual_seed(seed)``, in eval mode."""
    torch.manual_seed(seed)
    return timm.create_model(name, pretrained=False, **options).eval()


@pytest.fixture(autouse=True)
def empty_hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache: the real one is never consulted."""
    cache = tmp_path / "hf-home" / "hub"
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(cache.parent))
    return cache


@pytest.fixture(scope="module")
def vit_checkpoint(tmp_path_factory):
    """``(ViT-Tiny with seeded random weights, its state dict saved as a torch file)``."""
    model = seeded(VIT)
    path = tmp_path_factory.mktemp("checkpoints") / "vit_tiny.pt"
    torch.save(model.state_dict(), path)
    return model, path


def logits(module, size, seed=1):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return module(torch.rand(2, 3, size, size, generator=generator))


def layer_output(module, layer, size):
    """The output of ``layer`` in a forward of one random ``size`` x ``size`` image."""
    captured = []
    handle = module.get_submodule(layer).register_forward_hook(
        lambda _module, _inputs, output: captured.append(output)
    )
    logits(module, size)
    handle.remove()
    return captured[0][:1]


# --- end to end ------------------------------------------------------------------------------


def test_evaluate_runs_a_timm_vit_from_a_checkpoint(tmp_path, vit_checkpoint):
    _, checkpoint = vit_checkpoint
    tree = standard_folder(tmp_path)
    out = tmp_path / "runs"
    arguments = [
        "evaluate",
        *("--dataset", "folder", "--root", str(tree)),
        *("--model", f"timm:{VIT}", "--checkpoint", str(checkpoint)),
        *("--explainers", "gradcam,center", "--metrics", "insertion_deletion"),
        *("--steps", "4", "--limit", "2", "--device", "cpu", "--backend", "torch"),
        *("--out", str(out)),
    ]
    assert main(arguments) == 0
    (run,) = out.iterdir()
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    assert config["model"] == f"timm:{VIT}@{checkpoint}"
    assert config["layer"] == "blocks.11.norm1"
    assert config["sidu_layer"] == "blocks.10.mlp.act"  # docs/protocol.md item 21
    assert config["input_size"] == 224
    assert config["extra"] == {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    records = pd.read_csv(run / "records.csv")
    assert len(records) == 4
    assert sorted(records["explainer"].unique()) == ["center", "gradcam"]
    assert records["id"].nunique() == 2
    for column in ("insertion_auc", "deletion_auc"):
        assert records[column].between(0, 1).all()


# --- weights -------------------------------------------------------------------------------------


def test_a_checkpoint_gives_the_logits_of_the_model_it_was_saved_from(vit_checkpoint):
    model, path = vit_checkpoint
    spec = get_model(f"timm:{VIT}", checkpoint=path)
    assert spec.name == f"timm:{VIT}@{path}"
    assert torch.equal(logits(spec.module, 224), logits(model, 224))
    assert not torch.equal(logits(seeded(VIT, seed=1), 224), logits(model, 224))


def test_checkpoint_formats_and_their_class_names(tmp_path):
    # A 3-class model, wrapped as {"model": ...} with DDP prefixes, as safetensors, and with the
    # project's metadata; the classifier sets the number of classes.
    model = seeded("test_vit", num_classes=3)
    state = model.state_dict()
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, wrapped)
    safe = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, safe)
    named = tmp_path / "named.pt"
    save_checkpoint(named, state, class_names=["ant", "bee", "cow"])
    expected = logits(model, 160)
    for path in (wrapped, safe, named):
        spec = get_model("timm:test_vit", checkpoint=path)
        assert torch.equal(logits(spec.module, 160), expected)
        assert spec.class_space is None
    assert get_model("timm:test_vit", checkpoint=safe).class_names == ("0", "1", "2")
    assert get_model("timm:test_vit", checkpoint=named).class_names == ("ant", "bee", "cow")


def test_a_checkpoint_of_another_architecture_is_refused(tmp_path, vit_checkpoint):
    _, path = vit_checkpoint
    with pytest.raises(ValueError, match=rf"checkpoint {path} does not fit the architecture"):
        get_model("timm:test_vit", checkpoint=path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        get_model("timm:test_vit", checkpoint=tmp_path / "absent.pt")


def test_missing_weights_name_the_cache_file_and_the_checkpoint_option(empty_hub_cache, capsys):
    target = empty_hub_cache / VIT_REPO / "snapshots" / "main" / "model.safetensors"
    url = (
        "https://huggingface.co/timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k/resolve/main/"
        "model.safetensors"
    )
    with pytest.raises(MissingWeightsError) as error:
        get_model(f"timm:{VIT}")
    message = str(error.value)
    assert isinstance(error.value, RuntimeError)
    assert f"timm's cache folder {empty_hub_cache}." in message
    assert f"Download {url} on a machine with network and copy it to {target} " in message
    assert "pass checkpoint=FILE" in message
    assert main(["evaluate", "--model", f"timm:{VIT}", "--out", str(empty_hub_cache)]) == 2
    assert "pass --checkpoint=FILE" in capsys.readouterr().err
    with pytest.raises(MissingWeightsError, match="timm has no pretrained weights for"):
        get_model("timm:vit_base_patch16_reg4_gap_256")
    with pytest.raises(MissingWeightsError, match=r"only at https://github\.com/.*\.pth"):
        get_model("timm:gcvit_xxtiny")


def test_weights_in_the_hugging_face_cache_are_found_and_loaded(tmp_path, monkeypatch):
    # The layout huggingface_hub writes: refs/main names the snapshot holding the file.
    cache = tmp_path / "hub-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    repo = cache / "models--timm--convnext_atto.d2_in1k"
    model = seeded("convnext_atto")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    save_file(model.state_dict(), repo / "snapshots" / "abc123" / "model.safetensors")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123", encoding="utf-8")
    spec = get_model("timm:convnext_atto")
    assert spec.name == "timm:convnext_atto"
    assert torch.equal(logits(spec.module, 64), logits(model, 64))
    assert cached_weights("timm/convnext_atto.d2_in1k") == (
        repo / "snapshots" / "abc123" / "model.safetensors"
    )
    # A file copied by hand as the error says (snapshots/main, no refs), torch format.
    other = cache / "models--timm--test_vit.r160_in1k" / "snapshots" / "main"
    other.mkdir(parents=True)
    small = seeded("test_vit")
    torch.save(small.state_dict(), other / "pytorch_model.bin")
    spec = get_model("timm:test_vit.r160_in1k")
    assert torch.equal(logits(spec.module, 160), logits(small, 160))


# --- names, preprocessing, class space -----------------------------------------------------------


def test_an_unknown_timm_name_suggests_close_ones():
    close = (
        r"unknown timm model 'timm:vit_tiny_patch16_22'; did you mean 'timm:vit_tiny_patch16_224'"
    )
    with pytest.raises(ValueError, match=close):
        get_model("timm:vit_tiny_patch16_22")
    with pytest.raises(ValueError, match=r"did you mean 'timm:resnet50\.a1_in1k'"):
        get_model("timm:resnet50.a1_in1kk")


def test_preprocessing_is_timms_data_config_squashed(tmp_path):
    model = seeded("convnext_tiny.fb_in1k")
    path = tmp_path / "convnext_tiny.safetensors"
    save_file(model.state_dict(), path)
    spec = get_model("timm:convnext_tiny.fb_in1k", checkpoint=path)
    data = timm.data.resolve_model_data_config(model)
    assert data["crop_pct"] == 0.875  # ignored: images are squashed, never cropped
    assert (spec.input_size, spec.mean, spec.std, spec.interpolation) == (
        224,
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
        "bicubic",
    )
    assert (spec.input_size, spec.mean, spec.std, spec.interpolation) == (
        data["input_size"][1],
        data["mean"],
        data["std"],
        data["interpolation"],
    )
    assert spec.class_space == "imagenet-1k"
    assert spec.class_names[:2] == ("tench", "goldfish")
    assert spec.num_classes == 1000
    assert spec.domain == "natural-images"
    # The tag sets the preprocessing and, with the number of classes, the class space.
    larger = get_model("timm:convnext_tiny.in12k_ft_in1k_384", checkpoint=path)
    assert (larger.input_size, larger.class_space) == (384, "imagenet-1k")
    in12k = get_model("timm:convnext_tiny.in12k", checkpoint=path)
    assert (in12k.num_classes, in12k.class_space, in12k.class_names[:2]) == (1000, None, ("0", "1"))


def test_non_square_inputs_and_headless_models_are_refused(tmp_path, monkeypatch):
    headless = tmp_path / "headless.pt"
    torch.save(seeded("test_vit", num_classes=0).state_dict(), headless)
    with pytest.raises(ValueError, match=r"timm:eva02_tiny_patch14_224@.* has no classifier"):
        get_model("timm:eva02_tiny_patch14_224", checkpoint=headless)
    path = tmp_path / "test_vit.pt"
    torch.save(seeded("test_vit").state_dict(), path)
    resolve = timm.data.resolve_model_data_config
    monkeypatch.setattr(
        timm.data,
        "resolve_model_data_config",
        lambda model: {**resolve(model), "input_size": (3, 160, 128)},
    )
    with pytest.raises(ValueError, match="non-square input size 160 x 128"):
        get_model("timm:test_vit", checkpoint=path)


def test_without_timm_the_error_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(ImportError, match=re.escape('pip install -e ".[timm]"')):
        get_model("timm:resnet18")


def test_list_shows_the_timm_family(capsys):
    assert main(["list"]) == 0
    assert "+ timm:<name> (any timm model; weights from timm's cache or --checkpoint)" in (
        capsys.readouterr().out
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("convnext_tiny.fb_in1k", "imagenet-1k"),
        ("resnet50.a1_in1k", "imagenet-1k"),
        ("vit_small_patch16_224.augreg_in21k_ft_in1k", "imagenet-1k"),
        ("vit_tiny_patch16_224", "imagenet-1k"),  # timm's default tag: augreg_in21k_ft_in1k
        ("convnext_base.fb_in22k_ft_in1k_384", "imagenet-1k"),
        ("vit_small_patch16_224.augreg_in21k", None),  # 21843 classes
        ("convnext_tiny.in12k", None),  # 11821 classes
        ("vit_small_patch14_reg4_dinov2", None),  # no head
        ("resmlp_12_224.fb_dino", None),  # 1000 classes, tag not ImageNet-1k
    ],
)
def test_class_space_rule(name, expected):
    config = timm.models.get_pretrained_cfg(name)
    assert class_space(config.tag, config.num_classes) == expected
    assert class_space("fb_in1k", 10) is None


# --- default layers, reshapes and blocks ---------------------------------------------------------

FAMILIES = [
    # (model, options, input size, default layer, reshape, [C, h, w] read through it, blocks)
    (VIT, {}, 224, "blocks.11.norm1", "TokenGrid(prefix=1, size=None)", (192, 14, 14), 15),
    ("convnext_atto", {}, 224, "stages.3", "None", (320, 7, 7), 6),
    ("resnet18", {}, 224, "layer4", "None", (512, 7, 7), 6),
    ("swin_tiny_patch4_window7_224", {}, 224, "layers.3", "ChannelsLast()", (768, 7, 7), 7),
    ("efficientnet_b0", {}, 224, "bn2", "None", (1280, 7, 7), 11),
    ("mobilenetv3_small_100", {}, 224, "blocks", "None", (576, 7, 7), 9),
    (
        "deit_tiny_distilled_patch16_224",
        {},
        224,
        "blocks.11.norm1",
        "TokenGrid(prefix=2, size=None)",
        (192, 14, 14),
        16,
    ),
    (
        "vit_small_patch14_reg4_dinov2",
        {"img_size": 56, "num_classes": 5},
        56,
        "blocks.11.norm1",
        "TokenGrid(prefix=5, size=None)",
        (384, 4, 4),
        15,
    ),
]


@pytest.mark.parametrize(
    ("name", "options", "size", "layer", "reshape", "grid", "blocks"),
    FAMILIES,
    ids=[family[0] for family in FAMILIES],
)
def test_default_layer_reads_as_a_feature_map(name, options, size, layer, reshape, grid, blocks):
    model = seeded(name, **options)
    assert default_layer(model) == layer
    assert repr(default_reshape(model)) == reshape
    output = layer_output(model, layer, size)
    read = output if default_reshape(model) is None else default_reshape(model)(output)
    assert tuple(read.shape) == (1, *grid)
    assert math.isfinite(float(read.sum()))
    declared = default_blocks(model)
    assert len(declared) == blocks
    assert len(randomisation_steps(model, "block", declared)) == blocks


def test_sidu_has_its_own_layer_on_vision_transformers_only():
    vit = seeded(VIT)
    assert default_sidu_layer(vit) == "blocks.10.mlp.act"
    assert isinstance(vit.get_submodule("blocks.10.mlp.act"), torch.nn.GELU)
    assert default_sidu_layer(seeded("resnet18")) is None


def test_declared_blocks_follow_the_families():
    vit = default_blocks(seeded(VIT))
    assert vit == ("patch_embed", *(f"blocks.{i}" for i in range(12)), "norm", "head")
    resnet = default_blocks(seeded("resnet18"))
    assert resnet == ("conv1+bn1", "layer1", "layer2", "layer3", "layer4", "fc")
    convnext = default_blocks(seeded("convnext_atto"))
    assert convnext == ("stem", "stages.0", "stages.1", "stages.2", "stages.3", "head")


def test_another_family_needs_a_layer(tmp_path):
    model = seeded("test_byobnet")
    assert default_blocks(model) == ()
    with pytest.raises(ValueError, match="ByobNet has no default explained layer: pass layer"):
        default_layer(model)
    path = tmp_path / "byobnet.pt"
    torch.save(model.state_dict(), path)
    spec = get_model("timm:test_byobnet", checkpoint=path, layer="final_conv")
    assert spec.default_layer == "final_conv"
    assert spec.reshape is None
    assert layer_output(spec.module, "final_conv", 160).dim() == 4
    with torch.device("meta"):  # structure only: parallel blocks have no norm1
        parallel = timm.create_model("vit_pwee_patch16_reg1_gap_256", pretrained=False)
    with pytest.raises(ValueError, match="VisionTransformer has no default explained layer"):
        default_layer(parallel)
    assert repr(default_reshape(parallel)) == "TokenGrid(prefix=1, size=None)"
