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
from .regression import HuberLoss, MAELoss, MSELoss

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "ClassLoss",
    "CrossEntropyLoss",
    "ElementwiseLoss",
    "HuberLoss",
    "KLDivLoss",
    "Loss",
    "MAELoss",
    "MSELoss",
    "NLLLoss",
    "get",
    "names",
    "register",
]

_registry: Registry[Loss] = Registry("loss", Loss)
for _cls in (MSELoss, MAELoss, HuberLoss, CrossEntropyLoss, NLLLoss, BCELoss, BCEWithLogitsLoss, KLDivLoss):
    _registry.register(_cls)

get = _registry.get
names = _registry.names
register = _registry.register
