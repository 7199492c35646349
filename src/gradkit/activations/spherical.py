r"""The spherical family: Taylor and spherical softmax, and their log versions.

A :math:`\varphi`-normalizer maps scores :math:`z` to :math:`y = \varphi(z) / S`,
:math:`S = \sum_k \varphi(z_k)`, with :math:`\varphi > 0`:

* Taylor softmax of even order :math:`k`: :math:`\varphi(z) = \sum_{i \le k} z^i / i!`
  (order 2: :math:`1 + z + z^2/2`), positive for every real :math:`z`;
* spherical softmax: :math:`\varphi(z) = z^2 + \varepsilon`.

Jacobian: :math:`J = \mathrm{diag}(r) - y\,r^\top` with :math:`r = \varphi'(z)/S`;
VJP :math:`r \odot (g - \langle g, y\rangle)`; JVP :math:`r \odot v - y \langle r, v\rangle`.
The log versions :math:`\log y = \log\varphi(z) - \log S` have
:math:`J = \mathrm{diag}(q) - \mathbf 1 r^\top`, :math:`q = \varphi'/\varphi`.

These maps are **not shift-invariant**, so no maximum is subtracted from :math:`z`.
They are evaluated stably as ``softmax(a)`` with :math:`a = \log\varphi(z)`
computed without forming :math:`\varphi` (``hypot`` for order 2 and the spherical
map; :math:`k \log|z| + \log P(1/z)` for :math:`|z| > 1` at higher orders), so no
score overflows, and the chain rule gives
:math:`\partial y/\partial z = J_{\mathrm{softmax}}(a)\,\mathrm{diag}(q)`.
Masks, ``-inf``/``+inf`` and NaN follow :class:`~gradkit.Softmax` on :math:`a`:
a masked entry gets 0 (log: ``-inf``); an infinite score (either sign, since
:math:`\varphi(\pm\infty) = \infty`) takes the whole mass.
Predictions are the argmax of :math:`y`, which for the spherical map is the
largest :math:`|z|`, not the largest :math:`z`.

NumPy float32/float64 input runs the numba kernels of :mod:`gradkit.kernels.spherical`
(forward, VJP, JVP; equal to this portable path, which stays the reference and serves
every other namespace, traced values and ``GRADKIT_DISABLE_NUMBA=1``). The Jacobian
uses the portable path (the softmax kernel on :math:`a`).
"""

from __future__ import annotations

import math
from typing import Any

from .._array import check_int, check_positive, is_traced
from ..base import AxisActivation
from .softmax import LogSoftmax, Softmax

__all__ = ["MAX_TAYLOR_ORDER", "LogSphericalSoftmax", "LogTaylorSoftmax", "SphericalSoftmax", "TaylorSoftmax"]

#: The largest Taylor order accepted. φ_k(z) = Σ_{i≤k} z^i/i! alternates in sign for z < 0, and its
#: condition number max_z Σ|z^i/i!| / φ_k(z) grows about 3× per order (k = 4: 21, 10: 694,
#: 20: 2.0e5, 32: 1.8e8). Measured worst error of log φ over the whole finite range (|z| from
#: 1e-3 to 1e37, both signs, against 50-digit arithmetic): k = 20 keeps float64 within 7e-13 and
#: float32 within 2e-4 (order 4: 3e-5, the float32 rounding of log φ itself); k = 22 is 6e-12 /
#: 1.3e-3, k = 32 is 1.4e-10 / 0.3, from k = 34 float32 gives inf or NaN (1/k! underflows),
#: k = 60 is off by 1e-3 in float64, from k = 100 float64 gives inf, and from k = 171 1/k! is no
#: float64 number at all (the old OverflowError).
MAX_TAYLOR_ORDER = 20


