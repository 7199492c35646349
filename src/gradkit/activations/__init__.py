"""Activations by family, and the registry by name.

>>> import gradkit as gk
>>> gk.activations.get("softmax", axis=0)
Softmax(axis=0, temperature=1.0)
>>> "relu" in gk.activations.names()
True
"""

from __future__ import annotations

from ..base import Activation
from ..registry import Registry
from .elementwise import ELU, GELU, SELU, HardSigmoid, Identity, LeakyReLU, Mish, ReLU, Sigmoid, SiLU, Softplus, Tanh
from .entmax_bisect import EntmaxBisect
from .gumbel import GumbelSoftmax
from .softmax import LogSoftmax, Softmax
from .sparse import Entmax15, Sparsemax
from .spherical import LogSphericalSoftmax, LogTaylorSoftmax, SphericalSoftmax, TaylorSoftmax

__all__ = [
    "ELU",
    "GELU",
    "SELU",
    "Activation",
    "Entmax15",
    "EntmaxBisect",
    "GumbelSoftmax",
    "HardSigmoid",
    "Identity",
    "LeakyReLU",
    "LogSoftmax",
    "LogSphericalSoftmax",
    "LogTaylorSoftmax",
    "Mish",
    "ReLU",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Sparsemax",
    "SphericalSoftmax",
    "Tanh",
    "TaylorSoftmax",
    "get",
    "names",
    "register",
    "unregister",
]

_registry: Registry[Activation] = Registry("activation", Activation)
for _cls in (Identity, Sigmoid, Tanh, ReLU, LeakyReLU, ELU, SELU, GELU, Softplus, SiLU, Mish, HardSigmoid, Softmax, LogSoftmax,
             TaylorSoftmax, LogTaylorSoftmax, SphericalSoftmax, LogSphericalSoftmax, Sparsemax, Entmax15,
             GumbelSoftmax, EntmaxBisect):
    _registry.register(_cls)
_registry.seal()

get = _registry.get
names = _registry.names
register = _registry.register
unregister = _registry.unregister
live_names = _registry.live_names
builtin_names = _registry.builtin_names
