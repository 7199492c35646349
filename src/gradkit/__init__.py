"""gradkit: neural-network building blocks whose derivatives are exact and composable.

Every activation exposes ``forward``, ``vjp``, ``jvp`` and a batched ``jacobian``;
every loss its value and gradient; :func:`compose` chains any activation into
any loss; :func:`gradcheck` tells where a derivative is wrong.
"""

from . import activations, check, losses, nn, testing
from .activations import *
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
    "Activation",
    "AxisActivation",
    "BCELoss",
    "BCEWithLogitsLoss",
    "Composed",
    "CrossEntropyLoss",
    "ElementwiseActivation",
    "Entmax15Loss",
    "EntmaxBisectLoss",
    "GradcheckReport",
    "HuberLoss",
    "KLDivLoss",
    "Loss",
    "MAELoss",
    "MSELoss",
    "NLLLoss",
    "SparsemaxLoss",
    "activations",
    "check",
    "compose",
    "config_context",
    "custom_activation",
    "custom_loss",
    "get_config",
    "gradcheck",
    "losses",
    "nn",
    "set_config",
    "testing",
]
__all__ += activations.__all__  # every activation class, and get / names / register
