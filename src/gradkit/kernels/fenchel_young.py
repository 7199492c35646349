"""numba kernels for the Fenchel–Young losses of sparsemax and entmax-1.5: half of each item and the gradient ``y - t``.

One pass per row: the sparse map's forward (:func:`gradkit.kernels.sparse.forward_row`, the same code as the
activation's kernel) writes ``y`` into the gradient's row, then the loss is summed and ``y - t`` written in place
while the row is in cache. The target of a row is built there from its label (``ignore_index``, label smoothing,
a mask's live classes) or read from the prepared per-class targets; it is normalized to sum 1 and an item with no
target mass gives loss 0 and gradient 0, as on the portable path (:mod:`gradkit.losses.fenchel_young`), whose
formula this follows term by term:

.. math:: l = 2\\sum_{j:\\,y_j \\ne t_j} (y_j - t_j)\\,(z_j/2 - \\max z/2) - \\Omega(y) + \\Omega(t).

Scores: masked entries arrive as ``-inf`` (they have ``y = t = 0`` and take no part); a NaN score makes its item
and gradient row NaN; ``+inf`` scores share the mass (then ``max z`` counts as 0, as on the portable path).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._array import mark_fresh
from ._cache import njit
from ._exp import FASTMATH, row_kernel
from .softmax import rows, unrows
from .sparse import BLOCK_MAX, block_scratch, forward_block, forward_row

__all__ = ["items"]

#: where a row's targets come from
_SOFT, _LABELS = 0, 1


@njit(fastmath=False, error_model="numpy", inline="never")
def _div(a, b):  # type: ignore[no-untyped-def]
    """``a / b`` in strict IEEE arithmetic: under the kernel's ``arcp`` it would be ``a · (1/b)``, and ``1/b``
    overflows for a subnormal target mass (float32 ``t = [1e-45, 1e-45]``: inf · 1e-45, then NaN). Not inlined
    at numba's level, so the kernel's flags do not reach it; LLVM inlines it, its flags kept."""
    return a / b


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def _terms(x, grad, i, j, tj, shift, half, zero, entmax):  # type: ignore[no-untyped-def]
    """Entry ``j`` of row ``i``: writes ``y - t`` over ``y`` in ``grad``; returns its parts of <y - t, z/2 - max z/2>,
    of Ω(y) and of Ω(t) (up to the factor)."""
    yj = grad[i, j]
    d = yj - tj
    hs = half * x[i, j] - shift
    grad[i, j] = d
    inner = d * hs if d != zero else zero  # 0 where y = t: a -inf score must not reach the loss
    if entmax:
        return inner, yj * np.sqrt(max(yj, zero)), tj * np.sqrt(max(tj, zero))
    return inner, yj * yj, tj * tj


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def _fy_row(x, soft, labels, valid, live, masked, mode, c_keep, c_spread, eps,  # type: ignore[no-untyped-def]
            scale, reach, entmax, omega_factor, grad, out, buf, i):
    """Row ``i``: ``y - t`` into ``grad[i]``, half the item into ``out[i]`` (any row: masks, soft targets, NaN, ±inf)."""
    m = x.shape[1]
    one = scale / scale
    zero = one - one
    half = one / (one + one)
    mx, bad = forward_row(x, i, grad, buf, scale, reach, entmax)
    # the row's target mass, then its normalization (the portable prepare_target + items_with)
    k = -1
    spread = c_spread
    mass = zero
    if mode == _LABELS:
        if not valid[i]:  # ignore_index: no target mass
            for j in range(m):
                grad[i, j] = zero
            out[i] = zero
            return
        k = labels[i]
        if masked:
            if not live[i, k]:
                k = -1  # the label's class is masked: only the smoothing's mass is left
            if eps != zero:
                n_live = zero
                for j in range(m):
                    n_live += one if live[i, j] else zero
                spread = eps / (n_live if n_live > zero else one)
            for j in range(m):
                mass += (c_keep if j == k else zero) + (spread if live[i, j] else zero)
        elif eps != zero:
            for j in range(m):
                mass += (c_keep if j == k else zero) + spread
        else:
            mass = one
    else:
        for j in range(m):
            mass += soft[i, j]
    if not mass > zero:  # no target mass: loss 0, gradient 0
        for j in range(m):
            grad[i, j] = zero
        out[i] = zero
        return
    shift = half * mx if (mx - mx) == zero else zero  # max z / 2 where finite (NaN row, ±inf: 0)
    inner = zero
    omega_y = zero
    omega_t = zero
    if mode == _LABELS:
        # a label's row holds three target values: divided once per row, not per entry (the division
        # is strict IEEE, not vectorized); the same numbers as (c_keep [j = k] + spread [live]) / mass
        t_hit = _div(c_keep + spread, mass)
        t_rest = _div(spread, mass)
        for j in range(m):
            tj = t_hit if j == k else (t_rest if (not masked or live[i, j]) else zero)
            a, b, c = _terms(x, grad, i, j, tj, shift, half, zero, entmax)
            inner += a
            omega_y += b
            omega_t += c
    else:
        for j in range(m):
            a, b, c = _terms(x, grad, i, j, _div(soft[i, j], mass), shift, half, zero, entmax)
            inner += a
            omega_y += b
            omega_t += c
    out[i] = inner - omega_factor * omega_y + omega_factor * omega_t  # half the item
    if bad:  # (max(NaN, 0) may drop the NaN from Ω(y))
        out[i] = zero / zero


@njit(fastmath=FASTMATH, error_model="numpy", inline="never")
def _fy_block(x, labels, valid, i0, rows, xt, ut, vec, c_keep, spread, eps,  # type: ignore[no-untyped-def]
              scale, reach, entmax, omega_factor, grad, out):
    """The loss of rows ``i0`` to ``i0 + rows`` with labels and no mask, short rows: :func:`_fy_row`'s numbers to
    rounding (Ω(t) from the row's two target values), one vector per column
    (:func:`~gradkit.kernels.sparse.forward_block`). Rows marked in ``vec[7]`` are not written: they need
    ``_fy_row``."""
    forward_block(x, i0, rows, xt, ut, vec, scale, reach, entmax)
    m = x.shape[1]
    lanes = xt.shape[1]  # a count read at run time (see kernels.sparse.LANES)
    one = scale / scale
    zero = one - one
    half = one / (one + one)
    mx, mass, t_hit, t_rest, inner, omega_y, omega_t, bad, label = (vec[0], vec[1], vec[2], vec[3], vec[4], vec[5],
                                                                     vec[6], vec[7], vec[8])
    for r in range(rows):
        label[r] = labels[i0 + r]  # a class index, exact in the row's type
    for r in range(rows, lanes):
        label[r] = -one  # lanes past the rows: no class
    for r in range(lanes):
        mass[r] = one if eps == zero else zero
    if eps != zero:
        for j in range(m):
            for r in range(lanes):
                mass[r] += (c_keep if j == label[r] else zero) + spread
    mo = zero
    for j in range(1, m):
        mo += one  # m - 1, in the row's type
    for r in range(lanes):  # each row's two target values (see _fy_row); a division by 1 is exact
        t_hit[r] = c_keep + spread if mass[r] == one else _div(c_keep + spread, mass[r])
        t_rest[r] = spread if mass[r] == one else _div(spread, mass[r])
        inner[r] = zero
        omega_y[r] = zero
        # Ω(t) of a label's row: one entry t_hit, m - 1 entries t_rest
        th, tr = t_hit[r], t_rest[r]
        omega_t[r] = th * np.sqrt(th) + mo * (tr * np.sqrt(tr)) if entmax else th * th + mo * (tr * tr)
    # three loops over the columns, each touching few arrays: LLVM vectorizes a loop over the lanes only where
    # its run-time checks that the arrays do not overlap stay few
    for j in range(m):
        for r in range(lanes):  # Ω(y)
            yj = ut[j, r]
            omega_y[r] += yj * np.sqrt(max(yj, zero)) if entmax else yj * yj
    for j in range(m):
        for r in range(lanes):  # y - t
            ut[j, r] -= t_hit[r] if j == label[r] else t_rest[r]
    for j in range(m):
        for r in range(lanes):  # <y - t, z/2 - max z/2>, 0 where y = t (a -inf score must not reach the loss)
            d = ut[j, r]
            inner[r] += d * (half * xt[j, r] - half * mx[r]) if d != zero else zero
    for r in range(rows):
        if bad[r] != zero:
            continue
        i = i0 + r
        keep = valid[i] and mass[r] > zero  # ignore_index or no target mass: loss 0, gradient 0
        out[i] = inner[r] - omega_factor * omega_y[r] + omega_factor * omega_t[r] if keep else zero
        for j in range(m):
            grad[i, j] = ut[j, r] if keep else zero


@row_kernel
def _fy_rows(lo, hi, x, soft, labels, valid, live, masked, mode, c_keep, c_spread, eps,  # type: ignore[no-untyped-def]
             scale, reach, entmax, omega_factor, grad, out):
    # x: scores with masked entries at -inf; grad receives y then y - t; out half the items
    x, soft, labels, valid, live, grad, out = (  # rows lo..hi as rows 0.. (see row_kernel)
        x[lo:hi], soft[lo:hi], labels[lo:hi], valid[lo:hi], live[lo:hi], grad[lo:hi], out[lo:hi])
    m = x.shape[1]
    blocked = m <= BLOCK_MAX and mode == _LABELS and not masked  # (see sparse.BLOCK_MAX)
    buf, xt, ut, vec = block_scratch(x)
    lanes = xt.shape[1] if blocked else 1
    bad = vec[7]
    n = x.shape[0]
    for i0 in range(0, n, lanes):
        rows = min(lanes, n - i0)
        if blocked:
            _fy_block(x, labels, valid, i0, rows, xt, ut, vec, c_keep, c_spread, eps, scale, reach, entmax,
                      omega_factor, grad, out)
        for r in range(rows):  # one call site of the inlined row code (see kernels.sparse._forward_rows)
            if not blocked or bad[r] != 0:
                _fy_row(x, soft, labels, valid, live, masked, mode, c_keep, c_spread, eps, scale, reach, entmax,
                        omega_factor, grad, out, buf, i0 + r)


def items(z: np.ndarray, axis: int, mask: Any, entmax: bool, labels: Any, valid: Any, soft: Any,
          label_smoothing: float) -> tuple[np.ndarray, np.ndarray]:
    """Half of each item of the sparsemax (``entmax=False``) or entmax-1.5 loss (the losses' ``item_factor``:
    an item that rounds past the float maximum where the mean is finite stays finite), and the gradient ``y - t``.

    Either ``labels`` (int64, ``z``'s shape less ``axis``, ignored ones at any valid class) with ``valid``
    (bool, same shape) and ``label_smoothing``, or ``soft``: per-class targets of ``z``'s shape, already
    prepared (smoothed, masked classes at 0). ``mask``: live classes (or None).
    """
    t = z.dtype.type
    x = z if mask is None else np.where(mask, z, t(-np.inf))
    xr = rows(x, axis)
    n, m = xr.shape
    grad = np.empty_like(xr)
    out = np.empty(n, dtype=xr.dtype)
    dummy_b = np.zeros((1, 1), dtype=np.bool_)
    if soft is not None:
        mode, soft_r = _SOFT, rows(soft, axis)
        lab, val = np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.bool_)
    else:
        mode, soft_r = _LABELS, np.zeros((1, 1), dtype=xr.dtype)
        lab = np.ascontiguousarray(labels, dtype=np.int64).reshape(-1)
        val = np.ascontiguousarray(valid, dtype=np.bool_).reshape(-1)
    live = dummy_b if mask is None or soft is not None else rows(np.broadcast_to(mask, z.shape), axis)
    eps = float(label_smoothing)
    # the portable constants: (1 - ε) and ε/n (unmasked; masked: ε / n_live, per row)
    c_keep = t(1.0 - eps)
    c_spread = t(eps / m) if mask is None else t(eps)
    scale = 0.5 if entmax else 1.0
    _fy_rows(xr.size)(xr, soft_r, lab, val, live, mask is not None and soft is None, mode, c_keep, c_spread, t(eps),
                      t(scale), t(2.0 / scale), entmax,
                      t(2.0 / 3.0 if entmax else 0.25), grad, out)  # half Ω's factor: half items
    item_shape = np.moveaxis(z, axis, -1).shape[:-1]
    return out.reshape(item_shape), mark_fresh(unrows(grad, z, axis))
