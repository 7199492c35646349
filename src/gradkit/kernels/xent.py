"""Fused softmax / log-softmax + cross-entropy / NLL for integer labels: one kernel per row.

The common training head: labels with ``ignore_index``, optional label smoothing
(``t = (1 - ε) onehot + ε / n``), no class weights. Per row it writes the loss
``-Σ t log p`` and the gradient ``(p · S_live - t) / T`` (``S_live``: the target
mass on classes that are not at ``-inf``), as the portable path does, in about
the memory of the gradient alone. Rows whose maximum is not finite (no live
entry, ``+inf``) are left to the portable path: the wrapper returns None.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._array import mark_fresh
from ._exp import exp as _exp
from ._exp import row_kernel, row_max
from .softmax import overflow_bound, rows, scaled_may_overflow, shift_overflows, unrows, warn_overflow

__all__ = ["xent"]

#: ``valid`` of unchecked labels (never read)
_NO_VALID = np.ones(1, dtype=np.bool_)


@row_kernel(counts=True)
def _xent_rows(lo, hi, z, labels, valid, grad, loss, inv_t, neg_inf, eps, big, check_t,  # type: ignore[no-untyped-def]
               checked, ignore):
    # checked: labels validated and ignored ones marked in valid; else valid is unused and a label out of
    # [0, n) or at ignore counts as rare (the caller then takes the checked path, which reports or ignores it)
    z, labels, grad, loss = z[lo:hi], labels[lo:hi], grad[lo:hi], loss[lo:hi]  # rows lo..hi as rows 0.. (row_kernel)
    if checked:
        valid = valid[lo:hi]
    n = z.shape[1]
    zero = inv_t - inv_t
    keep = 1.0 - eps  # the label's share
    share = eps / n  # every class's share
    rare = 0
    over = 0  # shifts that overflowed to -inf from a finite logit (see softmax._forward_rows)
    over_t = 0
    for i in range(z.shape[0]):
        mx = row_max(z, i, neg_inf)
        c = labels[i]
        if not (mx > neg_inf and mx < -neg_inf) or (not checked and (c < 0 or c >= n or c == ignore)):
            rare += 1
            continue
        if mx >= big or check_t:  # a shift may overflow (the portable path shifts ignored rows too)
            o, ot = shift_overflows(z, i, mx, inv_t, neg_inf)
            over += o
            over_t += ot
        if checked and not valid[i]:
            loss[i] = zero
            for j in range(n):
                grad[i, j] = zero
            continue
        total = zero
        n_live = 0
        for j in range(n):  # grad holds exp(z - max) until the last pass
            e = _exp((z[i, j] - mx) * inv_t)
            grad[i, j] = e
            total += e
            n_live += z[i, j] != neg_inf
        log_total = math.log(total)
        label_live = z[i, c] != neg_inf
        value = zero
        if keep != 0:
            value -= keep * ((z[i, c] - mx) * inv_t - log_total)
        if eps != 0:
            sum_logp = zero
            for j in range(n):
                sum_logp += (z[i, j] - mx) * inv_t - log_total
            value -= share * sum_logp
        loss[i] = value
        s_live = keep * label_live + share * n_live
        inv = 1.0 / total
        for j in range(n):
            p = grad[i, j] * inv
            live_share = share if z[i, j] != neg_inf else zero
            grad[i, j] = (p * s_live - live_share) * inv_t
        if label_live:
            grad[i, c] -= keep * inv_t
    return rare, over, over_t


def xent(
    z: np.ndarray, axis: int, labels: np.ndarray, valid: np.ndarray | None, mask: Any, temperature: float, eps: float,
    ignore_index: int = -100,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-item losses and the gradient of their sum w.r.t. ``z``; None if a row needs the portable path.

    Under a mask, a label on a masked class carries no target mass (as in the portable
    path): its item gives loss 0 and gradient 0 but still counts in the mean.
    ``valid`` None: ``labels`` (int64) are a training batch's, not checked yet, and no mask: a label out of range
    or at ``ignore_index`` gives None (the caller checks them then), which spares the checks' passes per batch.
    """
    check_t = scaled_may_overflow(z, temperature)
    if mask is not None:
        z = np.where(mask, z, z.dtype.type(-np.inf))
        live_label = np.take_along_axis(rows(mask, axis), labels.reshape(-1, 1), axis=1).reshape(labels.shape)
        valid = valid & live_label
    zr = rows(z, axis)
    grad = np.empty_like(zr)
    loss = np.empty(zr.shape[0], dtype=zr.dtype)
    t = zr.dtype.type
    checked = valid is not None
    rare, over, over_t = _xent_rows(zr.size)(
        zr, np.ascontiguousarray(labels).reshape(-1), np.ascontiguousarray(valid).reshape(-1) if checked else _NO_VALID,
        grad, loss, t(1.0 / temperature), t(-np.inf), t(eps), overflow_bound(zr.dtype), check_t, checked, ignore_index)
    if rare or (over and temperature > 1.0):  # the portable path keeps (z - max)/T finite there
        return None
    warn_overflow(over, over_t)
    return loss.reshape(labels.shape), mark_fresh(unrows(grad, z, axis))
