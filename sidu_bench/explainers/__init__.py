"""Saliency explainers behind one interface and a registry.

``get_explainer("rise:masks=1000", model, layer, seed=0)`` returns an explainer called as
``explainer(images [B, C, S, S], targets [B], item_ids) -> maps [B, S, S]`` (float32), whose
``label`` is the canonical spec. Registered: ``sidu``, ``gradcam``, ``scorecam``, ``rise``,
``center``, ``random``, and Captum's methods as ``captum.<Method>`` (:mod:`.captum_adapter`; they
need the optional package captum when built). Score-CAM and RISE run on
:func:`sidu.masked_forward`, the engine under SIDU. A new method subclasses :class:`Explainer`,
:class:`ModelExplainer` or :class:`LayerExplainer` and implements ``explain``; a class activation
map subclasses :class:`CAMExplainer` and implements its channel ``weights`` only.
"""

from sidu_bench.explainers import (
    baselines,
    cam,
    captum_adapter,
    gradcam,
    rise,
    scorecam,
    sidu_explainer,
)
from sidu_bench.explainers.base import (
    Explainer,
    ExplainerSettings,
    LayerExplainer,
    ModelExplainer,
)
from sidu_bench.explainers.cam import CAMExplainer
from sidu_bench.explainers.options import NoOptions
from sidu_bench.explainers.registry import (
    ExplainerSpec,
    explained_layer,
    get_explainer,
    list_explainers,
    parse_spec,
    register_explainer,
)
from sidu_bench.explainers.seeding import item_generator, item_seed

__all__ = [
    "CAMExplainer",
    "Explainer",
    "ExplainerSettings",
    "ExplainerSpec",
    "LayerExplainer",
    "ModelExplainer",
    "NoOptions",
    "baselines",
    "cam",
    "captum_adapter",
    "explained_layer",
    "get_explainer",
    "gradcam",
    "item_generator",
    "item_seed",
    "list_explainers",
    "parse_spec",
    "register_explainer",
    "rise",
    "scorecam",
    "sidu_explainer",
]
