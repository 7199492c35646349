"""Rows of a matrix gathered into a preallocated batch on the calling thread (``fit``'s mini-batches).

``np.take(X, idx, axis=0, out=batch)`` copies an element at a time; this kernel copies each row in one vectorized
loop. It runs on one thread on purpose: ``fit`` calls it between BLAS products, whose OpenBLAS threads spin on
the other cores for about 0.1 s after each call, so that a threaded gather waited for a core (MNIST-size epoch,
784-256-10, batch 128, 2 cores: 401-420 ms with the gather on numba's threads, 387-393 ms on one, in alternating
rounds with PyTorch). Values are copied, never computed: the result is ``np.take``'s, bit for bit (NaN payloads
and signed zeros included).
"""

from __future__ import annotations

import numpy as np

from ._cache import njit

__all__ = ["take_rows"]


@njit(boundscheck=False)
def _take_rows(out, X, idx):  # type: ignore[no-untyped-def]
    for r in range(out.shape[0]):
        src = X[idx[r]]
        dst = out[r]
        for j in range(src.shape[0]):
            dst[j] = src[j]


def take_rows(X: np.ndarray, idx: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``np.take(X, idx, axis=0, out=out)`` for a C-contiguous 2-d ``X`` and ``out`` of one float dtype and
    indices already known to be in range (``fit``'s permutation)."""
    _take_rows(out, X, idx)
    return out