class _PhiNormalizer(AxisActivation):
    """Base: ``y = softmax(log φ(z))``; subclasses give ``_log_phi_and_q(xp, z)``."""

    _inner_cls: type = Softmax
    preserves_order = False  # φ is not increasing: the prediction is argmax y, not argmax z

    def __init__(self, axis: int = -1) -> None:
        super().__init__(axis)
        self._inner = self._inner_cls(axis=axis)

    def _log_phi_and_q(self, xp: Any, z: Any) -> tuple[Any, Any]:
        """``log φ(z)`` and ``q = φ'(z)/φ(z)`` for finite ``z``."""
        raise NotImplementedError

    def _kernel_params(self, dtype: Any) -> tuple[int, int, float]:
        """``(kind, order, root)`` for :mod:`gradkit.kernels.spherical`."""
        raise NotImplementedError

    def _fast(self, xp: Any, *arrays: Any) -> Any:
        """The numba kernels module when they can take these arrays (NumPy float32/64, not traced), else None."""
        from .. import kernels

        if not kernels.usable(xp, *arrays) or is_traced(*arrays):
            return None
        from ..kernels import spherical as fast

        return fast

    @property
    def _log(self) -> bool:
        return self._inner_cls is LogSoftmax

    def _a_and_q(self, xp: Any, z: Any, mask: Any) -> tuple[Any, Any]:
        infinite = xp.isinf(z)
        a, q = self._log_phi_and_q(xp, xp.where(infinite, 0.0, z))
        a = xp.where(infinite, xp.inf, a)  # φ(±inf) = inf: it takes the mass, like +inf in softmax
        q = xp.where(infinite, 0.0, q)  # the limit of φ'/φ at ±inf
        if mask is not None:
            q = xp.where(mask, q, 0.0)  # a masked score (even NaN or inf) must not reach the gradient
        return a, q

    def compute_forward(self, xp: Any, x: Any, axis: int, mask: Any) -> Any:
        if fast := self._fast(xp, x, mask):
            return fast.forward(x, axis, mask, *self._kernel_params(x.dtype), log=self._log)
        a, _ = self._a_and_q(xp, x, mask)
        return self._inner.compute_forward(xp, a, axis, mask)

    def compute_vjp(self, xp: Any, x: Any, y: Any, g: Any, axis: int, mask: Any) -> Any:
        if fast := self._fast(xp, x, y, g, mask):
            return fast.vjp(x, y, g, axis, mask, *self._kernel_params(x.dtype), log=self._log)
        a, q = self._a_and_q(xp, x, mask)
        return q * self._inner.compute_vjp(xp, a, y, g, axis, mask)

    def compute_jvp(self, xp: Any, x: Any, y: Any, v: Any, axis: int, mask: Any) -> Any:
        if fast := self._fast(xp, x, y, v, mask):
            return fast.jvp(x, y, v, axis, mask, *self._kernel_params(x.dtype), log=self._log)
        a, q = self._a_and_q(xp, x, mask)
        return self._inner.compute_jvp(xp, a, y, q * v, axis, mask)

    def compute_jacobian(self, xp: Any, x: Any, y: Any, mask: Any) -> Any:
        a, q = self._a_and_q(xp, x, mask)
        return self._inner.compute_jacobian(xp, a, y, mask) * q[..., None, :]


def _horner(coefficients: list[float], w: Any) -> Any:
    """``Σ_j c_j w^j`` for ``coefficients = [c_0, c_1, ...]``."""
    out = w * 0.0 + coefficients[-1]
    for c in reversed(coefficients[:-1]):
        out = out * w + c
    return out


def _taylor_log_phi_and_q(xp: Any, z: Any, order: int) -> tuple[Any, Any]:
    if order == 2:  # φ = ((z + 1)² + 1) / 2: hypot never overflows
        u = z + 1.0
        h = xp.hypot(u, xp.ones_like(u))
        return 2.0 * xp.log(h) - math.log(2.0), 2.0 * (u / h) / h
    inv_fact = [1.0 / math.factorial(i) for i in range(order + 1)]
    big = xp.abs(z) > 1.0
    # |z| <= 1: φ and φ' directly
    zs = xp.clip(z, -1.0, 1.0)
    phi, dphi = _horner(inv_fact, zs), _horner(inv_fact[:-1], zs)
    # |z| > 1: φ = z^k P(w), φ' = z^(k-1) Q(w), w = 1/z, both P, Q > 0
    zb = xp.where(big, z, 2.0)
    w = 1.0 / zb
    p = _horner(inv_fact[::-1], w)  # Σ_j w^j / (k-j)!
    qq = _horner(inv_fact[-2::-1], w)  # Σ_j w^j / (k-1-j)!
    log_phi = xp.where(big, order * xp.log(xp.abs(zb)) + xp.log(p), xp.log(phi))
    q = xp.where(big, w * qq / p, dphi / phi)
    return log_phi, q


