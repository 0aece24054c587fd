"""Class probabilities of a classifier's logits, in float64: what SIDU, RISE and the metrics read.

The softmax runs on the logits cast to float64, so the probabilities of reduced-precision
(autocast) forwards are not rounded a second time.
"""

from __future__ import annotations

import torch

__all__ = ["class_probabilities", "target_probability"]


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Return ``softmax(logits)`` over the classes, in float64.

    Args:
        logits: ``[N, num_classes]``.

    Example:
        >>> class_probabilities(torch.zeros(1, 4)).tolist()
        [[0.25, 0.25, 0.25, 0.25]]

    """
    return torch.softmax(logits.to(torch.float64), dim=1)


def target_probability(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Return the float64 softmax probability of class ``target[i]`` under ``logits[i]``.

    Args:
        logits: ``[N, num_classes]``.
        target: ``[N]`` int64 classes, on the logits' device.

    Returns:
        ``[N]`` float64 probabilities.

    Example:
        >>> target_probability(torch.tensor([[0.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 1]))
        tensor([0.5000, 0.8808], dtype=torch.float64)

    """
    return class_probabilities(logits).gather(1, target[:, None])[:, 0]
