"""The Poisson head of :class:`gradkit.sklearn.MLPRegressor` (``loss="poisson"``).

An exponential output ``p = exp(z)`` with the half Poisson deviance per element,

.. math::

    \\ell(z, y) = y \\log y - y z - y + e^{z}, \\qquad
    \\frac{\\partial \\ell}{\\partial z} = e^{z} - y = p - y,

(``y log y = 0`` at ``y = 0``), summed over the outputs. Taking the derivative through ``z``
directly is exact and never forms ``y / p``, which overflows where ``p`` underflows.

>>> import numpy as np
>>> from gradkit.losses.poisson import PoissonHead
>>> value, grad = PoissonHead().value_and_grad(np.array([0.0, 1.0]), np.array([1.0, 0.0]))
>>> np.round(value, 4).tolist(), np.round(grad, 4).tolist()
([0.0, 2.7183], [0.0, 2.7183])
"""

from __future__ import annotations

import numpy as np

__all__ = ["PoissonHead"]


def _xlogx(y: np.ndarray) -> np.ndarray:
    """``y log y`` with its limit 0 at ``y = 0``."""
    positive = y > 0
    return np.where(positive, y * np.log(np.where(positive, y, 1.0)), 0.0)


class PoissonHead:
    """scikit-learn's ``loss="poisson"``: ``p = exp(z)`` and the half Poisson deviance, gradient ``p - y``.

    It has the interface of the per-element heads of :func:`gradkit.compose` that the estimators
    use: ``forward(z)`` and ``value_and_grad(z, y)`` (no reduction).
    """

    name = "poisson"

    def forward(self, z: np.ndarray) -> np.ndarray:
        """The predicted rate ``exp(z)``."""
        return np.exp(z)

    def value_and_grad(self, z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The half deviance per element and its gradient ``exp(z) - y`` with respect to ``z``."""
        p = np.exp(z)
        return (_xlogx(y) - y * z - y + p).astype(p.dtype, copy=False), p - y

    def __repr__(self) -> str:
        return "PoissonHead(exp output, half Poisson deviance)"