class TaylorSoftmax(_PhiNormalizer):
    r"""Taylor softmax: :math:`y = \varphi(z)/\sum\varphi(z)` with
    :math:`\varphi(z) = \sum_{i=0}^{k} z^i/i!` (even ``order`` :math:`k`, default 2: :math:`1 + z + z^2/2`).

    Jacobian :math:`\mathrm{diag}(r) - y r^\top`, :math:`r = \varphi'(z)/S`; VJP
    :math:`r \odot (g - \langle g, y\rangle)`. Not shift-invariant (see the module notes).
    ``order`` is at most ``MAX_TAYLOR_ORDER`` (20): float32 keeps about four digits there (module notes).

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> gk.TaylorSoftmax()(np.array([-1.0, 0.0, 1.0])).round(8)  # φ = [0.5, 1, 2.5]
    array([0.125, 0.25 , 0.625])
    """

    name = "taylor_softmax"
    output_range = (0.0, 1.0)

    def __init__(self, axis: int = -1, order: int = 2) -> None:
        super().__init__(axis)
        self.order = check_int(order, "order")
        if self.order < 2 or self.order % 2 or self.order > MAX_TAYLOR_ORDER:
            raise ValueError(
                f"order must be an even integer in [2, {MAX_TAYLOR_ORDER}] (odd orders have real roots; higher "
                f"ones lose the float32 result to cancellation at negative scores); got {order}"
            )


    def _log_phi_and_q(self, xp: Any, z: Any) -> tuple[Any, Any]:
        return _taylor_log_phi_and_q(xp, z, self.order)

    def _kernel_params(self, dtype: Any) -> tuple[int, int, float]:
        from ..kernels.spherical import TAYLOR, TAYLOR2

        return (TAYLOR2 if self.order == 2 else TAYLOR), self.order, 0.0


class LogTaylorSoftmax(TaylorSoftmax):
    r"""Log-Taylor softmax: :math:`\log y = \log\varphi(z) - \log\sum\varphi(z)` (see :class:`TaylorSoftmax`).

    Jacobian :math:`\mathrm{diag}(q) - \mathbf 1 r^\top`, :math:`q = \varphi'/\varphi`; VJP
    :math:`q \odot g - r \sum g`. With :class:`~gradkit.NLLLoss` it is the log-Taylor
    softmax loss of de Brébisson & Vincent (2016).

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> np.exp(gk.LogTaylorSoftmax()(np.array([-1.0, 0.0, 1.0]))).round(8)
    array([0.125, 0.25 , 0.625])
    """

    name = "log_taylor_softmax"
    output_range = (-math.inf, 0.0)
    _inner_cls = LogSoftmax


class SphericalSoftmax(_PhiNormalizer):
    r"""Spherical softmax: :math:`y = (z^2 + \varepsilon)/\sum(z^2 + \varepsilon)`.

    Jacobian :math:`\mathrm{diag}(r) - y r^\top`, :math:`r = 2z/S`; VJP
    :math:`r \odot (g - \langle g, y\rangle)`. ``eps`` :math:`> 0` keeps :math:`\log y`
    finite at :math:`z = 0`; small values make the gradient there steep (:math:`\varphi'/\varphi`
    peaks at :math:`1/\sqrt\varepsilon`). Not shift-invariant; argmax :math:`y` is argmax :math:`|z|`.

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> gk.SphericalSoftmax(eps=1.0)(np.array([-1.0, 0.0, 2.0])).round(8)  # φ = [2, 1, 5]
    array([0.25 , 0.125, 0.625])
    """

    name = "spherical_softmax"
    output_range = (0.0, 1.0)

    def __init__(self, axis: int = -1, eps: float = 0.01) -> None:
        super().__init__(axis)
        self.eps = check_positive(eps, "eps")


    def _root(self, info: Any) -> float:
        # keep sqrt(ε) a normal number of the dtype (float32: ε in [1.4e-76, 3.4e38])
        return min(max(math.sqrt(self.eps), float(info.smallest_normal)), float(info.max) ** 0.5)

    def _log_phi_and_q(self, xp: Any, z: Any) -> tuple[Any, Any]:
        root = self._root(xp.finfo(z.dtype))
        h = xp.hypot(z, xp.full_like(z, root))  # sqrt(z² + ε), no overflow
        return 2.0 * xp.log(h), 2.0 * (z / h) / h

    def _kernel_params(self, dtype: Any) -> tuple[int, int, float]:
        import numpy as np

        from ..kernels.spherical import SPHERICAL

        return SPHERICAL, 2, self._root(np.finfo(dtype))


class LogSphericalSoftmax(SphericalSoftmax):
    r"""Log-spherical softmax: :math:`\log y = \log(z^2+\varepsilon) - \log\sum(z^2+\varepsilon)`.

    Jacobian :math:`\mathrm{diag}(q) - \mathbf 1 r^\top`, :math:`q = 2z/(z^2+\varepsilon)`;
    VJP :math:`q \odot g - r \sum g` (see :class:`SphericalSoftmax`).

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> np.exp(gk.LogSphericalSoftmax(eps=1.0)(np.array([-1.0, 0.0, 2.0]))).round(8)
    array([0.25 , 0.125, 0.625])
    """

    name = "log_spherical_softmax"
    output_range = (-math.inf, 0.0)
    _inner_cls = LogSoftmax
