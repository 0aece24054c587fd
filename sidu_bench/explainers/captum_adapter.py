"""Captum's attribution methods as registered explainers (the optional extra ``captum``).

One explainer per method, named ``captum.<Captum class>`` so that the spec grammar
``name:key=value[,key=value]`` holds: ``captum.IntegratedGradients:n_steps=50``,
``captum.Saliency``, ``captum.InputXGradient``, ``captum.GuidedBackprop``, ``captum.DeepLift``,
``captum.Occlusion:window=15``, ``captum.LayerGradCam`` and ``captum.SmoothGrad`` (Captum's
``NoiseTunnel`` over ``Saliency``). The explainers are always registered; building one without
Captum installed raises a ``ValueError`` that names it and the install command
(``pip install 'sidu-bench[captum]'``). Captum is imported when an explainer is built, never
when this module is.

Conventions (the same for every method):

* **what is explained**: the logit of the target class (Captum's ``target``), of the model in
  eval mode; under ``dtype=bfloat16/float16`` the forward passes run under autocast and the
  logits are cast to float32 (float64 is not needed: the maps are ranked, not summed).
* **one map from channel attributions** ``a [C, H, W]`` (``reduce``): ``abs_sum``
  ``sum_c |a_c|`` (the default, the usual choice for localisation), ``sum`` ``sum_c a_c``,
  ``max_abs`` ``max_c |a_c|`` (:func:`reduce_channels`).
* **baselines** (``baseline``, for Integrated Gradients, DeepLift and Occlusion): ``zeros`` in
  the model's normalised space (the deletion substrate; the default) or ``blur`` (the insertion
  substrate, :func:`sidu_bench.metrics.substrates.rise_blur` of the image).
* **memory**: items are attributed one at a time; Captum's internal batches hold at most
  ``batch_size`` (the explainer setting; default :data:`DEFAULT_INTERNAL_BATCH`) perturbed
  images: Integrated Gradients' ``internal_batch_size``, Occlusion's ``perturbations_per_eval``.
  SmoothGrad draws its noise in fixed chunks of :data:`SMOOTHGRAD_CHUNK` samples, so that its
  maps never depend on ``batch_size``.
* **seeding**: a stochastic method (SmoothGrad) runs each item on torch's global generator of
  the item's device seeded with ``item_seed(seed, item id, name)``
  (:func:`.seeding.item_seed`); the caller's generator state is restored afterwards, so maps
  depend on the seed and the item only, never on the batch or the order.
* **resolution**: pixel methods give maps at input resolution; ``captum.LayerGradCam`` (ReLU on,
  layer = the explained layer the runner passes) gives maps at the layer's resolution, brought
  to the input's with the suite's CAM rule (:func:`.cam.cam_to_map`: min-max, bilinear resize,
  min-max), so it equals the built-in ``gradcam``.
"""

from __future__ import annotations

import contextlib
import importlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from sidu.precision import REDUCED_DTYPES, autocast
from sidu_bench.explainers.base import LayerExplainer, ModelExplainer, recording_gradients
from sidu_bench.explainers.cam import cam_to_map
from sidu_bench.explainers.options import NoOptions
from sidu_bench.explainers.registry import register_explainer
from sidu_bench.explainers.seeding import item_seed
from sidu_bench.metrics.substrates import rise_blur

__all__ = [
    "DEFAULT_INTERNAL_BATCH",
    "SMOOTHGRAD_CHUNK",
    "CaptumDeepLift",
    "CaptumGuidedBackprop",
    "CaptumInputXGradient",
    "CaptumIntegratedGradients",
    "CaptumLayerGradCam",
    "CaptumOcclusion",
    "CaptumSaliency",
    "CaptumSmoothGrad",
    "DeepLiftOptions",
    "IntegratedGradientsOptions",
    "OcclusionOptions",
    "ReduceOptions",
    "SmoothGradOptions",
    "reduce_channels",
]

Reduce = Literal["abs_sum", "sum", "max_abs"]
Baseline = Literal["zeros", "blur"]
IGMethod = Literal[
    "gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"
]

DEFAULT_INTERNAL_BATCH = 32
"""Perturbed images per forward/backward pass inside Captum when ``batch_size`` is not set."""

SMOOTHGRAD_CHUNK = 16
"""Noisy samples per pass of SmoothGrad (fixed: the noise draws depend on the chunking)."""

