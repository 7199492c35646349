"""A ``Dense`` layer's bias and a following ReLU in one pass each way (``fit``'s buffered step).

Forward, ``h ← max(h + b, 0)`` in place: NumPy's ``h += b`` then ``np.maximum(h, 0, out=h)`` in one
pass over ``h`` instead of two. Backward, ``g ← g·[y > 0]`` in place and the bias gradient, the column
sums of that ``g``: NumPy's ``np.multiply(g, y > 0, out=g)`` then ``np.sum(g, axis=0)``, in one pass
and without the boolean temporary. The arithmetic is NumPy's (no fastmath): the same sums in the same
order (row after row, as NumPy reduces a C-contiguous array over its first axis), NaN kept by the ReLU
as ``np.maximum`` keeps it. ``tests/test_nn.py`` requires the buffered step's weights to equal the
layer-by-layer step's bit for bit.
"""

from __future__ import annotations

from ._cache import njit

__all__ = ["bias_relu", "relu_grad_bias"]


@njit(boundscheck=False, error_model="numpy")  # no fastmath: NaN must survive
def bias_relu(h, b):  # type: ignore[no-untyped-def]
    """``h ← max(h + b, 0)`` in place, ``h`` 2-d C-contiguous, ``b`` of its columns (NaN stays NaN)."""
    zero = b.dtype.type(0)
    for i in range(h.shape[0]):
        for j in range(h.shape[1]):
            v = h[i, j] + b[j]
            h[i, j] = v if (v >= zero or v != v) else zero  # noqa: PLR0124 - np.maximum(v, 0): NaN kept


@njit(boundscheck=False, error_model="numpy")
def relu_grad_bias(g, y, gb):  # type: ignore[no-untyped-def]
    """``g ← g·[y > 0]`` in place (the ReLU's VJP from its output ``y``) and ``gb ← Σ_rows g``; ``g`` has at
    least one row."""
    zero = g.dtype.type(0)
    one = g.dtype.type(1)
    for i in range(g.shape[0]):
        for j in range(g.shape[1]):
            v = g[i, j] * (one if y[i, j] > zero else zero)  # as NumPy's g * True/False: inf · 0 is NaN
            g[i, j] = v
            gb[j] = v if i == 0 else gb[j] + v
