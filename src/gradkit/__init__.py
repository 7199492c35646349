"""gradkit: neural-network building blocks whose derivatives are exact and composable.

Every activation exposes ``forward``, ``vjp``, ``jvp`` and a batched ``jacobian``;
every loss its value and gradient; :func:`compose` chains any activation into
any loss; :func:`gradcheck` tells where a derivative is wrong. :func:`get` builds
an activation or a loss by name (``gk.get("softmax", axis=0)``, ``gk.get("mse")``)
and :func:`names` lists both registries' names; ``gk.activations`` and ``gk.losses``
hold each registry's own ``get``, ``names``, ``register`` and ``unregister``.
"""

from . import activations, check, losses, nn, testing
from ._lookup import get, names, register, unregister  # both registries; gk.activations.get etc. are one each
from .activations import (
    ELU,
    GELU,
    SELU,
    Entmax15,
    EntmaxBisect,
    GumbelSoftmax,
    HardSigmoid,
    Identity,
    LeakyReLU,
    LogSoftmax,
    LogSphericalSoftmax,
    LogTaylorSoftmax,
    Mish,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Sparsemax,
    SphericalSoftmax,
    Tanh,
    TaylorSoftmax,
)
from .base import Activation, AxisActivation, ElementwiseActivation
from .check import GradcheckReport, gradcheck
from .composition import Composed, compose
from .config import config_context, get_config, set_config
from .custom import custom_activation, custom_loss
from .losses import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    Entmax15Loss,
    EntmaxBisectLoss,
    HuberLoss,
    KLDivLoss,
    Loss,
    MAELoss,
    MSELoss,
    NLLLoss,
    SparsemaxLoss,
)

__version__ = "0.1.0"

__all__ = [
    "ELU",
    "GELU",
    "SELU",
    "Activation",
    "AxisActivation",
    "BCELoss",
    "BCEWithLogitsLoss",
    "Composed",
    "CrossEntropyLoss",
    "ElementwiseActivation",
    "Entmax15",
    "Entmax15Loss",
    "EntmaxBisect",
    "EntmaxBisectLoss",
    "GradcheckReport",
    "GumbelSoftmax",
    "HardSigmoid",
    "HuberLoss",
    "Identity",
    "KLDivLoss",
    "LeakyReLU",
    "LogSoftmax",
    "LogSphericalSoftmax",
    "LogTaylorSoftmax",
    "Loss",
    "MAELoss",
    "MSELoss",
    "Mish",
    "NLLLoss",
    "ReLU",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Sparsemax",
    "SparsemaxLoss",
    "SphericalSoftmax",
    "Tanh",
    "TaylorSoftmax",
    "activations",
    "check",
    "compose",
    "config_context",
    "custom_activation",
    "custom_loss",
    "get",
    "get_config",
    "gradcheck",
    "losses",
    "names",
    "nn",
    "register",
    "set_config",
    "testing",
    "unregister",
]
