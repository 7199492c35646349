"""Fused log-Taylor / log-spherical softmax + NLL for integer labels: one kernel per row.

The chain rule of ``compose(LogTaylorSoftmax(), NLLLoss())`` (``LogSphericalSoftmax``), written out per row
instead of as four array passes (forward, the loss's one-hot target, its reduction, the VJP):

* ``log y`` exactly as the forward kernel (:func:`gradkit.kernels.spherical._log_forward_row`, shared code);
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

from typing import Any

import numba as nb
import numpy as np

from ._exp import exp as _exp
from ._exp import row_kernel
from .softmax import unrows
from .spherical import TAYLOR, _args, _constants, _log_forward_row, _q, _q_taylor_row

__all__ = ["log_phi_nll"]


@row_kernel
def _rows(x, mk, has_mask, labels, valid, log_y, grad, loss,  # type: ignore[no-untyped-def]
          kind, c, kf, root, rr, tiny, log2, keep, eps, share_all):
    n, m = x.shape
    zero = tiny - tiny
    neg_inf = zero - np.inf
    chunk = 64  # rows per scratch buffer (Taylor orders > 2 need one for q)
    for ch in nb.prange((n + chunk - 1) // chunk):
        buf = np.empty((1, m), dtype=x.dtype)
        for i in range(ch * chunk, min(n, (ch + 1) * chunk)):
            _log_forward_row(x, mk, has_mask, log_y, i, kind, c, kf, root, rr, tiny, log2)
            if kind == TAYLOR:  # q = φ'/φ into grad[i] (masked, ±inf: 0; NaN: NaN)
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
            # the item, and S = Σ t over entries that can move (log y > -inf)
            item = zero
            total = zero
            for j in range(m):
                live = not has_mask or mk[i, j]
                t = ((keep + share) if j == label else share) if ok and live else zero
                y = log_y[i, j]
                if t != zero:
                    item -= t * y
                if y != neg_inf:
                    total += t
            loss[i] = item
            for j in range(m):
                live = not has_mask or mk[i, j]
                t = ((keep + share) if j == label else share) if ok and live else zero
                y = log_y[i, j]
                grad[i, j] = grad[i, j] * (_exp(y) * total - t) if y != neg_inf else zero


def log_phi_nll(z: np.ndarray, axis: int, labels: np.ndarray, valid: np.ndarray, mask: Any, kind: int, order: int,
                root: float, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-item NLL of ``log φ``-softmax, the gradient of the items' sum w.r.t. ``z``, and ``log y``.

    ``labels`` (int64, ignored ones set to a valid class) and ``valid`` have ``z``'s shape less ``axis``;
    ``kind, order, root`` are the activation's ``_kernel_params``; ``eps`` the label smoothing.
    """
    xr, mk, has_mask, *params = _args(z, mask, axis, kind, order, root)
    t = z.dtype.type
    log_y = np.empty_like(xr)
    grad = np.empty_like(xr)
    loss = np.empty(xr.shape[0], dtype=xr.dtype)
    # the target's numbers as prepare_target forms them: (1 - ε) and ε / n rounded to the dtype once
    keep, share_all = t(1.0 - eps), t(eps / xr.shape[1]) if eps else t(0.0)
    _rows(xr.size)(xr, mk, has_mask, np.ascontiguousarray(labels).reshape(-1), np.ascontiguousarray(valid).reshape(-1),
                   log_y, grad, loss, *params, _constants(z.dtype, order)[2], keep, t(eps), share_all)
    return loss.reshape(labels.shape), unrows(grad, z, axis), unrows(log_y, z, axis)
