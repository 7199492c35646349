"""numba kernels for softmax / log-softmax along an axis: forward, VJP and JVP.

Each row (the class axis, moved last and made contiguous) is processed by one
thread, in a few passes that stay in cache. Semantics equal the portable path:
masked entries arrive as ``-inf``; a row with no live entry gives 0 (``-inf``);
``+inf`` entries share the mass; a NaN logit makes its row NaN. Where a row spans
more than the float range (``z - max z`` overflows to ``-inf``, the right answer) the
same ``RuntimeWarning`` as NumPy's on the portable path is emitted.
"""

from __future__ import annotations

import math
import warnings
from functools import cache
from typing import Any

import numpy as np

from ._cache import njit
from ._exp import FASTMATH, row_kernel, row_max
from ._exp import exp as _exp

__all__ = ["forward", "jacobian", "jvp", "rows", "unrows", "vjp"]


@row_kernel(counts=True)
def _forward_rows(lo, hi, x, out, inv_t, neg_inf, log, big, check_t):  # type: ignore[no-untyped-def]
    # returns how many finite entries had their shift x - max (over) or scaled shift (x - max)/T
    # (over_t) overflow to -inf: the portable path's NumPy warns for those (and a third count, 0)
    x, out = x[lo:hi], out[lo:hi]  # rows lo..hi as rows 0.. (see row_kernel)
    m = x.shape[1]
    over = 0
    over_t = 0
    for i in range(x.shape[0]):
        mx = row_max(x, i, neg_inf)  # NaN is skipped here; it reaches the sum below and spreads over the row
        if mx == neg_inf or mx == -neg_inf:  # rare rows: check for NaN explicitly
            for j in range(m):
                if x[i, j] != x[i, j]:
                    mx = x[i, j]
        if mx != mx:  # noqa: PLR0124 - a NaN logit makes its row NaN
            for j in range(m):
                out[i, j] = mx
        elif mx == neg_inf:  # no live entry
            for j in range(m):
                out[i, j] = neg_inf if log else 0.0
        elif mx == -neg_inf:  # +inf entries share the mass
            count = 0
            for j in range(m):
                count += x[i, j] == mx
            share = 1.0 / count
            for j in range(m):
                if log:
                    out[i, j] = math.log(share) if x[i, j] == mx else neg_inf
                else:
                    out[i, j] = share if x[i, j] == mx else 0.0
        else:
            if mx >= big or check_t:  # only then can a shift overflow: a separate pass, off the common path
                o, ot = shift_overflows(x, i, mx, inv_t, neg_inf)
                over += o
                over_t += ot
            if log:
                total = mx - mx
                for j in range(m):
                    total += _exp((x[i, j] - mx) * inv_t)
                log_total = math.log(total)
                for j in range(m):
                    out[i, j] = (x[i, j] - mx) * inv_t - log_total
            else:
                total = mx - mx
                for j in range(m):
                    e = _exp((x[i, j] - mx) * inv_t)
                    out[i, j] = e
                    total += e
                inv = 1.0 / total
                for j in range(m):
                    out[i, j] = out[i, j] * inv
    return over, over_t, 0


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def shift_overflows(x, i, mx, inv_t, neg_inf):  # type: ignore[no-untyped-def]
    """How many finite entries of row ``i`` have ``x - mx`` (and ``(x - mx)·(1/T)``) overflow to -inf.

    ``x - mx`` can overflow only where ``mx >= max·eps/4`` (``x >= -max`` and rounding to nearest),
    the scaled shift only where ``T < 1`` and ``|x| > max·T/2`` (``scaled_may_overflow``): the kernels
    call this for such rows only."""
    o = 0
    ot = 0
    for j in range(x.shape[1]):
        d = x[i, j] - mx
        o += (d == neg_inf) & (x[i, j] != neg_inf)
        ot += (d * inv_t == neg_inf) & (d != neg_inf)
    return o, ot