_CAPTUM_NOTICES = r"Setting (forward, )?backward hooks"
"""Captum's per-call notices that it hooks (and unhooks) activations; silenced."""


def reduce_channels(attributions: torch.Tensor, rule: str) -> torch.Tensor:
    """Reduce channel attributions ``[B, C, H, W]`` to maps ``[B, H, W]``.

    Args:
        attributions: per-channel attributions.
        rule: ``"abs_sum"`` (``sum_c |a_c|``), ``"sum"`` (``sum_c a_c``) or ``"max_abs"``
            (``max_c |a_c|``).

    Example:
        >>> a = torch.tensor([[[[1.0]], [[-3.0]]]])
        >>> [reduce_channels(a, r).item() for r in ("abs_sum", "sum", "max_abs")]
        [4.0, -2.0, 3.0]
    """
    if not isinstance(attributions, torch.Tensor) or attributions.dim() != 4:
        shape = tuple(attributions.shape) if isinstance(attributions, torch.Tensor) else None
        raise ValueError(f"attributions must be a [B, C, H, W] tensor, got {shape}")
    if rule == "abs_sum":
        return attributions.abs().sum(dim=1)
    if rule == "sum":
        return attributions.sum(dim=1)
    if rule == "max_abs":
        return attributions.abs().amax(dim=1)
    raise ValueError(f"reduce must be one of abs_sum, sum, max_abs, got {rule!r}")


@dataclass(frozen=True)
class ReduceOptions:
    """Options of a pixel method without parameters: ``reduce`` (channels to one map)."""

    reduce: Reduce = "abs_sum"


@dataclass(frozen=True)
class IntegratedGradientsOptions:
    """``n_steps`` and ``method`` of the path integral, ``baseline``, ``reduce``."""

    n_steps: int = 50
    method: IGMethod = "gausslegendre"
    baseline: Baseline = "zeros"
    reduce: Reduce = "abs_sum"

    def __post_init__(self) -> None:
        """Validate the options."""
        least = 1 if self.method == "gausslegendre" else 2
        if self.n_steps < least:
            raise ValueError(
                f"n_steps must be >= {least} for method {self.method}, got {self.n_steps}"
            )


@dataclass(frozen=True)
class DeepLiftOptions:
    """DeepLift's ``baseline`` and ``reduce``."""

    baseline: Baseline = "zeros"
    reduce: Reduce = "abs_sum"


@dataclass(frozen=True)
class OcclusionOptions:
    """Square ``window`` (px), ``stride`` (px; 0 = the window), ``baseline``, ``reduce``."""

    window: int = 15
    stride: int = 0
    baseline: Baseline = "zeros"
    reduce: Reduce = "abs_sum"

    def __post_init__(self) -> None:
        """Validate the options."""
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        if not 0 <= self.stride <= self.window:
            raise ValueError(
                f"stride must be in [0, window={self.window}] (0: the window), got {self.stride}"
            )


@dataclass(frozen=True)
class SmoothGradOptions:
    """``samples`` noisy copies, ``noise`` std as a share of the image's range, ``reduce``."""

    samples: int = 50
    noise: float = 0.15
    reduce: Reduce = "abs_sum"

    def __post_init__(self) -> None:
        """Validate the options."""
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        if not self.noise >= 0.0:
            raise ValueError(f"noise must be >= 0, got {self.noise}")


