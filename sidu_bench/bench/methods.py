"""What ``bench`` runs on a case: our explainers and their peers, and how forwards are counted.

Our methods are explainer specs of :func:`sidu_bench.explainers.get_explainer` (``sidu``,
``scorecam:max_channels=256``, ``rise:masks=256``, ...). Peers are other packages' versions of
the same method, run as their users run them (always float32, as they have no autocast option,
at torch's default float32 precision: TF32 convolutions on CUDA; always the torch engine):

- ``pytorch-sidu`` beside ``sidu`` (the incumbent package; one forward per mask);
- ``pytorch-grad-cam:scorecam`` beside ``scorecam`` (its ``max_channels`` selection is
  reproduced through pytorch-grad-cam's own ``reshape_transform`` hook, so both do equal work);
- ``pytorch-grad-cam:gradcam`` beside ``gradcam``.

Our explainers run their perturbation forwards on the configured forward backend
(:func:`sidu.backends.resolve_backend`: ``torch``, ``onnxruntime`` or ``auto``) at the configured
float32 precision (``ieee`` or ``tf32``, CUDA only).

Work is counted in *forwarded images*: the batch rows entering the network's first leaf module
(its stem), which also counts peers that trace a copy of the network up to the explained layer,
plus the rows a non-torch backend (an ONNX Runtime session) forwards, which never reach the stem.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from sidu.backends import ForwardBackend
from sidu.capture import forward_hooks
from sidu_bench.bench.cases import BenchCase
from sidu_bench.explainers import explained_layer, get_explainer, parse_spec

__all__ = [
    "PEER_OF",
    "ForwardCounter",
    "method_call",
    "peer_available",
    "peer_label",
]

PEER_PACKAGES = {
    "pytorch-sidu": "pytorch_sidu",
    "pytorch-grad-cam:scorecam": "pytorch_grad_cam",
    "pytorch-grad-cam:gradcam": "pytorch_grad_cam",
}
"""Peer name: the module it needs."""

PEER_OF = {
    "sidu": "pytorch-sidu",
    "scorecam": "pytorch-grad-cam:scorecam",
    "gradcam": "pytorch-grad-cam:gradcam",
}
"""Our explainer's name: the peer measured beside it."""


def peer_available(peer: str) -> bool:
    """Whether the package behind ``peer`` is installed."""
    import importlib.util

    return importlib.util.find_spec(PEER_PACKAGES[peer]) is not None


class ForwardCounter:
    """Count the images a network forwards, at its stem and through non-torch backends.

    Torch forwards are counted at the network's first leaf module (its stem); a non-torch
    forward backend (an ONNX Runtime session) never enters the torch modules, so its batches are
    counted where :class:`~sidu.backends.ForwardBackend` is called.

    Args:
        module: the network.
        images: an input batch; one clean forward (not counted) finds the first leaf module.

    Attributes:
        count: images forwarded inside :meth:`counting` blocks (accumulates).
        backend_count: those of them forwarded by a non-torch backend.
        backends: every :class:`~sidu.backends.ForwardBackend` called inside the blocks.
    """

    def __init__(self, module: nn.Module, images: torch.Tensor) -> None:
        order: list[nn.Module] = []
        leaves = [leaf for leaf in module.modules() if next(leaf.children(), None) is None]
        with (
            forward_hooks(leaves, lambda m, _args: order.append(m), pre=True),
            torch.inference_mode(),
        ):
            module(images)
        if not order:
            raise ValueError("model has no leaf module to count forwarded images at")
        self.stem = order[0]
        self.count = 0
        self.backend_count = 0
        self.backends: list[ForwardBackend] = []

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        """Count forwarded images while inside the block (``count`` accumulates)."""

        def hook(_module: nn.Module, args: tuple[object, ...]) -> None:
            first = args[0] if args else None
            if isinstance(first, torch.Tensor) and first.dim() > 0:
                self.count += int(first.shape[0])

        original = ForwardBackend.__call__

        def call(backend: ForwardBackend, batch: torch.Tensor) -> torch.Tensor:
            if not any(seen is backend for seen in self.backends):
                self.backends.append(backend)
            if backend.name != "torch":  # a torch backend runs the module: the hook counts it
                self.count += int(batch.shape[0])
                self.backend_count += int(batch.shape[0])
            return original(backend, batch)

        ForwardBackend.__call__ = call
        try:
            with forward_hooks([self.stem], hook, pre=True):
                yield
        finally:
            ForwardBackend.__call__ = original

    def engine(self) -> str:
        """The engine of the counted forwards: ``onnxruntime``, ``torch`` or ``""`` (none).

        A non-torch backend's name when it forwarded images, else ``torch`` when any images
        were forwarded.
        """
        ran = [b.name for b in self.backends if b.name != "torch"]
        if self.backend_count and ran:
            return ran[0]
        return "torch" if self.count else ""

    def fallback_reason(self) -> str:
        """Why a requested non-torch backend ran torch (``""`` when none fell back)."""
        return next((b.reason for b in self.backends if b.name == "torch" and b.reason), "")


