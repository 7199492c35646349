"""Kinks: entries where ``f`` is not smooth and the analytic value is a one-sided derivative or between them."""

from __future__ import annotations

from typing import Any

import numpy as np


# -- kinks -----------------------------------------------------------------------------------------------------
def _one_sided(phi0: Any, pa: Any, pb: Any, a: Any, b: Any) -> Any:
    """Derivative at 0 of the parabola through ``(0, phi0)``, ``(a, pa)``, ``(b, pb)``."""
    return (pa - phi0) * b / (a * (b - a)) - (pb - phi0) * a / (b * (b - a))


def _kinks(analytic: Any, central: Any, phi: tuple[Any, ...], t: tuple[Any, ...], rtol: float, atol: float,
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which failing entries sit at a kink, given ``φ`` at ``(-2h, -h, 0, h, 2h)`` (realized offsets ``t``).

    Returns the kink mask and the left and right one-sided derivatives.
    """
    p2m, p1m, p0, p1p, p2p = (np.asarray(p, dtype=np.float64) for p in phi)
    t2m, t1m, _, t1p, t2p = (np.asarray(s, dtype=np.float64) for s in t)
    with np.errstate(all="ignore"):
        left = _one_sided(p0, p1m, p2m, t1m, t2m)
        right = _one_sided(p0, p1p, p2p, t1p, t2p)
        slopes = [(p1m - p2m) / (t1m - t2m), (p0 - p1m) / (0 - t1m), (p1p - p0) / t1p, (p2p - p1p) / (t2p - t1p)]
        bend = np.maximum(np.abs(slopes[0] - 2 * slopes[1] + slopes[2]), np.abs(slopes[1] - 2 * slopes[2] + slopes[3]))
        tol = atol + rtol * np.maximum(np.maximum(np.abs(left), np.abs(right)), np.abs(central))
        rough = np.maximum(np.abs(left - right), bend) > tol
        between = (analytic >= np.minimum(left, right) - tol) & (analytic <= np.maximum(left, right) + tol)
    return np.asarray(rough & between, dtype=bool), np.asarray(left), np.asarray(right)


def _kink_note(kink: np.ndarray, left: np.ndarray, right: np.ndarray, got: np.ndarray) -> str:
    if not kink.any():
        return ""
    k = int(np.argmax(kink.ravel()))
    idx = tuple(int(i) for i in np.unravel_index(k, kink.shape))
    n = int(kink.sum())
    return (f"{n} kink{'s' if n > 1 else ''}, e.g. at {idx}: one-sided derivatives "
            f"{float(left.ravel()[k]):.5g} and {float(right.ravel()[k]):.5g}, got {float(got.ravel()[k]):.5g}")


def _failing(analytic: np.ndarray, central: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return ~(np.abs(analytic - central) <= atol + rtol * np.abs(central))
