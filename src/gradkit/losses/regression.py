"""Regression losses, elementwise: ``target`` has the shape of ``pred``."""

from __future__ import annotations

import math
from typing import Any

from .._array import branch_free, check_positive
from .base import ElementwiseLoss

__all__ = ["HuberLoss", "MAELoss", "MSELoss"]


class MSELoss(ElementwiseLoss):
    r"""Mean squared error: :math:`l = (p - t)^2`, :math:`\partial l/\partial p = 2(p - t)`.

    ``reduction="mean"`` averages over all elements (PyTorch's ``MSELoss``).

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> L, dp = gk.MSELoss().value_and_grad(np.array([1.0, 2.0]), np.array([0.0, 0.0]))
    >>> float(L), dp
    (2.5, array([1., 2.]))
    """

    name = "mse"
    # the gradient 2(p - t) is kept as (p/2 - t/2) times 4, the factor applied after the mean's 1/n:
    # p/2 - t/2 never overflows (p - t can: 1e308 - (-1e308)), and halving is exact (but for
    # subnormal p, t, below 2^-1021, where it rounds), so 4·(p/2 - t/2)/n is finite wherever 2(p - t)/n is
    grad_factor = 4.0

    def compute_terms(self, xp: Any, p: Any, t: Any) -> tuple[Any, Any]:
        d = p - t
        half = 0.5 * d  # = p/2 - t/2 wherever d is finite (halving commutes with rounding)
        if branch_free(d) or (math.prod(d.shape) and not (bool(xp.max(d) < xp.inf) and bool(xp.min(d) > -xp.inf))):
            half = 0.5 * p - 0.5 * t  # d overflowed (or NaN): the halves cannot
        return d * d, half


class MAELoss(ElementwiseLoss):
    r"""Mean absolute error: :math:`l = |p - t|`, :math:`\partial l/\partial p = \mathrm{sign}(p - t)` (0 at 0).

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> gk.MAELoss(reduction="none").grad(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0]))
    array([-1.,  0.,  1.])
    """

    name = "mae"

    def compute_terms(self, xp: Any, p: Any, t: Any) -> tuple[Any, Any]:
        d = p - t
        return xp.abs(d), xp.sign(d)


class HuberLoss(ElementwiseLoss):
    r"""Huber loss with threshold :math:`\delta > 0`, :math:`d = p - t`:
    :math:`l = \tfrac12 d^2` if :math:`|d| \le \delta`, else :math:`\delta(|d| - \tfrac12\delta)`;
    :math:`\partial l/\partial p = \mathrm{clip}(d, -\delta, \delta)`.

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> gk.HuberLoss(delta=1.0, reduction="none")(np.array([0.5, 3.0]), np.array([0.0, 0.0]))
    array([0.125, 2.5  ])
    """

    name = "huber"

    def __init__(self, delta: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.delta = check_positive(delta, "delta")


    def compute_terms(self, xp: Any, p: Any, t: Any) -> tuple[Any, Any]:
        d = p - t
        a = xp.abs(d)
        dc = xp.clip(d, -self.delta, self.delta)  # the quadratic branch on |d| <= δ only: no overflow where unused
        value = xp.where(a <= self.delta, 0.5 * dc * dc, self.delta * (a - 0.5 * self.delta))
        return value, dc
