"""Small networks: layers with exact backward passes, optimizers, ``fit`` and checkpoints.

>>> import numpy as np, gradkit as gk
>>> from gradkit import nn
>>> rng = np.random.default_rng(0)
>>> X, y = rng.standard_normal((64, 4)), rng.integers(0, 3, 64)
>>> model = nn.Sequential([nn.Dense(4, 16, rng=0), "relu", nn.Dense(16, 3, rng=1)])
>>> head = gk.compose(gk.Softmax(), gk.MSELoss())   # softmax with MSE, trained correctly
>>> history = nn.fit(model, X, np.eye(3)[y], loss=head, epochs=3, batch_size=16)
>>> history.epochs
3
"""

from .checkpoint import load, save
from .gradcheck import gradcheck_model
from .layers import ActivationLayer, Dense, Dropout, Layer
from .model import Sequential
from .optim import SGD, Adam, AdamW, CosineLR, Optimizer, StepLR
from .predictor import Predictor, load_predictor
from .train import DivergenceError, History, evaluate, fit

__all__ = [
    "SGD",
    "ActivationLayer",
    "Adam",
    "AdamW",
    "CosineLR",
    "Dense",
    "DivergenceError",
    "Dropout",
    "History",
    "Layer",
    "Optimizer",
    "Predictor",
    "Sequential",
    "StepLR",
    "evaluate",
    "fit",
    "gradcheck_model",
    "load",
    "load_predictor",
    "save",
]
