"""numba kernels for Taylor and spherical softmax and their log forms: forward, VJP and JVP.

Each kernel fuses, in one row pass, what the portable path (:mod:`gradkit.activations.spherical`)
does in several array passes, and it equals that path (tested: float64 rtol 1e-12, float32 1e-5):

* forward (not log): on a row where every live ``φ(z)`` and their sum are finite normal numbers,
  ``y = φ / Σφ`` directly (no ``log``, no ``exp``); any other row (±inf, NaN, overflow of ``φ``,
  underflow, no live entry) takes the portable path's route, the softmax of ``a = log φ(z)``;
* log forms: ``log y = (a - max a) - log Σ exp(a - max a)``, one ``log`` per entry: for Taylor
  order 2 and the spherical map, where every live ``φ(z)`` is a finite normal number, the
  vectorizable ``log`` of :mod:`gradkit.kernels._exp` (within 1 ulp) in one branch-free pass;
  any other row takes the strict per-entry route (libm ``log``, ``hypot``);
* Taylor orders > 2 (forward, and ``q`` of the VJP / JVP): Horner with the row's entries in the inner
  loop (``P(z)`` for ``|z| <= 1``, ``z^k P(1/z)`` beyond, selected per entry), which LLVM vectorizes;
  strict IEEE arithmetic as the scalar path (order 4 at 4096×1024: 139 → 40 ms forward + VJP);
* VJP / JVP: ``q = φ'/φ`` per entry without ``log`` (``2u/(u² + c)`` for Taylor order 2 and the
  spherical map where that is a finite normal number, ``hypot`` as the portable path elsewhere),
  then the softmax / log-softmax product of the portable path, given the forward output.

Semantics equal the portable path: a masked entry gives 0 (log: ``-inf``) and zero gradient, an
infinite score of either sign takes the mass (shared equally with other infinite scores), a NaN
score makes its row NaN, a row with no live entry gives 0 (``-inf``). ``a`` is at most about
``2·log(max)``, so no shift can overflow here (unlike softmax on raw logits): no warning to emit.
``φ`` off the common case is evaluated in strict IEEE arithmetic (no fastmath), as NumPy does.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

from ._cache import njit
from ._exp import FASTMATH, row_kernel, row_max
from ._exp import exp as _exp
from ._exp import log as _log
from .softmax import rows, unrows

__all__ = ["SPHERICAL", "TAYLOR", "TAYLOR2", "forward", "jvp", "vjp"]

#: the kinds of φ: Taylor of order 2, Taylor of a higher even order, spherical
TAYLOR2, TAYLOR, SPHERICAL = 0, 1, 2

#: φ itself in strict IEEE arithmetic, as the portable path: under ``arcp``/``reassoc`` ``2·(z/h)/h``
#: becomes ``2z/(h·h)``, and ``h·h`` underflows to 0 for tiny ε (then 0·inf = NaN). Not inlined at
#: numba's level, so the flags of the calling kernel do not apply (LLVM inlines it, flags kept).
_strict = njit(fastmath=False, error_model="numpy", inline="never")
_inlined = njit(fastmath=FASTMATH, error_model="numpy", inline="always")


@_strict
def _horner(c, w, lo, hi, step):  # type: ignore[no-untyped-def]
    # Σ over c[lo], c[lo+step], ... as in the portable _horner: start at the last, go back to the first
    out = c[hi]
    k = hi - step
    while (k - lo) * step >= 0:
        out = out * w + c[k]
        k -= step
    return out


@_strict
def _log_phi(z, kind, c, kf, root, rr, tiny):  # type: ignore[no-untyped-def]
    """``log φ(z)`` for finite ``z`` (NaN gives NaN), in the dtype of ``z``.

    ``c[i] = 1/i!`` for Taylor (its order is ``kf``, also as a float of the dtype); ``rr = root²``
    for the spherical map (``root = sqrt(ε)``); ``tiny`` the dtype's smallest normal number.
    Where ``z² + ε`` (``(z + 1)² + 1``) is a finite normal number it is formed directly (one ``log``);
    elsewhere ``hypot``, as the portable path does everywhere."""
    one = c[0]
    two = one + one
    if kind == SPHERICAL:
        d = z * z + rr
        if d >= tiny and d < np.inf:
            return math.log(d)
        return two * math.log(math.hypot(z, root))
    if kind == TAYLOR2:
        u = z + one
        d = u * u + one
        if d < np.inf:
            return math.log(d) - math.log(two)
        return two * math.log(math.hypot(u, one)) - math.log(two)
    order = c.shape[0] - 1
    if abs(z) > one:  # φ = z^k P(1/z)
        p = _horner(c, one / z, order, 0, -1)  # Σ_j w^j / (k-j)!: Horner from c[0] (of w^k) to c[k]
        return kf * math.log(abs(z)) + math.log(p)
    return math.log(_horner(c, z, 0, order, 1))


@_strict
def _phi(z, kind, c, rr):  # type: ignore[no-untyped-def]
    """``φ(z)`` for finite ``z`` formed directly; may overflow to inf or underflow (the caller checks)."""
    one = c[0]
    if kind == SPHERICAL:
        return z * z + rr
    if kind == TAYLOR2:
        u = z + one
        return (u * u + one) / (one + one)
    order = c.shape[0] - 1
    if abs(z) > one:  # z^k P(1/z): no cancellation for negative z
        z2 = z * z
        zk = one
        for _ in range(order // 2):
            zk *= z2
        return zk * _horner(c, one / z, order, 0, -1)
    return _horner(c, z, 0, order, 1)


@_strict
def _q_finite(z, kind, c, root, rr, tiny):  # type: ignore[no-untyped-def]
    """``q = φ'(z)/φ(z)`` for finite ``z`` (NaN gives NaN); no ``log``."""
    one = c[0]
    two = one + one
    if kind == SPHERICAL:
        d = z * z + rr
        if d >= tiny and d < np.inf:
            return two * z / d
        h = math.hypot(z, root)
        return two * (z / h) / h
    if kind == TAYLOR2:
        u = z + one
        d = u * u + one
        if d < np.inf:
            return two * u / d
        h = math.hypot(u, one)
        return two * (u / h) / h
    order = c.shape[0] - 1
    if abs(z) > one:  # φ' = z^(k-1) Q(1/z): q = w Q(w) / P(w)
        w = one / z
        return w * _horner(c, w, order - 1, 0, -1) / _horner(c, w, order, 0, -1)
    return _horner(c, z, 0, order - 1, 1) / _horner(c, z, 0, order, 1)


