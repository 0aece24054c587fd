"""sidu-bench: a benchmark suite for saliency-map faithfulness and speed, built around SIDU."""

__version__ = "0.1.0"
