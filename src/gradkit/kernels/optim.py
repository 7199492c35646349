"""Fused all-or-nothing optimizer updates: check in one pass, write in a second.

Each kernel walks the flattened parameter once with ``write=False``: it computes every
new value (and new state) without storing anything and reports whether they are all
finite. Only then does :class:`gradkit.nn.Optimizer` call it again with ``write=True``,
which computes the very same values (no fastmath: plain IEEE arithmetic in the order of
the NumPy path, so the two passes and the NumPy path agree bit for bit) and writes the
parameter in place and the new state into the optimizer's spare buffers. That is two
reads of the inputs and one write of the outputs, about what an in-place update that
checks nothing costs, and no temporary array.

The arrays must be 1-d views of C-contiguous arrays of one dtype (float32 or float64);
the scalars must be of that dtype too (a float64 ``lr`` would promote a float32 update).
"""

from __future__ import annotations

import numpy as np

from ._cache import njit

__all__ = ["adam", "sgd"]

@njit(boundscheck=False, error_model="numpy")  # no fastmath: inf and NaN must survive
def sgd(p, g, v, v_new, lr, mu, wd, momentum, nesterov, first, write):  # type: ignore[no-untyped-def]
    """``p - lr·d`` with ``d = g'`` (no momentum), ``v' = μv + g'`` (``g'`` on the first step),
    ``d = v'`` or, Nesterov, ``d = g' + μv'``; ``g' = g + wd·p``. Returns whether every
    new ``p`` is finite (a non-finite ``v'`` makes it non-finite: ``lr >= 0``, ``μ > 0``)."""
    bad = False
    for i in range(p.size):
        gi = g[i]
        if wd != 0:
            gi = gi + p[i] * wd
        if momentum:
            vi = gi if first else v[i] * mu + gi
            if write:
                v_new[i] = vi
            gi = gi + vi * mu if nesterov else vi
        x = p[i] - gi * lr
        if write:
            p[i] = x
        else:
            bad |= (x - x) != 0  # NaN exactly when x is NaN or infinite
    return not bad


@njit(boundscheck=False, error_model="numpy")  # no fastmath: inf and NaN must survive
def adam(p, g, m, v, m_new, v_new, b1, c1, b2, c2, step, eps, wd, decay, decoupled, first, write):  # type: ignore[no-untyped-def]
    """``m' = b1·m + c1·g'``, ``v' = b2·v + c2·g'²`` (from zeros on the first step) and
    ``base - step·m' / (√v' + eps)`` with ``base = p·decay`` (decoupled) or ``p``, ``g' = g + wd·p``
    (L2). Returns whether every new ``p`` and every ``v'`` is finite."""
    zero = step - step
    bad = False
    for i in range(p.size):
        gi = g[i]
        if wd != 0:
            gi = gi + p[i] * wd
        mi = (zero if first else m[i] * b1) + gi * c1
        vi = (zero if first else v[i] * b2) + (gi * gi) * c2
        x = (p[i] * decay if decoupled else p[i]) - (mi * step) / (np.sqrt(vi) + eps)
        if write:
            m_new[i] = mi
            v_new[i] = vi
            p[i] = x
        else:
            bad |= ((x - x) != 0) | ((vi - vi) != 0)
    return not bad
