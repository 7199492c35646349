"""Fused log-Taylor / log-spherical softmax + NLL for integer labels: one kernel per row.

The chain rule of ``compose(LogTaylorSoftmax(), NLLLoss())`` (``LogSphericalSoftmax``), written out per row
instead of as four array passes (forward, the loss's one-hot target, its reduction, the VJP):

* ``log y`` as the forward kernel of :mod:`gradkit.kernels.spherical` computes it (its row helpers, and
  ``log φ`` by the same expressions), with ``q = φ'/φ`` formed in the same pass where it is plain;
* the target ``t = (1 - ε) onehot(c) + ε / n`` (under a mask: on the ``n`` live classes only, a masked label
  carrying no mass), zero on ignored items, as :meth:`gradkit.losses.ClassLoss.prepare_target` builds it;
* the item ``l = -Σ_{t_j ≠ 0} t_j log y_j`` (NLL's ``xlogy`` rule: no ``0 · -inf``);
* the gradient of the items' sum ``q ⊙ (y S - t)`` on entries with ``log y > -inf`` (0 elsewhere),
  ``S = Σ t`` over those entries, ``q = φ'/φ`` as the VJP kernel computes it: the VJP kernel's
  ``q ⊙ (g - y Σg)`` at ``g = -t``. For ``log y = a - logsumexp(a)``, ``a = log φ(z)``, this is
  ``∂l/∂z = q ⊙ ∂l/∂a`` with ``∂l/∂a = y Σt - t``.

Every row is handled, the special ones as the chain rule handles them (no fallback needed): a row with
no live entry gives ``log y = -inf``, loss 0 (its target is 0) and gradient 0; ``±inf`` scores share the
mass (a label elsewhere gives loss ``inf``) with gradient 0; a live NaN makes the row's ``log y`` and
gradient NaN (and its loss, unless the item is ignored). Tested equal to the generic path
(``compose(..., fused=False)``), kernels on and off.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from .._array import mark_fresh
from ._cache import njit
from ._exp import FASTMATH, row_kernel, row_max
from ._exp import exp as _exp
from .softmax import rows, unrows
from .spherical import (
    _NO_MASK,
    SPHERICAL,
    TAYLOR,
    _constants,
    _log_phi_plain,
    _log_phi_row,
    _q,
    _q_taylor_row,
    _softmax_of_a,
)

__all__ = ["log_phi_nll"]


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def _plain_row(x, mk, has_mask, log_y, q, i, kind, c, rr, tiny, log2):  # type: ignore[no-untyped-def]
    """``a = log φ`` into ``log_y[i]`` (``spherical._log_phi_plain``, branch-free) and ``q = φ'/φ`` into ``q[i]``
    for Taylor order 2 and the spherical map: the numbers of ``spherical._q`` where ``u² + c`` is a finite normal
    number (masked: 0). False where a live one is not (the caller redoes the row the strict way)."""
    if not _log_phi_plain(x, mk, has_mask, log_y, i, kind, c, rr, tiny, log2):
        return False
    one = c[0]
    two = one + one
    zero = one - one
    cc = rr if kind == SPHERICAL else one
    for j in range(x.shape[1]):  # u² + c is finite and normal on every live entry here
        u = x[i, j] if kind == SPHERICAL else x[i, j] + one
        q[i, j] = two * u / (u * u + cc) if (not has_mask or mk[i, j]) else zero
    return True


@row_kernel
def _rows(lo, hi, x, mk, has_mask, labels, valid, log_y, grad, loss,  # type: ignore[no-untyped-def]
          kind, c, kf, root, rr, tiny, log2, keep, eps, share_all):
    x, mk, labels, valid, log_y, grad, loss = (  # rows lo..hi as rows 0.. (see row_kernel)
        x[lo:hi], mk[lo:hi], labels[lo:hi], valid[lo:hi], log_y[lo:hi], grad[lo:hi], loss[lo:hi])
    zero = tiny - tiny
    neg_inf = zero - np.inf
    m = x.shape[1]
    buf = np.empty((1, m), dtype=x.dtype) if kind == TAYLOR else np.empty((1, 1), dtype=x.dtype)
    for i in range(x.shape[0]):
        # log y as the forward kernel (spherical._log_forward_row), q as the VJP kernel; grad[i] holds q
        if kind != TAYLOR and _plain_row(x, mk, has_mask, log_y, grad, i, kind, c, rr, tiny, log2):
            _softmax_of_a(log_y, i, row_max(log_y, i, neg_inf), False, c, True)
        else:
            _log_phi_row(x, mk, has_mask, log_y, i, kind, c, kf, root, rr, tiny, True)
            if kind == TAYLOR:  # masked, ±inf: 0; NaN: NaN
                _q_taylor_row(x, mk, has_mask, i, grad, buf, c)
            else:
                for j in range(m):
                    grad[i, j] = _q(x, mk, has_mask, i, j, kind, c, root, rr, tiny)
        ok = valid[i]
        label = labels[i]
        share = share_all
        if has_mask:  # smoothing over the live classes only
            n_live = zero
            for j in range(m):
                n_live += mk[i, j]
            share = eps / (n_live if n_live > zero else zero + 1)
        # the item (terms with t = 0 left out: no 0 · -inf), and S = Σ t over entries that can move
        item = zero
        total = zero
        for j in range(m):
            t = (share + keep * (j == label)) if ok and (not has_mask or mk[i, j]) else zero
            y = log_y[i, j]
            item -= t * y if t != zero else zero
            total += t if y != neg_inf else zero
        loss[i] = item
        for j in range(m):  # q ⊙ (y S - t) on entries that can move
            t = (share + keep * (j == label)) if ok and (not has_mask or mk[i, j]) else zero
            y = log_y[i, j]
            grad[i, j] = grad[i, j] * (_exp(y) * total - t) if y != neg_inf else zero


@lru_cache(maxsize=64)
def _scalars(dtype: Any, kind: int, order: int, root: float) -> tuple[Any, ...]:
    """The kernel's constants in ``dtype`` (as ``spherical._args`` makes them; cached: one lookup per batch)."""
    t = np.dtype(dtype).type
    coefficients, tiny, log2 = _constants(dtype, order)
    return kind, coefficients, t(order), t(root), t(root) * t(root), tiny, log2


def log_phi_nll(z: np.ndarray, axis: int, labels: np.ndarray, valid: np.ndarray, mask: Any, kind: int, order: int,
                root: float, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-item NLL of ``log φ``-softmax, the gradient of the items' sum w.r.t. ``z``, and ``log y``.

    ``labels`` (int64, ignored ones set to a valid class) and ``valid`` have ``z``'s shape less ``axis``;
    ``kind, order, root`` are the activation's ``_kernel_params``; ``eps`` the label smoothing.
    """
    xr = rows(z, axis)
    mk = _NO_MASK if mask is None else rows(mask, axis)
    t = z.dtype.type
    log_y = np.empty_like(xr)
    grad = np.empty_like(xr)
    loss = np.empty(xr.shape[0], dtype=xr.dtype)
    # the target's numbers as prepare_target forms them: (1 - ε) and ε / n rounded to the dtype once
    keep, share_all = t(1.0 - eps), t(eps / xr.shape[1])
    _rows(xr.size)(xr, mk, mask is not None, np.ascontiguousarray(labels).reshape(-1),
                   np.ascontiguousarray(valid).reshape(-1), log_y, grad, loss,
                   *_scalars(z.dtype, kind, order, root), keep, t(eps), share_all)
    return loss.reshape(labels.shape), mark_fresh(unrows(grad, z, axis)), unrows(log_y, z, axis)