@_inlined
def _q(x, mk, has_mask, i, j, kind, c, root, rr, tiny):  # type: ignore[no-untyped-def]
    z = x[i, j]
    zero = tiny - tiny
    if has_mask and not mk[i, j]:
        return zero  # a masked score (even NaN or inf) must not reach the gradient
    if z == np.inf or z == -np.inf:
        return zero  # the limit of φ'/φ at ±inf
    if kind != TAYLOR:  # the common case inline (vectorizable): 2u/(u² + c), c = ε or 1, when normal
        one = c[0]
        u = z if kind == SPHERICAL else z + one
        d = u * u + (rr if kind == SPHERICAL else one)
        if d >= tiny and d < np.inf:
            return (one + one) * u / d
    return _q_finite(z, kind, c, root, rr, tiny)


@_inlined
def _phi_inline(z, kind, c, rr):  # type: ignore[no-untyped-def]
    if kind == TAYLOR:
        return _phi(z, kind, c, rr)
    one = c[0]
    u = z if kind == SPHERICAL else z + one
    d = u * u + (rr if kind == SPHERICAL else one)
    return d if kind == SPHERICAL else d * (one / (one + one))


@row_kernel
def _forward_rows(lo, hi, x, mk, has_mask, out, kind, c, kf, root, rr, tiny, log, log2):  # type: ignore[no-untyped-def]
    x, mk, out = x[lo:hi], mk[lo:hi], out[lo:hi]  # rows lo..hi as rows 0.. (see row_kernel)
    m = x.shape[1]
    one = c[0]
    zero = one - one
    for i in range(x.shape[0]):
        done = False
        if not log:  # y = φ / Σφ directly where every live φ is a finite normal number and so is the sum
            if kind == TAYLOR:
                _phi_taylor_row(x, i, out, c)
            total = zero
            plain = True
            for j in range(m):
                if has_mask and not mk[i, j]:
                    out[i, j] = zero
                else:  # NaN and ±inf give NaN or inf: not plain
                    p = out[i, j] if kind == TAYLOR else _phi_inline(x[i, j], kind, c, rr)
                    out[i, j] = p
                    total += p
                    plain = plain and p >= tiny and p < np.inf
            if plain and total >= tiny and total < np.inf:
                inv = one / total
                for j in range(m):
                    out[i, j] = out[i, j] * inv
                done = True
        elif kind != TAYLOR and _log_phi_plain(x, mk, has_mask, out, i, kind, c, rr, tiny, log2):
            _softmax_of_a(out, i, row_max(out, i, zero - np.inf), False, c, log)
            done = True
        if not done:  # softmax (log-softmax) of a = log φ, as the portable path
            _log_phi_row(x, mk, has_mask, out, i, kind, c, kf, root, rr, tiny, log)


