"""numba kernels for α-entmax by bisection along an axis: forward, VJP and JVP, with per-row α.

Forward: the bisection of the portable path (:mod:`gradkit.activations.entmax_bisect`) on
``u = (α-1)(z - max z)``, bracket ``[-1, -n^(1-α)]``, then one Newton step on the support found (kept inside the last bracket), over the
*candidates* only: τ >= -1, so an entry with ``u <= -1`` is never in the support and adds
nothing to the mass at any midpoint. One pass collects the candidates into a scratch buffer
(in cache), the bisection runs on it, and stops once the midpoint equals the lower end (every
later step would leave it there: the mass at the lower end is >= 1 by construction), so a
float32 row takes about 24 steps and a float64 row about 50, whatever ``n_iter`` says above.
``y = (u - τ)^{1/(α-1)}`` has exact special cases for ``1/(α-1)`` in {1, 2, 1/2}.

VJP / JVP: ``s ⊙ g_S - s <s, g_S>/Σs`` with ``s = y^{2-α}`` on the support (0 off it), one
row pass (the Jacobian is symmetric).

Semantics equal the portable path: masked entries arrive as ``-inf``; a row with no live
entry gives zeros; ``+inf`` entries share the mass equally; a NaN score makes its row NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._cache import njit
from ._exp import FASTMATH, row_kernel, row_max
from .softmax import rows, unrows

__all__ = ["forward", "jvp", "newton_slack", "vjp"]


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def _root(d, beta, kind, zero):  # type: ignore[no-untyped-def]
    """``max(d, 0) ** beta`` (kind 1: beta = 1, 2: beta = 2, 3: beta = 1/2, 0: any); NaN stays NaN."""
    if not d > zero:
        return d if d != d else zero  # noqa: PLR0124
    if kind == 1:
        return d
    if kind == 2:
        return d * d
    if kind == 3:
        return np.sqrt(d)
    return d**beta


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def _kind(beta, one):  # type: ignore[no-untyped-def]
    if beta == one:
        return 1
    if beta == one + one:
        return 2
    if beta + beta == one:
        return 3
    return 0


@row_kernel
def _forward_rows(lo, hi, x, prm, out, n_iter, normalize, slack):  # type: ignore[no-untyped-def]
    x, prm, out = x[lo:hi], prm[lo:hi], out[lo:hi]  # rows lo..hi as rows 0.. (see row_kernel)
    m = x.shape[1]
    buf = np.empty(m, dtype=x.dtype)
    for i in range(x.shape[0]):
        am1 = prm[i, 0]  # α - 1, 1/(α - 1) and the bracket's width, rounded from float64 as on the portable path
        beta = prm[i, 1]
        one = am1 / am1
        zero = one - one
        neg_inf = -one / zero
        far = -(one + one)
        kind = _kind(beta, one)
        mx = row_max(x, i, neg_inf)  # skips NaN
        bad = False
        for j in range(m):
            bad |= x[i, j] != x[i, j]
        if bad:  # a NaN score makes its row NaN
            for j in range(m):
                out[i, j] = zero / zero
            continue
        if mx == neg_inf:  # no live entry
            for j in range(m):
                out[i, j] = zero
            continue
        c = 0
        if mx == -neg_inf:  # +inf entries at u = 0, the rest far
            for j in range(m):
                if x[i, j] == mx:
                    buf[c] = zero
                    c += 1
                    out[i, j] = zero
                else:
                    out[i, j] = far
        else:
            lo_x = mx - (one + one) / am1
            for j in range(m):
                xj = x[i, j]
                u = am1 * (xj - mx) if xj >= lo_x else far
                out[i, j] = u
                if u > -one:
                    buf[c] = u
                    c += 1
        # the portable bracket: low = -1, width 1 - n^(1-α), halved n_iter times
        low = -one
        dm = prm[i, 2]
        mid = low
        for it in range(n_iter):
            dm = dm / (one + one)
            mid = low + dm
            if mid == low:  # the bracket cannot shrink any more: every later midpoint is low
                for _ in range(n_iter - 1 - it):  # dm ends as on the portable path (exact halvings)
                    dm = dm / (one + one)
                break
            mass = zero
            for k in range(c):
                mass += _root(buf[k] - mid, beta, kind, zero)
            if mass >= one:
                low = mid
        # one Newton step on the support found, inside the last bracket [low, low + dm] (the portable path's)
        mass = zero
        slope = zero
        for k in range(c):
            d = buf[k] - mid
            if d > zero:
                mass += _root(d, beta, kind, zero)
                slope += _root(d, beta - one, 1 if beta == one + one else 0, zero)
        tau = mid + (mass - one) / (beta * (slope if slope > zero else one))
        room = dm + slack  # a safety net against wild steps (few bisection steps), not against rounding
        tau = min(max(tau, low - room), low + dm + room)
        total = zero
        for j in range(m):
            yj = _root(out[i, j] - tau, beta, kind, zero)
            out[i, j] = yj
            total += yj
        if normalize and total > zero:
            inv = one / total
            for j in range(m):
                out[i, j] = out[i, j] * inv


@row_kernel
def _project(lo, hi, y, g, power, out):  # type: ignore[no-untyped-def]
    # s ⊙ g_S - s <s, g_S>/Σs with s = y^(2-α) on the support; g_S = g on the support only
    y, g, power, out = y[lo:hi], g[lo:hi], power[lo:hi], out[lo:hi]  # rows lo..hi as rows 0.. (see row_kernel)
    m = y.shape[1]
    for i in range(y.shape[0]):
        p = power[i]  # s = y^p, p = 2 - α
        one = p - p + 1
        zero = one - one
        kind = 1 if p == one else (2 if p == zero else (3 if p + p == one else 0))
        total = zero
        dot = zero
        for j in range(m):
            s = _s(y[i, j], p, kind, zero, one)
            out[i, j] = s  # kept for the second pass: one power per entry
            total += s
            if s > zero:
                dot += s * g[i, j]
        inv = dot / total if total > zero else dot
        off = inv - inv  # off the support the portable 0·g_S - 0·inv: +0, or NaN where inv is not finite
        off = zero if off == zero else off  # (spelled out: fastmath's nsz would give -0 for 0 - 0·inv)
        for j in range(m):
            s = out[i, j]
            out[i, j] = s * g[i, j] - s * inv if s > zero else (off if s == zero else s)


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def _s(yj, p, kind, zero, one):  # type: ignore[no-untyped-def]
    """``y^p`` on the support (``y > 0``), ``y`` itself where it is 0 or NaN."""
    if not yj > zero:
        return yj
    if kind == 1:
        return yj
    if kind == 2:
        return one
    if kind == 3:
        return np.sqrt(yj)
    return yj**p


def newton_slack(n: int, dtype: Any) -> float:
    """How far the Newton step may leave the last bisection bracket (each side, beyond its width): a few
    roundings of the mass, 4·n·eps (|τ| <= 1), so that only a wild step (few bisection steps) is clipped."""
    return 4.0 * n * float(np.finfo(dtype).eps)


def forward(x: np.ndarray, axis: int, mask: Any, prm: np.ndarray, n_iter: int, normalize: bool) -> np.ndarray:
    """α-entmax of ``x`` along ``axis``, equal to the portable bisection; masked entries excluded.

    ``prm[r] = (α - 1, 1/(α - 1), 1 - n^(1-α))`` for row ``r`` of :func:`rows`, in ``x``'s dtype."""
    if mask is not None:
        x = np.where(mask, x, x.dtype.type(-np.inf))
    xr = rows(x, axis)
    out = np.empty_like(xr)
    _forward_rows(xr.size)(xr, prm, out, n_iter, normalize, xr.dtype.type(newton_slack(xr.shape[1], xr.dtype)))
    return unrows(out, x, axis)


def vjp(y: np.ndarray, g: np.ndarray, axis: int, power: np.ndarray) -> np.ndarray:
    """The VJP (and JVP: the Jacobian is symmetric) given the forward output ``y`` and ``2 - α`` per row
    of :func:`rows` (``y``'s dtype)."""
    yr, gr = rows(y, axis), rows(g, axis)
    out = np.empty_like(yr)
    _project(yr.size)(yr, gr, power, out)
    return unrows(out, y, axis)


jvp = vjp
