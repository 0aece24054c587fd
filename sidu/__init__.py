"""SIDU (Similarity Difference and Uniqueness) saliency maps: exact, batched, memory-bounded.

>>> import sidu
>>> maps = sidu.sidu(model, "layer4", images)  # doctest: +SKIP
"""

from sidu.backends import BACKENDS, ForwardBackend, resolve_backend
from sidu.capability import has_native_support, slow_dtype_reason
from sidu.core import SIDUResult
from sidu.engine import MaskSource, TensorMasks, masked_forward
from sidu.features import sidu_features
from sidu.loading import load_torch_backbone, load_torch_model_by_string
from sidu.method import SIDU, sidu
from sidu.resize import resize_reflect
from sidu.tokens import ChannelsLast, TokenGrid

__all__ = [
    "BACKENDS",
    "SIDU",
    "ChannelsLast",
    "ForwardBackend",
    "MaskSource",
    "SIDUResult",
    "TensorMasks",
    "TokenGrid",
    "has_native_support",
    "load_torch_backbone",
    "load_torch_model_by_string",
    "masked_forward",
    "resize_reflect",
    "resolve_backend",
    "sidu",
    "sidu_features",
    "slow_dtype_reason",
]

__version__ = "0.1.0"