class _Logits(nn.Module):
    """The model's logits, under autocast for a reduced dtype (cast to float32 then)."""

    def __init__(self, model: nn.Module, dtype: torch.dtype | None) -> None:
        super().__init__()
        self.model = model
        self.dtype = dtype

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return logits ``[B, num_classes]``."""
        if self.dtype in REDUCED_DTYPES:
            with autocast(images.device, self.dtype):
                return self.model(images).float()
        return self.model(images)


def _baseline(image: torch.Tensor, kind: str) -> torch.Tensor:
    """The reference input: zeros (normalised space) or the RISE blur of ``image``."""
    return torch.zeros_like(image) if kind == "zeros" else rise_blur(image)


class _Captum:
    """What every Captum explainer shares: the import, the per-item loop, the seeding.

    Subclasses set ``stochastic`` when the method draws random numbers.
    """

    package: ClassVar[str] = "captum"
    """The distribution recorded as the package (:func:`sidu_bench.plugins.provenance`)."""
    stochastic: ClassVar[bool] = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        try:
            self._captum: ModuleType = importlib.import_module("captum.attr")
        except ImportError as error:
            raise ValueError(
                f"explainer {self.name!r} needs the optional package captum: pip install "
                f"'sidu-bench[captum]' (or pip install captum); importing it failed: {error}"
            ) from error

    def _chunk(self) -> int:
        """Perturbed images per pass inside Captum."""
        return self.settings.batch_size or DEFAULT_INTERNAL_BATCH

    def _each_item(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        item_ids: tuple[str, ...],
        attribute: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> list[torch.Tensor]:
        """Run ``attribute(forward, image [1, C, H, W], target [1])`` item by item."""
        self._check_targets(targets, self._logits(images))
        forward = _Logits(self.model, self.settings.dtype)
        results = []
        with recording_gradients(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_CAPTUM_NOTICES, category=UserWarning)
            for index, item_id in enumerate(item_ids):
                # clones outside inference mode: the inputs may be inference tensors
                image = images[index : index + 1].detach().clone().requires_grad_(True)
                target = targets[index : index + 1].clone()
                with self._item_stream(item_id, image.device):
                    results.append(attribute(forward, image, target).detach())
        return results

    @contextlib.contextmanager
    def _item_stream(self, item_id: str, device: torch.device) -> Iterator[None]:
        """Seed the device's global generator from ``(seed, item id)`` for a stochastic method."""
        if not self.stochastic:
            yield
            return
        seed = item_seed(self.settings.seed, item_id, self.name)
        cuda = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.random.default_generator.manual_seed(seed)
            if cuda:
                with torch.cuda.device(device):
                    torch.cuda.manual_seed(seed)
            yield


