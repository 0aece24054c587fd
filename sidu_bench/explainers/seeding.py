"""Per-item random streams (protocol item 7: randomness seeded from the global seed and item id).

A stream depends only on ``(stream, seed, item_id)``, never on the batch an item is in, the
order of items, the shard or the device, so sharding and resuming never change a number.
"""

from __future__ import annotations

import hashlib

import torch

__all__ = ["item_generator", "item_seed"]


def item_seed(seed: int, item_id: str, stream: str) -> int:
    """Return a 63-bit seed: SHA-256 of ``"sidu-bench/explainers/{stream}/{seed}/{item_id}"``.

    The first 8 bytes of the digest, little-endian, shifted right by one bit. Python's ``hash()``
    is salted per process and is never used.

    Example:
        >>> item_seed(0, "item-1", "rise") == item_seed(0, "item-1", "rise")
        True
        >>> item_seed(0, "item-1", "rise") != item_seed(1, "item-1", "rise")
        True
    """
    text = f"sidu-bench/explainers/{stream}/{seed}/{item_id}"
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def item_generator(seed: int, item_id: str, stream: str) -> torch.Generator:
    """Return a CPU generator seeded with :func:`item_seed` (CPU, so every device draws alike)."""
    return torch.Generator().manual_seed(item_seed(seed, item_id, stream))