@dataclass(frozen=True)
class MethodCall:
    """A prepared method: ``run()`` explains the case's images once; ``label`` names it."""

    label: str
    run: Callable[[], object]


def method_call(
    spec: str,
    case: BenchCase,
    *,
    peer: bool = False,
    dtype: torch.dtype | None = None,
    channels_last: bool = False,
    backend: str = "torch",
    precision: str = "ieee",
) -> MethodCall:
    """Prepare our explainer ``spec``, or with ``peer=True`` its peer, on ``case``.

    The target of every image is the model's prediction, computed here (not timed).

    Args:
        spec: an explainer spec (``sidu``, ``scorecam:max_channels=256``, ``rise:masks=256``).
        case: the built case.
        peer: run the peer package's version of the method instead (see :data:`PEER_OF`).
        dtype: autocast dtype of our explainers' forward passes (peers always run float32).
        channels_last: feed our explainers' masked images in channels-last format.
        backend: the forward backend of our explainers (``torch``, ``onnxruntime``, ``auto``).
        precision: float32 CUDA arithmetic of our explainers, ``ieee`` or ``tf32`` (peers run
            at torch's defaults).

    Returns:
        The :class:`MethodCall`.
    """
    with torch.inference_mode():
        targets = case.module(case.images).argmax(dim=1)
    if peer:
        return _peer_call(spec, case, targets)
    explainer = get_explainer(
        spec,
        case.module,
        explained_layer(spec, case.model.layer, case.model.sidu_layer),
        dtype=dtype,
        channels_last=channels_last,
        backend=backend,
        precision=precision,
        reshape=case.model.reshape,
    )
    ids = [f"bench-{index}" for index in range(case.images.shape[0])]
    return MethodCall(explainer.label, lambda: explainer(case.images, targets, ids))


def peer_label(spec: str) -> str | None:
    """The table label of the peer of our explainer ``spec`` (``None`` when it has none).

    Example:
        >>> peer_label("scorecam:max_channels=256")
        'pytorch-grad-cam:scorecam:max_channels=256'
    """
    parsed = parse_spec(spec)
    name = PEER_OF.get(parsed.name)
    if name is None:
        return None
    channels = _changed_options(spec).get("max_channels")
    return name if channels is None else f"{name}:max_channels={channels}"


def _changed_options(spec: str) -> dict[str, str]:
    """The options of ``spec`` that differ from the explainer's defaults, as text."""
    text = parse_spec(spec).label.partition(":")[2]
    return dict(part.split("=", 1) for part in text.split(",") if part)


def _peer_call(spec: str, case: BenchCase, targets: torch.Tensor) -> MethodCall:
    label = peer_label(spec)
    if label is None:
        raise ValueError(f"explainer {spec!r} has no peer; peers exist for {', '.join(PEER_OF)}")
    name = PEER_OF[parse_spec(spec).name]
    if not peer_available(name):
        raise ValueError(f"peer {name!r} needs the package {PEER_PACKAGES[name]!r} installed")
    options = _changed_options(spec)
    unsupported = set(options) - {"max_channels"}
    if unsupported:
        raise ValueError(f"the peer of {spec!r} cannot take the options {sorted(unsupported)}")
    if name == "pytorch-sidu":
        import pytorch_sidu

        layer = case.model.layer
        return MethodCall(
            label, lambda: pytorch_sidu.sidu(case.module, layer, case.images, device=case.device)
        )
    max_channels = int(options["max_channels"]) if "max_channels" in options else None
    run = _grad_cam_call(name.split(":")[1], case, targets, max_channels=max_channels)
    return MethodCall(label, run)


def _grad_cam_call(
    method: str, case: BenchCase, targets: torch.Tensor, *, max_channels: int | None
) -> Callable[[], object]:
    """pytorch-grad-cam's ``method`` on ``case``; ``max_channels`` as our Score-CAM's."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from sidu_bench.explainers.scorecam import top_variance_channels

    classes = {"scorecam": pytorch_grad_cam.ScoreCAM, "gradcam": pytorch_grad_cam.GradCAM}
    grid = case.model.reshape  # a token layer: pytorch-grad-cam's reshape_transform
    reshape = grid
    if max_channels is not None:

        def reshape(activations: torch.Tensor) -> torch.Tensor:
            if grid is not None:
                activations = grid(activations)
            keep = top_variance_channels(activations, max_channels)
            index = keep[:, :, None, None].expand(-1, -1, *activations.shape[2:])
            return activations.gather(1, index)

    layer = dict(case.module.named_modules())[case.model.layer]
    wanted = [ClassifierOutputTarget(int(target)) for target in targets]

    def run() -> object:
        with classes[method](
            model=case.module, target_layers=[layer], reshape_transform=reshape
        ) as cam:
            return cam(input_tensor=case.images, targets=wanted)

    return run
