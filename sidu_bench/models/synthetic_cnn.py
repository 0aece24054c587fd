"""The small CNN of the synthetic data set, its training routine and its shipped weights.

Architecture (64 x 64 input): four Conv3x3-BN-ReLU blocks of 8, 16, 32 and 64 channels with strides
2, 2, 2, 1, global average pooling and a linear layer to the 6 classes. The explained layer
``features`` outputs 64 channels at 8 x 8 (post-ReLU); about 4 MFLOPs per image.
:func:`train_synthetic` trains it on synthetic images with ids from ``TRAIN_START`` and measures
accuracy on fresh ones (ids from ``HOLDOUT_START``); the result ships as
``weights/synthetic_cnn.pt`` with a JSON of its metrics.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from sidu_bench.data.synthetic import (
    CLASS_NAMES,
    CLASS_SPACE,
    DEFAULT_ITEMS,
    HOLDOUT_START,
    IMAGE_SIZE,
    TRAIN_START,
    render_batch,
)
from sidu_bench.models._api import SYNTHETIC_SHAPES, ModelSpec, register_model
from sidu_bench.models.checkpoint import load_checkpoint, load_state, save_checkpoint

logger = logging.getLogger(__name__)

WEIGHTS = Path(__file__).resolve().parent / "weights" / "synthetic_cnn.pt"
ARCH = "synthetic_cnn"
MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
WIDTHS = (8, 16, 32, 64)
STRIDES = (2, 2, 2, 1)
DEFAULT_LAYER = "features"


class SyntheticCNN(nn.Module):
    """Conv-BN-ReLU blocks (``features``), global average pooling and a linear classifier."""

    def __init__(self, num_classes: int = len(CLASS_NAMES)) -> None:
        super().__init__()
        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        channels = 3
        for index, (width, stride) in enumerate(zip(WIDTHS, STRIDES, strict=True), start=1):
            blocks[f"block{index}"] = nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(channels, width, 3, stride=stride, padding=1, bias=False),
                    bn=nn.BatchNorm2d(width),
                    relu=nn.ReLU(),
                )
            )
            channels = width
        self.features = nn.Sequential(blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, num_classes]`` for normalised images ``[B, 3, S, S]``."""
        return self.fc(self.pool(self.features(x)).flatten(1))


