"""A trained classifier ready to predict: the network, its input scaling, its head and its class names.

``gradkit train`` saves all four in its checkpoint (``out/model.npz``): the weights, and in the
metadata the standardization ``x' = (x - scaler_mean) / scaler_scale``, the head (``output`` and
``loss``) and the class names in the order of the network's outputs (``classes``). A bare
``nn.load(path).forward(X)`` skips the scaling and returns logits; :func:`load_predictor` gives an
object whose :meth:`Predictor.predict` returns class names, as scikit-learn's estimators do.

>>> import os, tempfile, numpy as np
>>> from gradkit import nn
>>> model = nn.Sequential([nn.Dense(2, 3, rng=0, dtype=np.float64)])
>>> model.metadata = {"output": "softmax", "loss": "cross_entropy", "classes": ["ant", "bee", "cat"],
...                   "scaler_mean": [0.0, 0.0], "scaler_scale": [1.0, 1.0]}
>>> tmp = tempfile.TemporaryDirectory()
>>> path = os.path.join(tmp.name, "model.npz")
>>> nn.save(model, path, metadata=model.metadata)
>>> clf = nn.load_predictor(path)
>>> clf.classes_.tolist(), clf.predict(np.array([[0.5, -1.0]])).shape
(['ant', 'bee', 'cat'], (1,))
>>> float(clf.predict_proba(np.array([[0.5, -1.0]])).sum())
1.0
>>> tmp.cleanup()
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import activations, losses
from .._array import refuse_array_subclass
from ..base import AxisActivation
from ..composition import Composed, compose
from .checkpoint import load
from .model import Sequential
from .train import predicted_classes

__all__ = ["Predictor", "load_predictor"]

#: the metadata keys a checkpoint needs to predict with
REQUIRED = ("output", "loss", "classes", "scaler_mean", "scaler_scale")


@dataclass(frozen=True)
class Predictor:
    """A network with what it needs to predict: ``predict`` gives class names, ``predict_proba`` probabilities.

    Attributes
    ----------
    model : Sequential
        The network; its output is the logits, one per class.
    head : Composed
        ``compose(output, loss)``, the head it was trained with: its prediction decides the class.
    classes_ : ndarray
        The class names, in the order of the network's outputs.
    mean, scale : ndarray
        The input standardization: the network sees ``(X - mean) / scale``.
    """

    model: Sequential
    head: Composed
    classes_: np.ndarray
    mean: np.ndarray
    scale: np.ndarray

    @property
    def n_features_in_(self) -> int:
        """How many features each row needs."""
        return int(self.mean.shape[0])

    def decision_function(self, X: Any) -> np.ndarray:
        """The logits for ``X`` (raw features, standardized here), shape ``(n_rows, n_classes)``."""
        refuse_array_subclass(X, "X")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X must have shape (n_rows, {self.n_features_in_}); got {X.shape}")
        if not np.all(np.isfinite(X)):
            raise ValueError("X must be finite; it holds NaN or infinity")
        return self.model.forward(((X - self.mean) / self.scale).astype(self.model.dtype))

    def predict(self, X: Any) -> np.ndarray:
        """The predicted class name of each row of ``X``."""
        return self.classes_[predicted_classes(self.head, self.decision_function(X))]

    def predict_proba(self, X: Any) -> np.ndarray:
        """Each row's probability per class (columns in :attr:`classes_`'s order).

        The head's prediction where the output maps onto the probability simplex along the classes
        (softmax, sparsemax, entmax, Taylor and spherical softmax; the log forms exponentiated); other
        outputs (sigmoid, identity, ...) give no distribution and raise ``ValueError``.
        """
        act = self.head.activation
        low, high = act.output_range
        if not isinstance(act, AxisActivation) or not (low >= 0 and high <= 1 or high <= 0 and low == -math.inf):
            raise ValueError(f"the model's output {act.name!r} gives no probabilities over the classes; "
                             f"predict() gives the classes")
        out = np.asarray(self.head.forward(self.decision_function(X)), dtype=np.float64)
        return np.exp(out) if high <= 0 else out


def load_predictor(path: str | os.PathLike[str]) -> Predictor:
    """The :class:`Predictor` of a checkpoint written by ``gradkit train`` (any ``nn.save`` with its metadata).

    Raises ``ValueError`` naming the path when the checkpoint lacks what prediction needs (see
    :data:`REQUIRED`), or when the metadata disagrees with the network.
    """
    model = load(path)
    meta = model.metadata or {}
    missing = [key for key in REQUIRED if key not in meta]
    if missing:
        raise ValueError(f"{path}: the checkpoint's metadata lacks {', '.join(missing)}, which prediction needs "
                         f"(checkpoints from `gradkit train` have them; a model saved before class names were "
                         f"stored can be retrained)")
    try:
        head = compose(activations.get(meta["output"]), losses.get(meta["loss"]))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: the metadata's head {meta['output']!r} + {meta['loss']!r} is unusable: {exc}") from None
    classes = np.asarray(meta["classes"])
    mean, scale = (np.asarray(meta[k], dtype=np.float64) for k in ("scaler_mean", "scaler_scale"))
    n_in = model.layers[0].params["W"].shape[0] if "W" in model.layers[0].params else mean.shape[0]
    n_out = model.forward(np.zeros((1, n_in), dtype=model.dtype)).shape[1]
    if classes.ndim != 1 or len(classes) != n_out or mean.shape != (n_in,) or scale.shape != (n_in,) \
            or not np.all(scale > 0):
        raise ValueError(f"{path}: the metadata disagrees with the network ({n_in} inputs, {n_out} outputs): "
                         f"{len(classes)} class names, scaling of shapes {mean.shape} and {scale.shape}")
    return Predictor(model, head, classes, mean, scale)
