"""Training the synthetic models on the synthetic shapes (``python -m sidu_bench train-synthetic``).

:func:`train_synthetic` trains :class:`~sidu_bench.models.synthetic_cnn.SyntheticCNN` (or, with
``arch="synthetic_vit"``, :mod:`~sidu_bench.models.synthetic_vit`'s transformer) on synthetic
images with ids from ``TRAIN_START`` and measures accuracy on fresh ones (ids from
``HOLDOUT_START``); the shipped ``weights/synthetic_cnn.pt``, ``weights/synthetic_vit.pt`` and
their JSONs of metrics come from it. It joins a data set and a model, so it sits above both
(neither imports the other).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from sidu_bench.data.synthetic import DEFAULT_ITEMS, HOLDOUT_START, TRAIN_START, render_batch
from sidu_bench.domains import SHAPES_CLASS_NAMES, SHAPES_CLASS_SPACE, SHAPES_IMAGE_SIZE
from sidu_bench.models import synthetic_cnn, synthetic_vit
from sidu_bench.models.checkpoint import save_checkpoint
from sidu_bench.models.synthetic_cnn import MEAN, STD

__all__ = ["TrainingReport", "evaluate_synthetic", "train_synthetic"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Recipe:
    """How one synthetic architecture is built, trained and measured."""

    build: Callable[[], nn.Module]
    learning_rate: float
    weight_decay: float
    count_flops: Callable[[nn.Module], float]


RECIPES = {
    synthetic_cnn.ARCH: _Recipe(synthetic_cnn.SyntheticCNN, 0.01, 1e-4, synthetic_cnn.count_flops),
    synthetic_vit.ARCH: _Recipe(
        synthetic_vit.build_synthetic_vit, 0.002, 0.05, synthetic_vit.count_flops
    ),
}
"""The trainable architectures: builder, peak learning rate, AdamW weight decay, flop counter."""


def _normalise(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (images - mean) / std


@dataclass(frozen=True)
class TrainingReport:
    """What :func:`train_synthetic` did, as written to the JSON next to the weights."""

    arch: str
    seed: int
    train_items: int
    steps: int
    batch_size: int
    learning_rate: float
    weight_decay: float
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
    arch: str = synthetic_cnn.ARCH,
    seed: int = 0,
    train_items: int = 24_000,
    steps: int = 3000,
    batch_size: int = 64,
    learning_rate: float | None = None,
    holdout_items: int = 2000,
) -> TrainingReport:
    """Train a synthetic model deterministically on CPU; save the weights and a metrics JSON.

    Renders ``train_items`` images (ids ``TRAIN_START ..``, data seed ``seed``), then takes
    ``steps`` AdamW steps (one-cycle schedule; weight decay 1e-4 for the CNN, 0.05 for the ViT)
    on random batches with random 90-degree turns and mirrors. Initialisation, batches and
    augmentation derive from ``seed``, so the weights are bit-identical for a given seed, torch
    version and thread count. Accuracy is measured on ``holdout_items`` fresh images (ids
    ``HOLDOUT_START ..``) and on the evaluation items of the default data set.

    Args:
        out_path: where to write the checkpoint; the JSON goes beside it (``.json`` suffix).
        arch: ``"synthetic_cnn"`` or ``"synthetic_vit"`` (:data:`RECIPES`).
        seed: seed of the data, the initialisation, the batches and the augmentation.
        train_items: distinct training images rendered up front.
        steps: optimisation steps.
        batch_size: images per step.
        learning_rate: peak learning rate (``None``: the architecture's, 0.01 CNN, 0.002 ViT).
        holdout_items: fresh images for the accuracy check.

    Returns:
        The :class:`TrainingReport` (also written as JSON).
    """
    if arch not in RECIPES:
        raise ValueError(f"arch must be one of {', '.join(RECIPES)}, got {arch!r}")
    recipe = RECIPES[arch]
    learning_rate = recipe.learning_rate if learning_rate is None else learning_rate
    out = Path(out_path)
    started = time.perf_counter()
    images, _, labels = render_batch(range(TRAIN_START, TRAIN_START + train_items), seed=seed)
    pool = (images * 255).round().to(torch.uint8)
    logger.info("rendered %d training images in %.0f s", train_items, time.perf_counter() - started)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = recipe.build()
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=learning_rate, weight_decay=recipe.weight_decay
    )
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
        arch=arch,
        class_names=list(SHAPES_CLASS_NAMES),
        input_size=SHAPES_IMAGE_SIZE,
        mean=list(MEAN),
        std=list(STD),
        class_space=SHAPES_CLASS_SPACE,
    )
    report = TrainingReport(
        arch=arch,
        seed=seed,
        train_items=train_items,
        steps=steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        weight_decay=recipe.weight_decay,
        holdout_items=holdout_items,
        holdout_accuracy=holdout,
        evaluation_items=DEFAULT_ITEMS,
        evaluation_accuracy=evaluation,
        train_seconds=round(train_seconds, 1),
        threads=torch.get_num_threads(),
        torch_version=torch.__version__,
        mflops_per_image=round(recipe.count_flops(model) / 1e6, 3),
        parameters=sum(p.numel() for p in model.parameters()),
        weights_file=out.name,
    )
    out.with_suffix(".json").write_text(
        json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8"
    )
    return report
