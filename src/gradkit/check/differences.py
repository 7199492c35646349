"""Central differences: the step and tolerances by dtype, shifted points, directional differences."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ['DEFAULT_TOLERANCES', 'default_step', 'default_tolerances']


#: ``(rtol, atol)`` by working dtype: float64 (and wider), float32, float16.  The float64 pair is the
#: historical default; the others cover the ``ε^(2/3)`` error of a central difference with the
#: ``∛ε`` step and the rounding of the function itself (several ulps for softmax-like maps).
DEFAULT_TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-5, 1e-6),
    "float32": (1e-2, 1e-3),
    "float16": (2e-1, 1e-1),
}


def _dtype_name(eps: float) -> str:
    return "float64" if eps <= 1e-15 else "float32" if eps <= 1e-6 else "float16"


def default_step(dtype: Any) -> float:
    """The relative step of the central differences for ``dtype``: ``∛ε`` (``ε`` its machine epsilon).

    >>> import numpy as np
    >>> from gradkit.check import default_step
    >>> [f"{default_step(t):.2g}" for t in (np.float64, np.float32, np.float16)]
    ['6.1e-06', '0.0049', '0.099']
    """
    return float(np.finfo(np.dtype(dtype)).eps) ** (1.0 / 3.0)


def default_tolerances(dtype: Any) -> tuple[float, float]:
    """``(rtol, atol)`` that :func:`gradcheck` uses for a check in ``dtype`` (see :data:`DEFAULT_TOLERANCES`)."""
    return DEFAULT_TOLERANCES[_dtype_name(float(np.finfo(np.dtype(dtype)).eps))]


def _numpy(a: Any) -> np.ndarray:
    if hasattr(a, "detach"):  # torch tensors that require grad
        a = a.detach().cpu()
    return np.asarray(a, dtype=np.float64)


def _count_nonfinite(arr: np.ndarray) -> str:
    n = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
    return f"{n} non-finite entr{'y' if n == 1 else 'ies'} of {arr.size}"


def _working_eps(*dtypes: Any) -> float:
    eps = float(np.finfo(np.float64).eps)
    for dt in dtypes:
        dt = np.dtype(dt)
        if dt.kind == "f":
            eps = max(eps, float(np.finfo(dt).eps))
    return eps


def _shift(x: np.ndarray, idx: tuple[Any, ...], h: float) -> tuple[np.ndarray, float]:
    """``x`` with ``x[idx] += h`` in ``x``'s dtype, and the offset that rounding realized."""
    out = x.copy()
    out[idx] = np.float64(x[idx]) + h
    return out, float(np.float64(out[idx]) - np.float64(x[idx]))


def _five_point(p2m: Any, p1m: Any, p0: Any, p1p: Any, p2p: Any, h: float) -> Any:
    """The derivative at 0 from values at ``-2h, -h, 0, h, 2h``: Richardson's extrapolation of the central
    differences with steps ``h`` and ``2h`` (error ``O(h⁴)``; a move along a direction shifts every entry at
    once, so its ``h²`` term is the larger one)."""
    with np.errstate(all="ignore"):
        return (8 * (p1p - p1m) - (p2p - p2m)) / (12 * h)


def _direction_phis(fn: Callable, x: np.ndarray, v: np.ndarray, h: float, mult: float) -> tuple[np.ndarray, np.ndarray,
                                                                                                 np.ndarray, np.ndarray]:
    """``fn`` at ``x ± mult·h·v`` (in ``x``'s dtype) and the realized offsets ``(x± - x) / h``."""
    xp = (x.astype(np.float64) + mult * h * v).astype(x.dtype)
    xm = (x.astype(np.float64) - mult * h * v).astype(x.dtype)
    return _numpy(fn(xp)), _numpy(fn(xm)), (xp.astype(np.float64) - x) / h, (xm.astype(np.float64) - x) / h