@_strict
def _horner_step(acc, x, i, c, s, order, one):  # type: ignore[no-untyped-def]
    """Step ``s`` (1..order) of Horner for a whole row at once (vectorizable: the loop over entries is inside
    the loop over coefficients): ``P(z)`` where ``|z| <= 1``, ``P(1/z)`` with reversed coefficients elsewhere,
    the two sums of the strict :func:`_horner`. ``acc`` holds the partial sums of row ``i`` (of ``out``)."""
    m = x.shape[1]
    c_small = c[order - s]
    c_big = c[s]
    for j in range(m):
        z = x[i, j]
        small = abs(z) <= one
        w = z if small else one / z
        acc[i, j] = acc[i, j] * w + (c_small if small else c_big)


@_strict
def _phi_taylor_row(x, i, out, c):  # type: ignore[no-untyped-def]
    """``φ(z)`` of a Taylor order > 2 for row ``i`` into ``out[i]``: ``P(z)`` for ``|z| <= 1``, ``z^k P(1/z)``
    beyond (no cancellation at negative ``z``), as :func:`_phi`, with the row's entries in the inner loops."""
    m = x.shape[1]
    one = c[0]
    order = c.shape[0] - 1
    for j in range(m):
        out[i, j] = c[order] if abs(x[i, j]) <= one else c[0]
    for s in range(1, order + 1):
        _horner_step(out, x, i, c, s, order, one)
    for j in range(m):
        z = x[i, j]
        if abs(z) > one:
            z2 = z * z
            zk = one
            for _ in range(order // 2):
                zk *= z2
            out[i, j] = zk * out[i, j]


@_strict
def _q_taylor_row(x, mk, has_mask, i, out, buf, c):  # type: ignore[no-untyped-def]
    """``q = φ'/φ`` of a Taylor order > 2 for row ``i`` into ``out[i]`` (masked, ±inf: 0; NaN: NaN), as
    :func:`_q`: ``Q(z)/P(z)`` for ``|z| <= 1``, ``w Q(w)/P(w)`` with ``w = 1/z`` beyond. ``buf``: a scratch
    array of one row (``Q``'s partial sums)."""
    m = x.shape[1]
    one = c[0]
    zero = one - one
    order = c.shape[0] - 1
    for j in range(m):
        small = abs(x[i, j]) <= one
        out[i, j] = c[order] if small else c[0]
        buf[0, j] = c[order - 1] if small else c[0]
    for s in range(1, order + 1):
        _horner_step(out, x, i, c, s, order, one)  # P
        if s < order:  # Q: the coefficients of φ' = c[0..order-1]
            _q_step(buf, x, i, c, s, order, one)
    for j in range(m):
        z = x[i, j]
        small = abs(z) <= one
        w = z if small else one / z  # ±inf: w = 0, q = 0
        q = buf[0, j] / out[i, j] if small else w * buf[0, j] / out[i, j]
        out[i, j] = zero if has_mask and not mk[i, j] else q


@_strict
def _q_step(buf, x, i, c, s, order, one):  # type: ignore[no-untyped-def]
    """Step ``s`` of Horner for ``Q`` (the derivative's coefficients ``c[0..order-1]``) of row ``i`` into ``buf[0]``."""
    m = x.shape[1]
    c_small = c[order - 1 - s]
    c_big = c[s]
    for j in range(m):
        z = x[i, j]
        small = abs(z) <= one
        w = z if small else one / z
        buf[0, j] = buf[0, j] * w + (c_small if small else c_big)


@_inlined
def _log_phi_plain(x, mk, has_mask, out, i, kind, c, rr, tiny, log2):  # type: ignore[no-untyped-def]
    """``a = log φ`` of row ``i`` into ``out[i]`` (masked: ``-inf``) for Taylor order 2 and the spherical map,
    branch-free with the vectorizable ``log``; False where a live ``φ`` is not a finite normal number
    (±inf, NaN, overflow, underflow: the caller redoes the row the strict way)."""
    m = x.shape[1]
    one = c[0]
    zero = one - one
    neg_inf = zero - np.inf
    shift = zero if kind == SPHERICAL else log2
    cc = rr if kind == SPHERICAL else one
    plain = True
    for j in range(m):
        z = x[i, j]
        u = z if kind == SPHERICAL else z + one
        d = u * u + cc
        good = d >= tiny and d < np.inf  # NaN fails
        live = not has_mask or mk[i, j]
        plain &= good or not live
        a = _log(d if good else one) - shift
        out[i, j] = a if live else neg_inf
    return plain


@_inlined
def _log_phi_row(x, mk, has_mask, out, i, kind, c, kf, root, rr, tiny, log):  # type: ignore[no-untyped-def]
    m = x.shape[1]
    neg_inf = tiny - tiny - np.inf
    mx = neg_inf
    nan = False
    for j in range(m):
        z = x[i, j]
        if has_mask and not mk[i, j]:
            a = neg_inf
        elif z == np.inf or z == -np.inf:
            a = -neg_inf  # φ(±inf) = inf
        elif z != z:  # noqa: PLR0124
            a = z
            nan = True
        else:
            a = _log_phi(z, kind, c, kf, root, rr, tiny)
        out[i, j] = a
        if a > mx:  # noqa: PLR1730 - spelled out: a NaN is tracked by its own flag
            mx = a
    _softmax_of_a(out, i, mx, nan, c, log)


@_inlined
def _softmax_of_a(out, i, mx, nan, c, log):  # type: ignore[no-untyped-def]
    """Softmax (log-softmax) of ``a`` in ``out[i]``, in place, given its max (and whether it holds NaN)."""
    m = out.shape[1]
    zero = c[0] - c[0]
    neg_inf = zero - np.inf
    if nan:
        for j in range(m):
            out[i, j] = neg_inf - neg_inf  # NaN
    elif mx == neg_inf:  # no live entry
        for j in range(m):
            out[i, j] = neg_inf if log else zero
    elif mx == -neg_inf:  # infinite scores share the mass
        count = 0
        for j in range(m):
            count += out[i, j] == mx
        share = c[0] / count
        for j in range(m):
            if log:
                out[i, j] = math.log(share) if out[i, j] == mx else neg_inf
            else:
                out[i, j] = share if out[i, j] == mx else zero
    elif log:
        total = mx - mx
        for j in range(m):
            total += _exp(out[i, j] - mx)
        log_total = math.log(total)
        for j in range(m):
            out[i, j] = (out[i, j] - mx) - log_total
    else:
        total = mx - mx
        for j in range(m):
            e = _exp(out[i, j] - mx)
            out[i, j] = e
            total += e
        inv = c[0] / total
        for j in range(m):
            out[i, j] = out[i, j] * inv


@row_kernel
def _project_rows(lo, hi, x, mk, has_mask, y, g, out, kind, c, kf, root, rr, tiny, log, jvp):  # type: ignore[no-untyped-def]
    # VJP q ⊙ inner_vjp(g), JVP inner_jvp(q ⊙ v), inner = softmax / log-softmax of a given its output y
    x, mk, y, g, out = x[lo:hi], mk[lo:hi], y[lo:hi], g[lo:hi], out[lo:hi]  # rows lo..hi as rows 0.. (see row_kernel)
    zero = tiny - tiny
    neg_inf = zero - np.inf
    m = x.shape[1]
    buf = np.empty((1, m), dtype=x.dtype)
    for i in range(x.shape[0]):
        if kind == TAYLOR:
            _q_taylor_row(x, mk, has_mask, i, out, buf, c)
        else:
            for j in range(m):
                out[i, j] = _q(x, mk, has_mask, i, j, kind, c, root, rr, tiny)
        if jvp:
            for j in range(m):
                out[i, j] = out[i, j] * g[i, j]  # w = q ⊙ v
        acc = zero
        if log:
            if jvp:  # w - <w, p> on live entries
                for j in range(m):
                    acc += out[i, j] * _exp(y[i, j]) if y[i, j] != neg_inf else zero
                for j in range(m):
                    out[i, j] = out[i, j] - acc if y[i, j] != neg_inf else zero
            else:  # q ⊙ (g - p Σg) on live entries
                for j in range(m):
                    acc += g[i, j] if y[i, j] != neg_inf else zero
                for j in range(m):
                    out[i, j] = out[i, j] * ((g[i, j] - _exp(y[i, j]) * acc) if y[i, j] != neg_inf else zero)
        elif jvp:  # y ⊙ (w - <w, y>), entries with y == 0 contributing nothing
            for j in range(m):
                acc += y[i, j] * out[i, j] if y[i, j] != 0 else zero
            for j in range(m):
                out[i, j] = y[i, j] * (out[i, j] - acc) if y[i, j] != 0 else zero
        else:  # q ⊙ y ⊙ (g - <g, y>)
            for j in range(m):
                acc += y[i, j] * g[i, j] if y[i, j] != 0 else zero
            for j in range(m):
                out[i, j] = out[i, j] * (y[i, j] * (g[i, j] - acc) if y[i, j] != 0 else zero)


@lru_cache(maxsize=64)
def _constants(dtype: Any, order: int) -> tuple[np.ndarray, Any, Any]:
    """``1/i!`` for ``i <= order``, the smallest normal number and ``log 2``, in ``dtype`` (cached: a training
    loop calls the kernels thousands of times on small batches, where building them showed)."""
    coefficients = np.array([1.0 / math.factorial(i) for i in range(order + 1)], dtype=dtype)
    coefficients.flags.writeable = False
    t = np.dtype(dtype).type
    return coefficients, np.finfo(dtype).smallest_normal, t(math.log(2.0))


_NO_MASK = np.ones((1, 1), dtype=np.bool_)


def _args(x: np.ndarray, mask: Any, axis: int, kind: int, order: int, root: float) -> tuple[Any, ...]:
    t = x.dtype.type
    xr = rows(x, axis)
    mk = rows(mask, axis) if mask is not None else _NO_MASK
    coefficients, tiny, _ = _constants(x.dtype, order)
    return (xr, mk, mask is not None, kind, coefficients, t(order), t(root), t(root) * t(root), tiny)


def forward(x: np.ndarray, axis: int, mask: Any, kind: int, order: int, root: float, log: bool) -> np.ndarray:
    """``softmax(log φ(x))`` (``log=False``) or its log along ``axis``; masked entries excluded.

    ``kind`` is :data:`TAYLOR2`, :data:`TAYLOR` (even ``order`` > 2) or :data:`SPHERICAL` (``root``
    = ``sqrt(ε)``, already clamped to the dtype's normal range by the caller)."""
    xr, *rest = _args(x, mask, axis, kind, order, root)
    out = np.empty_like(xr)
    mk, has_mask, *params = rest
    _forward_rows(xr.size)(xr, mk, has_mask, out, *params, log, _constants(x.dtype, order)[2])
    return unrows(out, x, axis)


def _project(x: np.ndarray, y: np.ndarray, g: np.ndarray, axis: int, mask: Any, kind: int, order: int, root: float,
             log: bool, jvp: bool) -> np.ndarray:
    xr, mk, has_mask, *params = _args(x, mask, axis, kind, order, root)
    yr, gr = rows(y, axis), rows(g, axis)
    out = np.empty_like(xr)
    _project_rows(xr.size)(xr, mk, has_mask, yr, gr, out, *params, log, jvp)
    return unrows(out, x, axis)


def vjp(x: np.ndarray, y: np.ndarray, g: np.ndarray, axis: int, mask: Any, kind: int, order: int, root: float,
        log: bool) -> np.ndarray:
    """The VJP ``q ⊙ J_inner(a)ᵀ g`` given the forward output ``y``."""
    return _project(x, y, g, axis, mask, kind, order, root, log, jvp=False)


def jvp(x: np.ndarray, y: np.ndarray, v: np.ndarray, axis: int, mask: Any, kind: int, order: int, root: float,
        log: bool) -> np.ndarray:
    """The JVP ``J_inner(a) (q ⊙ v)`` given the forward output ``y``."""
    return _project(x, y, v, axis, mask, kind, order, root, log, jvp=True)
