"""A small Vision Transformer of the synthetic data set and its shipped weights.

Architecture (64 x 64 input): torchvision's :class:`~torchvision.models.VisionTransformer` with a
convolutional stem (three Conv3x3-BN-ReLU of 16, 32 and 64 channels at stride 2, then a 1x1
projection: Xiao et al., "Early Convolutions Help Transformers See Better", NeurIPS 2021), so
8 x 8 patch tokens of width 64 and one class token; 4 encoder layers of 4 heads with an MLP of
128; the class token's final LayerNorm to the 6 classes. It is the suite's trained transformer:
the explainers' behaviour on token layers is measured on it (docs/protocol.md, item 21).
:func:`sidu_bench.training.train_synthetic` trains it (``arch="synthetic_vit"``); the result ships
as ``weights/synthetic_vit.pt`` with a JSON of its metrics.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.vision_transformer import ConvStemConfig

from sidu.tokens import TokenGrid
from sidu_bench.domains import SHAPES_CLASS_NAMES, SHAPES_IMAGE_SIZE
from sidu_bench.models._api import ModelSpec, register_model
from sidu_bench.models.synthetic_cnn import synthetic_spec

WEIGHTS = Path(__file__).resolve().parent / "weights" / "synthetic_vit.pt"
ARCH = "synthetic_vit"
PATCH = 8
LAYERS = 4
HEADS = 4
WIDTH = 64
MLP_WIDTH = 128
STEM = (16, 32, 64)
DEFAULT_LAYER = f"encoder.layers.encoder_layer_{LAYERS - 1}.ln_1"
"""The CAMs' layer: the last encoder layer's first LayerNorm (pytorch-grad-cam's ViT choice)."""
BLOCKS = (
    "conv_proj",
    *(f"encoder.layers.encoder_layer_{index}" for index in range(LAYERS)),
    "encoder.ln",
    "heads",
)
"""The stem, the encoder layers, the final LayerNorm and the head (:attr:`ModelSpec.blocks`)."""
SIDU_LAYER = f"encoder.layers.encoder_layer_{LAYERS - 2}.mlp.1"
"""SIDU's layer: the second-to-last encoder layer's post-GELU MLP activations (measured)."""


def build_synthetic_vit(num_classes: int = len(SHAPES_CLASS_NAMES)) -> nn.Module:
    """The architecture with freshly initialised weights (seed the generator first)."""
    return torchvision.models.VisionTransformer(
        image_size=SHAPES_IMAGE_SIZE,
        patch_size=PATCH,
        num_layers=LAYERS,
        num_heads=HEADS,
        hidden_dim=WIDTH,
        mlp_dim=MLP_WIDTH,
        num_classes=num_classes,
        conv_stem_configs=[ConvStemConfig(out_channels=c, kernel_size=3, stride=2) for c in STEM],
    )


@register_model(ARCH)
def synthetic_vit(*, checkpoint: Path | None = None) -> ModelSpec:
    """The ViT trained on the synthetic data set (the shipped weights unless ``checkpoint``)."""
    return synthetic_spec(
        ARCH,
        build_synthetic_vit,
        WEIGHTS,
        checkpoint,
        default_layer=DEFAULT_LAYER,
        blocks=BLOCKS,
        reshape=TokenGrid(prefix=1),
        sidu_layer=SIDU_LAYER,
    )


def count_flops(module: nn.Module, size: int = SHAPES_IMAGE_SIZE) -> float:
    """Floating-point operations of one ``size`` x ``size`` image (torch's flop counter).

    Attention runs through its plain operators while counting: the counter does not see into
    the fused fast path (it would miss a third of this model's operations).
    """
    counter = FlopCounterMode(display=False)
    fast_path = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with counter, torch.no_grad():
            module(torch.zeros(1, 3, size, size))
    finally:
        torch.backends.mha.set_fastpath_enabled(fast_path)
    return float(counter.get_total_flops())
