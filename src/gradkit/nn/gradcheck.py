"""Check a whole network's backpropagation against finite differences on its parameters."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._array import ArrayLike
from .._rng import RNGLike, seed_alias
from ..check import GradcheckReport, gradcheck
from .model import Sequential
from .train import as_head

__all__ = ["gradcheck_model"]


@seed_alias("gradkit.nn.gradcheck_model")
def gradcheck_model(
    model: Sequential, X: ArrayLike, y: ArrayLike, loss: Any, *, rng: RNGLike = 0, **kwargs: Any
) -> GradcheckReport:
    """:func:`gradkit.gradcheck` of ``θ ↦ loss(model_θ(X), y)`` over all parameters ``θ``.

    The VJP under test is backpropagation (``model.backward``); the reference is
    central differences on every parameter. A float64 model (``Dense(..., dtype=np.float64)``) gives the
    strictest check; a float32 model is checked in float32, with float32's step and tolerances (see
    :func:`gradkit.gradcheck`). No dropout is active (``forward`` runs in evaluation mode). The
    parameters are restored afterwards.
    ``worst_index`` indexes the flattened parameter vector, in the order the
    report's title lists the parameters. ``rng`` is :func:`gradkit.gradcheck`'s (``seed=`` is its
    deprecated old name).

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> from gradkit import nn
    >>> model = nn.Sequential([nn.Dense(3, 4, rng=0, dtype=np.float64), "tanh", nn.Dense(4, 2, rng=1, dtype=np.float64)])
    >>> X, y = np.random.default_rng(0).standard_normal((5, 3)), np.array([0, 1, 1, 0, 1])
    >>> nn.gradcheck_model(model, X, y, gk.compose(gk.Softmax(), gk.CrossEntropyLoss())).ok
    True
    """
    head = as_head(loss)
    params = model.params
    names = list(params)
    shapes = [params[k].shape for k in names]
    sizes = [params[k].size for k in names]
    saved = {k: v.copy() for k, v in params.items()}
    X = np.asarray(X, dtype=model.dtype)

    def assign(theta: np.ndarray) -> None:
        for name, chunk, shape in zip(names, np.split(theta, np.cumsum(sizes)[:-1]), shapes):
            params[name][...] = chunk.reshape(shape)

    def f(theta: np.ndarray) -> Any:
        assign(theta)
        return head(model.forward(X), y)

    def vjp(theta: np.ndarray, g: Any) -> np.ndarray:
        assign(theta)
        model.backward(head.vjp(model.forward(X), y, g))
        grads = model.grads
        return np.concatenate([grads[k].ravel() for k in names])

    theta0 = np.concatenate([saved[k].ravel() for k in names]).astype(np.float64)
    try:
        report = gradcheck(f, theta0, vjp=vjp, rng=rng, **kwargs)
    finally:
        assign(theta0)
    report.function = f"{head!r} on parameters " + ", ".join(f"{k}{s}" for k, s in zip(names, shapes))
    return report