@cache
def overflow_bound(dtype: Any) -> Any:
    """The row maximum from which ``x - max`` can overflow (``shift_overflows``); cached per dtype (a head calls it
    per batch)."""
    info = np.finfo(dtype)
    return dtype.type(info.max * info.eps / 4)


def scaled_may_overflow(x: np.ndarray, temperature: float) -> bool:
    """Whether ``(x - max)/T`` can overflow somewhere: only for ``T < 1`` and ``|x|`` above ``max·T/2``
    (two vectorized reductions instead of a per-row pass in the kernel)."""
    if temperature >= 1.0:
        return False
    lim = float(np.finfo(x.dtype).max) * temperature / 2
    hi, lo = x.max(initial=-np.inf), x.min(initial=np.inf)
    if -lim <= lo and hi <= lim:
        return False
    if np.isfinite(hi) and np.isfinite(lo):
        return True
    a = np.abs(x)  # ±inf (or NaN) present: only finite entries can overflow a shift
    return bool(np.any((a > lim) & (a < np.inf)))


def warn_overflow(over: int, over_t: int) -> None:
    """Emit what NumPy emits on the portable path when a row spans more than the float range:
    ``z - max z`` overflowing (subtract), or ``(z - max z) / T`` (divide)."""
    if over:
        warnings.warn("overflow encountered in subtract", RuntimeWarning, stacklevel=4)
    if over_t:
        warnings.warn("overflow encountered in divide", RuntimeWarning, stacklevel=4)


@row_kernel
def _softmax_project(lo, hi, y, g, out, inv_t):  # type: ignore[no-untyped-def]
    # y ⊙ (g - <g, y>) / T, entries with y == 0 contributing nothing even where g is inf
    y, g, out = y[lo:hi], g[lo:hi], out[lo:hi]  # rows lo..hi as rows 0.. (see row_kernel)
    m = y.shape[1]
    zero = inv_t - inv_t
    for i in range(y.shape[0]):
        dot = zero
        for j in range(m):
            dot += y[i, j] * g[i, j] if y[i, j] != 0 else zero
        for j in range(m):
            out[i, j] = y[i, j] * (g[i, j] - dot) * inv_t if y[i, j] != 0 else zero


@row_kernel
def _log_softmax_project(lo, hi, y, g, out, inv_t, neg_inf, jvp):  # type: ignore[no-untyped-def]
    # VJP: (g - p Σg) / T;  JVP: (v - <v, p>) / T;  0 where y == -inf (a dead entry)
    y, g, out = y[lo:hi], g[lo:hi], out[lo:hi]  # rows lo..hi as rows 0.. (see row_kernel)
    m = y.shape[1]
    zero = inv_t - inv_t
    for i in range(y.shape[0]):
        acc = zero
        if jvp:
            for j in range(m):
                acc += g[i, j] * _exp(y[i, j]) if y[i, j] != neg_inf else zero
            for j in range(m):
                out[i, j] = (g[i, j] - acc) * inv_t if y[i, j] != neg_inf else zero
        else:
            for j in range(m):
                acc += g[i, j] if y[i, j] != neg_inf else zero
            for j in range(m):
                out[i, j] = (g[i, j] - _exp(y[i, j]) * acc) * inv_t if y[i, j] != neg_inf else zero


def rows(a: np.ndarray, axis: int) -> np.ndarray:
    """``a`` with ``axis`` last, C-contiguous, as a 2-d (rows, n) array."""
    if axis == a.ndim - 1 and a.flags.c_contiguous:  # the common case: a view, without moveaxis
        return a.reshape(-1, a.shape[-1])
    moved = np.moveaxis(a, axis, -1)
    return np.ascontiguousarray(moved).reshape(-1, moved.shape[-1])


def unrows(out: np.ndarray, like: np.ndarray, axis: int) -> np.ndarray:
    """``out`` (from :func:`rows`) back in the shape of ``like``, ``axis`` in place."""
    if axis == like.ndim - 1:
        return out.reshape(like.shape)
    return np.moveaxis(out.reshape(np.moveaxis(like, axis, -1).shape), -1, axis)