class _CaptumPixels(_Captum, ModelExplainer):
    """A Captum method with attributions at input resolution ``[B, C, H, W]``.

    Subclasses name the ``captum.attr`` class (``method``) and the arguments of its
    ``attribute`` besides the image and the target (:meth:`_arguments`), or override
    :meth:`_attribute`.
    """

    options_type: ClassVar[type] = ReduceOptions
    method: ClassVar[str] = ""

    def explain(
        self, images: torch.Tensor, targets: torch.Tensor, item_ids: tuple[str, ...]
    ) -> torch.Tensor:
        """Return ``reduce(attributions)`` ``[B, H, W]``."""
        attributions = self._each_item(images, targets, item_ids, self._attribute)
        rule = self.options.reduce
        return torch.cat([reduce_channels(a, rule) for a in attributions])

    def _attribute(
        self, forward: nn.Module, image: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        """Captum's attributions ``[1, C, H, W]`` of one image."""
        method = getattr(self._captum, self.method)(forward)
        return method.attribute(image, target=target, **self._arguments(image))

    def _arguments(self, image: torch.Tensor) -> dict[str, Any]:
        """Arguments of ``attribute`` besides the image and the target (none by default)."""
        return {}


@register_explainer("captum.IntegratedGradients")
class CaptumIntegratedGradients(_CaptumPixels):
    """Integrated Gradients (Sundararajan et al., ICML 2017) by Captum.

    ``attribute(image, baselines, target, n_steps, method, internal_batch_size=batch_size)``.
    """

    options_type = IntegratedGradientsOptions
    method = "IntegratedGradients"

    def _arguments(self, image: torch.Tensor) -> dict[str, Any]:
        options: IntegratedGradientsOptions = self.options
        return {
            "baselines": _baseline(image.detach(), options.baseline),
            "n_steps": options.n_steps,
            "method": options.method,
            "internal_batch_size": self._chunk(),
        }


@register_explainer("captum.Saliency")
class CaptumSaliency(_CaptumPixels):
    """Saliency, the input gradient (Simonyan et al., ICLR-W 2014) by Captum.

    ``attribute(image, target, abs=False)``; ``reduce`` takes the absolute value.
    """

    method = "Saliency"

    def _arguments(self, image: torch.Tensor) -> dict[str, Any]:
        return {"abs": False}


@register_explainer("captum.InputXGradient")
class CaptumInputXGradient(_CaptumPixels):
    """Input x Gradient (Shrikumar et al., 2016) by Captum: ``attribute(image, target)``."""

    method = "InputXGradient"


@register_explainer("captum.GuidedBackprop")
class CaptumGuidedBackprop(_CaptumPixels):
    """Guided Backpropagation (Springenberg et al., ICLR-W 2015) by Captum.

    Captum overrides the gradients of the model's ``nn.ReLU`` modules (functional ReLUs are not
    seen): ``attribute(image, target)``.
    """

    method = "GuidedBackprop"


@register_explainer("captum.DeepLift")
class CaptumDeepLift(_CaptumPixels):
    """DeepLIFT, Rescale rule (Shrikumar et al., ICML 2017) by Captum.

    ``attribute(image, baselines, target)``; Captum's rules cover its supported non-linear
    modules, and each module must run once per forward pass.
    """

    options_type = DeepLiftOptions
    method = "DeepLift"

    def _arguments(self, image: torch.Tensor) -> dict[str, Any]:
        return {"baselines": _baseline(image.detach(), self.options.baseline)}


@register_explainer("captum.Occlusion")
class CaptumOcclusion(_CaptumPixels):
    """Occlusion (Zeiler and Fergus, ECCV 2014) by Captum: square windows over all channels.

    ``attribute(image, sliding_window_shapes=(C, window, window), strides=(C, stride, stride),
    baselines, target, perturbations_per_eval=batch_size)``; stride 0 means the window (stride 1
    costs about 44,000 forward passes per 224 px image).
    """

    options_type = OcclusionOptions

    def _attribute(
        self, forward: nn.Module, image: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        options: OcclusionOptions = self.options
        channels, height, width = image.shape[1:]
        if options.window > min(height, width):
            raise ValueError(
                f"explainer {self.label!r}: window={options.window} exceeds the image size "
                f"{height}x{width}"
            )
        stride = options.stride or options.window
        return self._captum.Occlusion(forward).attribute(
            image.detach(),
            sliding_window_shapes=(channels, options.window, options.window),
            strides=(channels, stride, stride),
            baselines=_baseline(image.detach(), options.baseline),
            target=target,
            perturbations_per_eval=self._chunk(),
        )


@register_explainer("captum.SmoothGrad")
class CaptumSmoothGrad(_CaptumPixels):
    """SmoothGrad (Smilkov et al., 2017): Captum's ``NoiseTunnel`` over ``Saliency``.

    ``attribute(image, nt_type="smoothgrad", nt_samples=samples, stdevs=noise * (max - min),
    target, abs=False)`` with the image's own range; seeded per item (module docstring).
    """

    options_type = SmoothGradOptions
    stochastic = True

    def _attribute(
        self, forward: nn.Module, image: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        options: SmoothGradOptions = self.options
        spread = float(image.detach().max() - image.detach().min())
        tunnel = self._captum.NoiseTunnel(self._captum.Saliency(forward))
        return tunnel.attribute(
            image,
            nt_type="smoothgrad",
            nt_samples=options.samples,
            nt_samples_batch_size=min(options.samples, SMOOTHGRAD_CHUNK),
            stdevs=options.noise * spread,
            target=target,
            abs=False,
        )


@register_explainer("captum.LayerGradCam")
class CaptumLayerGradCam(_Captum, LayerExplainer):
    """Grad-CAM by Captum's ``LayerGradCam`` (ReLU on), resized with the suite's CAM rule.

    ``attribute(image, target, relu_attributions=True)`` on the explained layer, then
    :func:`.cam.cam_to_map`; equal to the built-in ``gradcam``.
    """

    options_type = NoOptions

    def explain(
        self, images: torch.Tensor, targets: torch.Tensor, item_ids: tuple[str, ...]
    ) -> torch.Tensor:
        """Return Grad-CAM maps ``[B, S, S]`` for ``targets``."""

        def attribute(
            forward: nn.Module, image: torch.Tensor, target: torch.Tensor
        ) -> torch.Tensor:
            method = self._captum.LayerGradCam(forward, self.layer)
            return method.attribute(image, target=target, relu_attributions=True)

        cams = self._each_item(images, targets, item_ids, attribute)
        if any(cam.dim() != 4 or cam.shape[1] != 1 for cam in cams):
            raise ValueError(
                f"explainer {self.label!r}: layer {self.layer_name!r} must output "
                f"[B, K, h, w], got attributions of shape {tuple(cams[0].shape)}"
            )
        return cam_to_map(torch.cat(cams)[:, 0], tuple(images.shape[-2:]))
