"""Losses by family, and the registry by name.

>>> import gradkit as gk
>>> gk.losses.get("huber", delta=2.0)
HuberLoss(delta=2.0, reduction='mean')
"""

from __future__ import annotations

from ..registry import Registry
from .base import ElementwiseLoss, Loss
from .binary import BCELoss, BCEWithLogitsLoss
from .classification import ClassLoss, CrossEntropyLoss, KLDivLoss, NLLLoss
from .entmax_bisect import EntmaxBisectLoss
from .fenchel_young import Entmax15Loss, FenchelYoungLoss, SparsemaxLoss
from .regression import HuberLoss, MAELoss, MSELoss

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "ClassLoss",
    "CrossEntropyLoss",
    "ElementwiseLoss",
    "Entmax15Loss",
    "EntmaxBisectLoss",
    "FenchelYoungLoss",
    "HuberLoss",
    "KLDivLoss",
    "Loss",
    "MAELoss",
    "MSELoss",
    "NLLLoss",
    "SparsemaxLoss",
    "get",
    "names",
    "register",
    "unregister",
]

_registry: Registry[Loss] = Registry("loss", Loss)
for _cls in (MSELoss, MAELoss, HuberLoss, CrossEntropyLoss, NLLLoss, BCELoss, BCEWithLogitsLoss, KLDivLoss,
             SparsemaxLoss, Entmax15Loss, EntmaxBisectLoss):
    _registry.register(_cls)
_registry.seal()

get = _registry.get
names = _registry.names
register = _registry.register
unregister = _registry.unregister
live_names = _registry.live_names
builtin_names = _registry.builtin_names
