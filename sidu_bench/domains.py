"""The image domains data sets and models declare, and the synthetic shapes' class space.

A data set and a model meet only through these values: the runner refuses a model whose domain
differs from the data set's, and a data set's labels are the model's classes when both declare
the same class space. Data sets and models each import them from here, never from each other.
"""

from __future__ import annotations

__all__ = [
    "NATURAL_IMAGES",
    "SHAPES_CLASS_NAMES",
    "SHAPES_CLASS_SPACE",
    "SHAPES_IMAGE_SIZE",
    "SYNTHETIC_SHAPES",
]

NATURAL_IMAGES = "natural-images"
"""Domain of photographs (Caltech-101, ImageNet, VOC, image folders) and models trained on them."""
SYNTHETIC_SHAPES = "synthetic-shapes"
"""Domain of the generated shapes data set and the shipped CNN trained on it."""

SHAPES_CLASS_NAMES = ("disc", "square", "triangle", "cross", "star", "checker")
"""The classes of the synthetic shapes, in label order (the class of item ``i`` is ``i % 6``)."""
SHAPES_CLASS_SPACE = "synthetic-shapes-v1"
"""The class space of the synthetic shapes and of the CNN trained on them."""
SHAPES_IMAGE_SIZE = 64
"""The synthetic images' default size and the shipped CNN's input size, in pixels."""
