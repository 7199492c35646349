"""Softmax and log-softmax along an axis, with temperature and ``where=`` masks.

Semantics shared by both (tested, and stated in the README):

* the maximum is subtracted before ``exp``, so logits of any size are safe;
* an entry that is masked out (``where=False``) or equal to ``-inf`` takes no
  part: probability 0 (log-probability ``-inf``) and zero gradient;
* a row with no live entry gives all zeros (log: all ``-inf``) and a zero
  gradient, never NaN; a NaN logit makes its whole row NaN (as in PyTorch);
* a row containing ``+inf`` splits its mass equally among the ``+inf`` entries
  (the limit of growing logits).
"""

from __future__ import annotations

from typing import Any

from array_api_compat import device

from .._array import branch_free, check_positive
from ..base import AxisActivation

__all__ = ["LogSoftmax", "Softmax", "shifted_logits"]


def shifted_logits(xp: Any, z: Any, axis: int, mask: Any, temperature: float) -> Any:
    """Return ``(z - max z) / T`` along ``axis`` with ``-inf`` at masked entries.

    Rows whose maximum is ``+inf`` get 0 at the ``+inf`` entries and ``-inf``
    elsewhere; rows with no live entry are all ``-inf``.
    """
    general = branch_free(z)  # no branch on a device's (or a tracer's) values
    if mask is not None:
        z = xp.where(mask, z, -xp.inf)
    m = xp.max(z, axis=axis, keepdims=True)
    if not general and bool(xp.all(xp.isfinite(m))):  # the common case, decided on the row maxima only
        s = z - m
    else:
        s = z - xp.where(xp.isfinite(m) | xp.isnan(m), m, 0.0)  # a NaN row stays NaN without exp overflowing
        s = xp.where(m == xp.inf, xp.where(z == xp.inf, 0.0, xp.full_like(z, -xp.inf)), s)
    if temperature == 1.0:
        return s
    if temperature > 1.0 and (general or bool(xp.any((s == -xp.inf) & xp.isfinite(z)))):
        # z - max overflowed (a row spanning more than the float range) but (z - max)/T may fit:
        # halve first (exact), divide, double; the overflow warning of z - max stays, as without T
        half = (0.5 * z - 0.5 * xp.where(xp.isfinite(m), m, 0.0)) / temperature
        return xp.where((s == -xp.inf) & xp.isfinite(z) & xp.isfinite(m), 2.0 * half, s / temperature)
    return s / temperature


def exp_and_sum(xp: Any, s: Any, axis: int) -> tuple[Any, Any]:
    """``exp(s)`` and its sum along ``axis``, the sum replaced by 1 in empty rows."""
    e = xp.exp(s)
    total = xp.sum(e, axis=axis, keepdims=True)
    return e, xp.where(total == 0, 1.0, total)  # empty rows; NaN stays NaN


class _Tempered(AxisActivation):
    def __init__(self, axis: int = -1, temperature: float = 1.0) -> None:
        super().__init__(axis)
        self.temperature = check_positive(temperature, "temperature")



def _kernel(xp: Any, *arrays: Any) -> Any:
    """The numba kernels module when they can take these arrays, else None."""
    from .. import kernels

    if not kernels.usable(xp, *arrays):
        return None
    from ..kernels import softmax as fast

    return fast


