"""SIDU (Similarity Difference and Uniqueness) saliency maps: exact, batched, memory-bounded.

>>> import sidu
>>> maps = sidu.sidu(model, "layer4", images)  # doctest: +SKIP
"""

from sidu._core import SIDUResult
from sidu.engine import MaskSource, TensorMasks, masked_forward
from sidu.features import sidu_features
from sidu.loading import load_torch_backbone, load_torch_model_by_string
from sidu.method import SIDU, sidu
from sidu.upsample import resize_reflect

__all__ = [
    "SIDU",
    "MaskSource",
    "SIDUResult",
    "TensorMasks",
    "load_torch_backbone",
    "load_torch_model_by_string",
    "masked_forward",
    "resize_reflect",
    "sidu",
    "sidu_features",
]

__version__ = "0.1.0"
