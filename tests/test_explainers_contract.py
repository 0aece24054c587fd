"""Every registered explainer: the interface contract, batch invariance, no trace on the model."""

import pytest
import torch
from sidu_models import assert_untouched, explain_checked, explained_case, snapshot

import sidu
from sidu_bench.explainers import get_explainer, list_explainers

SPECS = {
    "center": "center",
    "gradcam": "gradcam",
    "random": "random",
    "rise": "rise:masks=40",
    "scorecam": "scorecam",
    "sidu": "sidu",
}
IDS = ["a", "b", "c"]
TARGETS = torch.tensor([2, 0, 4])


def test_every_registered_explainer_is_covered():
    assert sorted(SPECS) == [n for n in list_explainers() if not n.startswith("captum.")]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_contract_and_batch_invariance(name):
    model, images = explained_case()
    explainer, maps = explain_checked(
        SPECS[name], model, images, TARGETS, IDS, seed=1, batch_size=16
    )
    assert float(maps.amax(dim=(1, 2)).min()) > 0
    for b in range(3):
        single = explainer(images[b : b + 1], TARGETS[b : b + 1], IDS[b : b + 1])
        torch.testing.assert_close(single[0], maps[b], atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["gradcam", "rise", "scorecam", "sidu"])
def test_model_left_as_it_was(name):
    model, images = explained_case(torch.float32)
    model.train()
    model[2].eval()  # deliberately mixed modes
    before = snapshot(model)
    explainer = get_explainer(SPECS[name], model, "3", batch_size=16)
    maps = explainer(images.float(), TARGETS, IDS)
    assert_untouched(model, before)
    with torch.no_grad():
        torch.testing.assert_close(explainer(images.float(), TARGETS, IDS), maps)
    with torch.inference_mode():
        torch.testing.assert_close(explainer(images.float(), TARGETS, IDS), maps)
    assert_untouched(model, before)
    with pytest.raises(ValueError, match=r"outside \[0, 5\)"):
        explainer(images.float(), torch.tensor([0, 1, 7]), IDS)
    assert_untouched(model, before)


def test_explained_in_eval_mode():
    model, images = explained_case()
    reference = get_explainer("gradcam", model, "3")(images, TARGETS, IDS)
    model.append(torch.nn.Dropout(0.9))  # would randomise logits in train mode
    model.train()
    torch.testing.assert_close(
        get_explainer("gradcam", model, "3")(images, TARGETS, IDS), reference
    )
    assert model.training


def test_sidu_entry_is_sidu():
    model, images = explained_case()
    ours = get_explainer("sidu:threshold=0.05,kernel_width=0.3", model, "3")(images, TARGETS, IDS)
    direct = sidu.SIDU(model, "3", threshold=0.05, kernel_width=0.3)(images, TARGETS)
    torch.testing.assert_close(ours, direct.float(), atol=0, rtol=0)
    default = get_explainer("sidu", model, "3")(images, TARGETS, IDS)
    assert (default - ours).abs().max() > 1e-3, "options reach SIDU"


@pytest.mark.parametrize("name", ["gradcam", "rise", "scorecam", "sidu"])
def test_images_are_scanned_for_nan_once_per_call(name, monkeypatch):
    model, images = explained_case()
    scans = []
    isfinite = torch.isfinite

    def counting(tensor):
        scans.append(tensor is images)
        return isfinite(tensor)

    monkeypatch.setattr(torch, "isfinite", counting)
    get_explainer(SPECS[name], model, "3", batch_size=16)(images, TARGETS, IDS)
    assert scans.count(True) == 1