def forward(x: np.ndarray, axis: int, mask: Any, temperature: float, log: bool) -> np.ndarray | None:
    """Softmax (``log=False``) or log-softmax of ``x`` along ``axis``; masked entries excluded.

    None for log-softmax with ``T > 1`` on a row spanning more than the float range (the caller
    uses the portable path, which keeps ``(z - max)/T`` finite there)."""
    check_t = scaled_may_overflow(x, temperature)
    if mask is not None:
        x = np.where(mask, x, x.dtype.type(-np.inf))
    xr = rows(x, axis)
    out = np.empty_like(xr)
    t = xr.dtype.type
    over, over_t, _ = _forward_rows(xr.size)(xr, out, t(1.0 / temperature), t(-np.inf), log,
                                             overflow_bound(xr.dtype), check_t)
    if over and log and temperature > 1.0:
        return None  # (z - max)/T may fit where z - max overflowed: the portable path computes it (and warns)
    warn_overflow(over, over_t)
    return unrows(out, x, axis)


def _project(y: np.ndarray, g: np.ndarray, axis: int, temperature: float, log: bool, jvp: bool) -> np.ndarray:
    yr, gr = rows(y, axis), rows(g, axis)
    out = np.empty_like(yr)
    t = yr.dtype.type
    if log:
        _log_softmax_project(yr.size)(yr, gr, out, t(1.0 / temperature), t(-np.inf), jvp)
    else:  # the softmax Jacobian is symmetric: VJP and JVP are the same product
        _softmax_project(yr.size)(yr, gr, out, t(1.0 / temperature))
    return unrows(out, y, axis)


def vjp(y: np.ndarray, g: np.ndarray, axis: int, temperature: float, log: bool) -> np.ndarray:
    """The VJP given the forward output ``y``."""
    return _project(y, g, axis, temperature, log, jvp=False)


def jvp(y: np.ndarray, v: np.ndarray, axis: int, temperature: float, log: bool) -> np.ndarray:
    """The JVP given the forward output ``y``."""
    return _project(y, v, axis, temperature, log, jvp=True)


@row_kernel
def _jacobian_rows(lo, hi, y, p, out, inv_t, neg_inf, log):  # type: ignore[no-untyped-def]
    # softmax: (δ_ab y_a - y_a y_b) / T;  log-softmax: (δ_ab - p_b) / T, rows with y_a = -inf zero
    y, p, out = y[lo:hi], p[lo:hi], out[lo:hi]  # rows lo..hi as rows 0.. (see row_kernel)
    n = y.shape[1]
    zero = inv_t - inv_t
    for i in range(y.shape[0]):
        for a in range(n):
            ya = y[i, a]
            if log:
                if ya == neg_inf:
                    for b in range(n):
                        out[i, a, b] = zero
                else:
                    for b in range(n):
                        out[i, a, b] = -p[i, b] * inv_t
                    out[i, a, a] += inv_t
            else:
                c = -ya * inv_t
                for b in range(n):
                    out[i, a, b] = c * y[i, b]
                out[i, a, a] += ya * inv_t


def jacobian(y: np.ndarray, temperature: float, log: bool) -> np.ndarray:
    """The batched Jacobian ``(..., n, n)`` from ``y`` (class axis last), written once, in parallel.

    softmax: ``(diag(y) - y yᵀ) / T``; log-softmax: ``(I - 1 pᵀ) / T`` with dead rows 0.
    """
    n = y.shape[-1]
    yr = np.ascontiguousarray(y).reshape(-1, n)
    out = np.empty((yr.shape[0], n, n), dtype=y.dtype)
    t = y.dtype.type
    _jacobian_rows(out.size)(yr, np.exp(yr) if log else yr, out, t(1.0 / temperature), t(-np.inf), log)
    return out.reshape(y.shape + (n,))