def _normalise(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (images - mean) / std


@register_model(ARCH)
def synthetic_cnn(*, checkpoint: Path | None = None) -> ModelSpec:
    """The CNN trained on the synthetic data set (the shipped weights unless ``checkpoint``)."""
    path = WEIGHTS if checkpoint is None else checkpoint
    state, metadata = load_checkpoint(path)
    if metadata.get("arch", ARCH) != ARCH:
        raise ValueError(f"checkpoint {path} is for {metadata['arch']!r}, not {ARCH!r}")
    names = tuple(metadata.get("class_names", CLASS_NAMES))
    module = SyntheticCNN(num_classes=len(names))
    load_state(module, state, path)
    return ModelSpec(
        module=module.eval(),
        name=ARCH if checkpoint is None else f"{ARCH}@{checkpoint}",
        input_size=int(metadata.get("input_size", IMAGE_SIZE)),
        mean=tuple(metadata.get("mean", MEAN)),
        std=tuple(metadata.get("std", STD)),
        class_names=names,
        default_layer=DEFAULT_LAYER,
        class_space=metadata.get("class_space", CLASS_SPACE),
        domain=SYNTHETIC_SHAPES,
    )


@dataclass(frozen=True)
class TrainingReport:
    """What :func:`train_synthetic` did, as written to the JSON next to the weights."""

    seed: int
    train_items: int
    steps: int
    batch_size: int
    learning_rate: float
    holdout_items: int
    holdout_accuracy: float
    evaluation_items: int
    evaluation_accuracy: float
    train_seconds: float
    threads: int
    torch_version: str
    mflops_per_image: float
    parameters: int
    weights_file: str


def count_flops(module: nn.Module, size: int = IMAGE_SIZE) -> float:
    """Multiply-adds x 2 of convolutions and linear layers for one ``size`` x ``size`` image."""
    flops = 0.0

    def hook(layer: nn.Module, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal flops
        if isinstance(layer, nn.Conv2d):
            per_output = (
                layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
            )
            flops += 2.0 * output.numel() * per_output
        elif isinstance(layer, nn.Linear):
            flops += 2.0 * output.numel() * layer.in_features

    handles = [
        m.register_forward_hook(hook)
        for m in module.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    try:
        with torch.no_grad():
            module(torch.zeros(1, 3, size, size))
    finally:
        for handle in handles:
            handle.remove()
    return flops


def evaluate_synthetic(
    module: nn.Module, *, start: int, count: int, seed: int = 0, batch_size: int = 500
) -> float:
    """Top-1 accuracy of ``module`` on synthetic items ``start .. start + count - 1``."""
    module.eval()
    correct = 0
    with torch.no_grad():
        for first in range(start, start + count, batch_size):
            images, _, labels = render_batch(
                range(first, min(first + batch_size, start + count)), seed=seed
            )
            correct += int((module(_normalise(images)).argmax(1) == labels).sum())
    return correct / count


def _augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random multiple of 90 degrees and a random mirror: every class is invariant to both."""
    turns = int(torch.randint(0, 4, (), generator=generator))
    images = torch.rot90(images, turns, dims=(2, 3))
    return images.flip(3) if bool(torch.rand((), generator=generator) < 0.5) else images


def train_synthetic(
    out_path: str | Path,
    *,
    seed: int = 0,
    train_items: int = 24_000,
    steps: int = 3000,
    batch_size: int = 64,
    learning_rate: float = 0.01,
    holdout_items: int = 2000,
) -> TrainingReport:
    """Train the synthetic CNN deterministically on CPU; save the weights and a metrics JSON.

    Renders ``train_items`` images (ids ``TRAIN_START ..``, data seed ``seed``), then takes
    ``steps`` AdamW steps (one-cycle schedule, weight decay 1e-4) on random batches with random
    90-degree turns and mirrors. Initialisation, batches and augmentation derive from ``seed``, so
    the weights are bit-identical for a given seed, torch version and thread count. Accuracy is
    measured on ``holdout_items`` fresh images (ids ``HOLDOUT_START ..``) and on the evaluation
    items of the default data set.

    Args:
        out_path: where to write the checkpoint; the JSON goes beside it (``.json`` suffix).
        seed: seed of the data, the initialisation, the batches and the augmentation.
        train_items: distinct training images rendered up front.
        steps: optimisation steps.
        batch_size: images per step.
        learning_rate: peak learning rate.
        holdout_items: fresh images for the accuracy check.

    Returns:
        The :class:`TrainingReport` (also written as JSON).
    """
    out = Path(out_path)
    started = time.perf_counter()
    images, _, labels = render_batch(range(TRAIN_START, TRAIN_START + train_items), seed=seed)
    pool = (images * 255).round().to(torch.uint8)
    logger.info("rendered %d training images in %.0f s", train_items, time.perf_counter() - started)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SyntheticCNN()
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=learning_rate, total_steps=steps
    )
    model.train()
    for step in range(steps):
        batch = torch.randint(0, train_items, (batch_size,), generator=generator)
        inputs = _augment(_normalise(pool[batch].float() / 255), generator)
        loss = nn.functional.cross_entropy(model(inputs), labels[batch])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 500 == 0 or step == steps - 1:
            logger.info("step %d/%d loss %.4f", step + 1, steps, loss.item())
    train_seconds = time.perf_counter() - started
    holdout = evaluate_synthetic(model, start=HOLDOUT_START, count=holdout_items, seed=seed)
    evaluation = evaluate_synthetic(model, start=0, count=DEFAULT_ITEMS, seed=seed)
    logger.info("held-out accuracy %.4f after %.0f s", holdout, train_seconds)
    save_checkpoint(
        out,
        model.state_dict(),
        arch=ARCH,
        class_names=list(CLASS_NAMES),
        input_size=IMAGE_SIZE,
        mean=list(MEAN),
        std=list(STD),
        class_space=CLASS_SPACE,
    )
    report = TrainingReport(
        seed=seed,
        train_items=train_items,
        steps=steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        holdout_items=holdout_items,
        holdout_accuracy=holdout,
        evaluation_items=DEFAULT_ITEMS,
        evaluation_accuracy=evaluation,
        train_seconds=round(train_seconds, 1),
        threads=torch.get_num_threads(),
        torch_version=torch.__version__,
        mflops_per_image=round(count_flops(model) / 1e6, 3),
        parameters=sum(p.numel() for p in model.parameters()),
        weights_file=out.name,
    )
    out.with_suffix(".json").write_text(
        json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8"
    )
    return report