class Softmax(_Tempered):
    r"""Softmax with temperature along ``axis``.

    Forward: :math:`y = \exp((z - \max z)/T) / \sum \exp((z - \max z)/T)`.

    Jacobian: :math:`J = (\mathrm{diag}(y) - y y^\top) / T` — not diagonal: every
    output depends on every input, which is why an elementwise "derivative"
    :math:`y(1-y)` multiplied into a loss gradient is wrong.

    VJP: :math:`y \odot (g - \langle g, y\rangle) / T`; JVP: :math:`y \odot (v - \langle v, y\rangle) / T`.

    Parameters
    ----------
    axis : int
        The class axis.
    temperature : float
        :math:`T > 0`.

    Notes
    -----
    Methods accept ``where=``: a boolean mask broadcastable to ``x``; see the module notes.

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> sm = gk.Softmax()
    >>> sm(np.array([1.0, 2.0])).round(8)
    array([0.26894142, 0.73105858])
    >>> sm.jacobian(np.array([1.0, 2.0])).round(8)
    array([[ 0.19661193, -0.19661193],
           [-0.19661193,  0.19661193]])
    >>> sm(np.array([1.0, 2.0, 50.0]), where=np.array([True, True, False])).round(8)
    array([0.26894142, 0.73105858, 0.        ])
    """

    name = "softmax"
    output_range = (0.0, 1.0)

    def compute_forward(self, xp: Any, x: Any, axis: int, mask: Any) -> Any:
        if fast := _kernel(xp, x, mask):
            return fast.forward(x, axis, mask, self.temperature, log=False)
        e, total = exp_and_sum(xp, shifted_logits(xp, x, axis, mask, self.temperature), axis)
        return e / total

    def _project(self, xp: Any, y: Any, g: Any, axis: int) -> Any:
        if branch_free(y, g) or not bool(xp.all(xp.isfinite(g))):
            g = xp.where(y > 0, g, 0.0)  # entries with y == 0 contribute nothing, even if g is inf
        out = y * (g - xp.sum(g * y, axis=axis, keepdims=True))
        return out if self.temperature == 1.0 else out / self.temperature

    def compute_vjp(self, xp: Any, x: Any, y: Any, g: Any, axis: int, mask: Any) -> Any:
        if fast := _kernel(xp, y, g):
            return fast.vjp(y, g, axis, self.temperature, log=False)
        return self._project(xp, y, g, axis)

    def compute_jvp(self, xp: Any, x: Any, y: Any, v: Any, axis: int, mask: Any) -> Any:
        return self.compute_vjp(xp, x, y, v, axis, mask)  # J is symmetric

    def compute_jacobian(self, xp: Any, x: Any, y: Any, mask: Any) -> Any:
        if fast := _kernel(xp, y):
            return fast.jacobian(y, self.temperature, log=False)
        eye = xp.eye(y.shape[-1], dtype=y.dtype, device=device(y))
        return (y[..., :, None] * eye - y[..., :, None] * y[..., None, :]) / self.temperature


class LogSoftmax(_Tempered):
    r"""Log-softmax with temperature along ``axis``.

    Forward: :math:`y = (z - \max z)/T - \log\sum\exp((z - \max z)/T)`.

    Jacobian: :math:`J = (I - \mathbf 1 p^\top)/T` with :math:`p = e^y`.

    VJP: :math:`(g - p \sum g)/T`; JVP: :math:`(v - \langle v, p\rangle)/T`.

    Masked and ``-inf`` entries give ``-inf`` and zero gradient (their output
    cannot change). See :class:`Softmax` for the parameters.

    Examples
    --------
    >>> import numpy as np, gradkit as gk
    >>> gk.LogSoftmax()(np.array([1e8, 1e8], dtype=np.float32))
    array([-0.6931472, -0.6931472], dtype=float32)
    >>> gk.LogSoftmax().vjp(np.array([1.0, 2.0]), np.array([1.0, 0.0])).round(8)
    array([ 0.73105858, -0.73105858])
    """

    name = "log_softmax"
    output_range = (-float("inf"), 0.0)

    def compute_forward(self, xp: Any, x: Any, axis: int, mask: Any) -> Any:
        if (fast := _kernel(xp, x, mask)) and (out := fast.forward(x, axis, mask, self.temperature, log=True)) is not None:
            return out
        s = shifted_logits(xp, x, axis, mask, self.temperature)
        _, total = exp_and_sum(xp, s, axis)
        return s - xp.log(total)

    def _project(self, xp: Any, y: Any, g: Any, axis: int, reduce_with_p: bool) -> Any:
        live = ~(y == -xp.inf)  # NaN counts as live, so it propagates
        all_live = not branch_free(y, g) and bool(xp.all(live))
        if not all_live:
            g = xp.where(live, g, 0.0)
        p = xp.exp(y)
        if reduce_with_p:  # JVP: <v, p>
            out = g - xp.sum(g * p, axis=axis, keepdims=True)
        else:  # VJP: p * sum(g)
            out = g - p * xp.sum(g, axis=axis, keepdims=True)
        if not all_live:
            out = xp.where(live, out, 0.0)
        return out if self.temperature == 1.0 else out / self.temperature

    def compute_vjp(self, xp: Any, x: Any, y: Any, g: Any, axis: int, mask: Any) -> Any:
        if fast := _kernel(xp, y, g):
            return fast.vjp(y, g, axis, self.temperature, log=True)
        return self._project(xp, y, g, axis, reduce_with_p=False)

    def compute_jvp(self, xp: Any, x: Any, y: Any, v: Any, axis: int, mask: Any) -> Any:
        if fast := _kernel(xp, y, v):
            return fast.jvp(y, v, axis, self.temperature, log=True)
        return self._project(xp, y, v, axis, reduce_with_p=True)

    def compute_jacobian(self, xp: Any, x: Any, y: Any, mask: Any) -> Any:
        if fast := _kernel(xp, y):
            return fast.jacobian(y, self.temperature, log=True)
        eye = xp.eye(y.shape[-1], dtype=y.dtype, device=device(y))
        jac = eye - xp.exp(y)[..., None, :]
        return xp.where((y == -xp.inf)[..., :, None], 0.0, jac) / self.temperature
