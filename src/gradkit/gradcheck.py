"""Check derivatives against central differences, and say where they are wrong.

``gradcheck`` draws a **random** upstream vector ``u`` and a random direction
``v`` (never all-ones: ``Σ_i J_ij = 0`` for softmax, so all-ones upstream
cannot see its off-diagonal terms) and runs every check it has the pieces for:

* ``vjp``: ``vjp(x, u)`` against ``∂⟨u, f(x)⟩/∂x_i`` by central differences, per input entry;
* ``jvp``: ``jvp(x, v)`` against ``(f(x + h v) - f(x - h v)) / 2h``, per output entry;
* ``adjoint``: ``⟨jvp(x, v), u⟩ == ⟨v, vjp(x, u)⟩``;
* ``jacobian``: the batched Jacobian contracted with ``v`` against ``jvp(x, v)``;
* with ``fast=True``, instead of the two per-entry checks, ``vjp (fast)`` and ``jvp (fast)``:
  the one number ``uᵀJv`` from ``⟨vjp(x, u), v⟩`` and from ``⟨u, jvp(x, v)⟩`` against
  ``(⟨u, f(x + h v)⟩ - ⟨u, f(x - h v)⟩) / 2h`` (two evaluations of ``f`` whatever the size);
* for a :mod:`gradkit.nn` layer or ``Sequential``: ``vjp`` is ``backward``'s input gradient, and
  one ``vjp <name>`` row per parameter checks ``grads[name]``.

The check runs in the precision of ``x`` and of ``f(x)`` (the coarser of the two): the step is
``h = ∛ε · max(1, |x_i|)`` (``ε`` that dtype's machine epsilon: about ``6e-6`` in float64,
``5e-3`` in float32, ``0.1`` in float16), where the truncation error ``h² f'''/6`` and the
rounding error ``ε |f| / h`` of a central difference balance, and the tolerances follow the
dtype (:data:`DEFAULT_TOLERANCES`). An entry passes when ``|analytic - numeric| <= atol + rtol * |numeric|``.

Kinks: where an entry fails, ``f`` is also evaluated at ``± 2h`` and the one-sided derivatives
(quadratic fits on ``[-2h, 0]`` and ``[0, 2h]``) and the segment slopes are compared. If ``f`` is not
smooth there (the one-sided derivatives disagree, or the slopes bend, by more than the tolerance)
and the analytic value lies between the one-sided derivatives (a valid one-sided derivative or
subgradient, e.g. ``relu'(0) = 0``), the entry is a **kink**, counted and reported, not an error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._array import ArrayLike, check_int, check_positive, normalize_axis, to_array
from ._rng import RNGLike, as_generator, check_rng, seed_alias
from .base import Activation
from .compose import Composed
from .losses.base import Loss

__all__ = ["DEFAULT_TOLERANCES", "CheckResult", "GradcheckReport", "default_step", "default_tolerances",
           "gradcheck", "random_target"]

#: ``(rtol, atol)`` by working dtype: float64 (and wider), float32, float16.  The float64 pair is the
#: historical default; the others cover the ``ε^(2/3)`` error of a central difference with the
#: ``∛ε`` step and the rounding of the function itself (several ulps for softmax-like maps).
DEFAULT_TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-5, 1e-6),
    "float32": (1e-2, 1e-3),
    "float16": (2e-1, 1e-1),
}

#: the batched Jacobian is checked only when it holds at most this many entries (128 MiB in float64)
JACOBIAN_MAX_ENTRIES = 2**24


@dataclass(frozen=True)
class CheckResult:
    """One check: its errors, the entry where it is worst, the two values there, and its kinks.

    ``kinks`` counts the entries found at a non-differentiable point (``kink_index`` is the first),
    which are left out of the errors when the report allows kinks.
    """

    check: str
    max_abs_err: float
    max_rel_err: float
    worst_index: tuple[int, ...]
    expected: float
    got: float
    ok: bool
    note: str = ""
    kinks: int = 0
    kink_index: tuple[int, ...] = ()


@dataclass
class GradcheckReport:
    """What :func:`gradcheck` found. ``print(report)`` shows a table."""

    function: str
    shape: tuple[int, ...]
    results: list[CheckResult] = field(default_factory=list)
    rtol: float = 1e-5
    atol: float = 1e-6
    dtype: str = "float64"
    step: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return bool(self.results) and all(r.ok for r in self.results)

    @property
    def kinks(self) -> int:
        """How many entries sat at a non-differentiable point (skipped, or failed with ``allow_kinks=False``)."""
        return sum(r.kinks for r in self.results)

    @property
    def max_abs_err(self) -> float:
        """The largest absolute error over all checks."""
        return max((r.max_abs_err for r in self.results), default=0.0)

    @property
    def max_rel_err(self) -> float:
        """The largest relative error ``|a - n| / max(|n|, atol)`` over all checks."""
        return max((r.max_rel_err for r in self.results), default=0.0)

    @property
    def worst(self) -> CheckResult | None:
        """The failing check with the largest error (or the largest error overall)."""
        pool = [r for r in self.results if not r.ok] or self.results
        return max(pool, key=lambda r: r.max_rel_err, default=None)

    @property
    def worst_index(self) -> tuple[int, ...] | None:
        """Index of the worst entry of the worst check (into ``x`` for vjp, the output for jvp)."""
        worst = self.worst
        return None if worst is None else worst.worst_index

    def __str__(self) -> str:
        step = f", h={self.step:.3g}*max(1,|x|)" if self.step else ""
        head = (f"gradcheck {self.function} at shape {self.shape} "
                f"({self.dtype}{step}, rtol={self.rtol:g}, atol={self.atol:g}): ")
        head += "ok" if self.ok else "FAILED"
        if self.kinks:
            head += f" ({self.kinks} kink{'s' if self.kinks > 1 else ''}: non-differentiable points"
            head += ", skipped)" if self.ok or all(r.ok or not r.kinks for r in self.results) else ")"
        cols = f"{'check':<10} {'max abs err':>12} {'max rel err':>12}  {'worst index':<14} {'expected':>12} {'got':>12}  result"
        lines = [head, cols, "-" * len(cols)]
        for r in self.results:
            idx = str(r.worst_index) if r.worst_index else "()"
            status = ("ok" if r.ok else "WRONG") + (f", {r.kinks} kink{'s' if r.kinks > 1 else ''}" if r.kinks else "")
            lines.append(
                f"{r.check:<10} {r.max_abs_err:>12.3e} {r.max_rel_err:>12.3e}  {idx:<14} {r.expected:>12.5g} {r.got:>12.5g}  {status}"
                + (f"  ({r.note})" if r.note else "")
            )
        return "\n".join(lines)


def random_target(
    loss: Loss, shape: tuple[int, ...], rng: RNGLike, *, labels: bool = False
) -> np.ndarray:
    """A random target valid for ``loss`` and predictions of ``shape``, for checks.

    ``rng`` is a SPEC 7 ``rng``: a Generator (used as is, and advanced), an int seed, or None.

    Class losses get integer labels (``labels=True``) or per-class soft targets
    that do not sum to 1 (the case the ``p - t`` shortcut gets wrong); binary
    losses values in (0.05, 0.95); regression losses standard normal values.
    """
    from .losses.binary import BCELoss, BCEWithLogitsLoss
    from .losses.classification import ClassLoss

    rng = as_generator(rng)
    if isinstance(loss, ClassLoss):
        if labels:
            axis = normalize_axis(loss.axis, len(shape))
            return rng.integers(0, shape[axis], shape[:axis] + shape[axis + 1 :])
        return rng.uniform(0.0, 1.0, shape)
    if isinstance(loss, (BCELoss, BCEWithLogitsLoss)):
        return rng.uniform(0.05, 0.95, shape)
    return rng.standard_normal(shape)


def _dtype_name(eps: float) -> str:
    return "float64" if eps <= 1e-15 else "float32" if eps <= 1e-6 else "float16"


def default_step(dtype: Any) -> float:
    """The relative step of the central differences for ``dtype``: ``∛ε`` (``ε`` its machine epsilon).

    >>> import numpy as np
    >>> from gradkit.gradcheck import default_step
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


def _point(x: Any, name: str = "x") -> np.ndarray:
    """``x`` as a NumPy array in its own floating dtype (integers become float64)."""
    x = to_array(x, name)
    if hasattr(x, "detach"):
        x = x.detach().cpu()
    arr = np.asarray(x)
    if arr.dtype.kind == "b":
        raise TypeError(f"{name} must be a real floating or integer array to differentiate at; got dtype bool")
    if arr.dtype.kind == "c":
        raise TypeError(f"{name} must be real: gradcheck checks real derivatives; got dtype {arr.dtype}")
    if arr.dtype.kind not in "f":
        arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite for a finite-difference check; got {_count_nonfinite(arr)}")
    return np.array(arr, copy=True)


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


def _shape_failure(name: str, got: tuple[int, ...], expected: tuple[int, ...]) -> CheckResult:
    return CheckResult(name, np.inf, np.inf, (), np.nan, np.nan, False, f"shape {got}, expected {expected}")


def _compare(name: str, got: Any, expected: np.ndarray, rtol: float, atol: float,
             kink: np.ndarray | None = None, allow_kinks: bool = True, kink_note: str = "") -> CheckResult:
    got = _numpy(got)
    if got.shape != expected.shape:
        return _shape_failure(name, got.shape, expected.shape)
    diff = np.abs(got - expected)
    diff = np.where(np.isnan(diff) & ~(np.isnan(got) & np.isnan(expected)), np.inf, np.nan_to_num(diff))
    n_kinks, kink_index = 0, ()  # type: tuple[int, tuple[int, ...]]
    if kink is not None and kink.any():
        n_kinks = int(kink.sum())
        kink_index = tuple(int(i) for i in np.unravel_index(int(np.argmax(kink)), kink.shape))
        if allow_kinks:
            diff = np.where(kink, 0.0, diff)
    if diff.size == 0:
        return CheckResult(name, 0.0, 0.0, (), 0.0, 0.0, True)
    scale = np.abs(expected)
    violation = diff / (atol + rtol * np.nan_to_num(scale))
    flat = int(np.argmax(violation))
    idx = tuple(int(i) for i in np.unravel_index(flat, diff.shape))
    rel = diff / np.maximum(np.nan_to_num(scale), atol)
    ok = bool(violation.max() <= 1.0)
    note = kink_note if n_kinks else ""
    if n_kinks and not allow_kinks:
        ok = False
        note += "; kinks fail: allow_kinks=False"
    return CheckResult(name, float(diff.max()), float(rel.max()), idx, float(expected[idx]), float(got[idx]), ok,
                       note, n_kinks, kink_index)


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


def _shift(x: np.ndarray, idx: tuple[Any, ...], h: float) -> tuple[np.ndarray, float]:
    """``x`` with ``x[idx] += h`` in ``x``'s dtype, and the offset that rounding realized."""
    out = x.copy()
    out[idx] = np.float64(x[idx]) + h
    return out, float(np.float64(out[idx]) - np.float64(x[idx]))


# -- the checks -------------------------------------------------------------------------------------------------
@dataclass
class _Opts:
    step: float
    rtol: float
    atol: float
    max_points: int
    allow_kinks: bool


def _vjp_entries(name: str, fn: Callable, vjp_val: np.ndarray, x: np.ndarray, u: np.ndarray, phi0: float,
                 rng: np.random.Generator, o: _Opts) -> CheckResult:
    """``vjp_val`` against central differences of ``⟨u, fn(x)⟩``, entry by entry (at most ``max_points``)."""
    if vjp_val.shape != x.shape:
        return _shape_failure(name, vjp_val.shape, x.shape)
    flat = np.arange(x.size)
    if x.size > o.max_points:
        flat = np.sort(rng.choice(x.size, o.max_points, replace=False))

    def phi(point: np.ndarray) -> float:
        return float(np.sum(u * _numpy(fn(point))))

    n = flat.size
    p1p, p1m, t1p, t1m = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    for k, i in enumerate(flat):
        idx = np.unravel_index(i, x.shape)
        h = o.step * max(1.0, abs(float(x[idx])))
        xp, t1p[k] = _shift(x, idx, h)
        xm, t1m[k] = _shift(x, idx, -h)
        p1p[k], p1m[k] = phi(xp), phi(xm)
    with np.errstate(all="ignore"):
        central = (p1p - p1m) / (t1p - t1m)
    analytic = vjp_val.ravel()[flat]
    kink = np.zeros(n, dtype=bool)
    left, right = np.zeros(n), np.zeros(n)
    candidates = np.flatnonzero(_failing(analytic, central, o.rtol, o.atol) & np.isfinite(central))
    if candidates.size:
        p2p, p2m, t2p, t2m = (np.full(candidates.size, np.nan) for _ in range(4))
        for j, k in enumerate(candidates.tolist()):
            idx = np.unravel_index(flat[k], x.shape)
            xp, t2p[j] = _shift(x, idx, 2 * t1p[k])
            xm, t2m[j] = _shift(x, idx, 2 * t1m[k])
            p2p[j], p2m[j] = phi(xp), phi(xm)
        c = candidates
        kink[c], left[c], right[c] = _kinks(analytic[c], central[c], (p2m, p1m[c], phi0, p1p[c], p2p),
                                            (t2m, t1m[c], 0.0, t1p[c], t2p), o.rtol, o.atol)
    numeric, got, kink_full = np.zeros(x.shape), np.zeros(x.shape), np.zeros(x.shape, dtype=bool)
    numeric.ravel()[flat], got.ravel()[flat], kink_full.ravel()[flat] = central, analytic, kink
    note = ""
    if kink.any():
        lf, rf = np.zeros(x.shape), np.zeros(x.shape)
        lf.ravel()[flat], rf.ravel()[flat] = left, right
        note = _kink_note(kink_full, lf, rf, got)
    return _compare(name, got, numeric, o.rtol, o.atol, kink_full, o.allow_kinks, note)


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


#: how many random pairs ``(u, v)`` the fast mode checks (each: two evaluations of ``f``, one VJP, one JVP)
FAST_PROBES = 4


def _fast(fn: Callable, x: np.ndarray, y0: np.ndarray, vjp_fn: Callable | None, jvp_fn: Callable | None,
          probes: list[tuple[np.ndarray, np.ndarray]], out_dtype: np.dtype, h: float, o: _Opts, label: str = "",
          ) -> tuple[list[CheckResult], np.ndarray | None, np.ndarray | None, np.ndarray]:
    """The ``uᵀJv`` checks for each pair ``(u, v)``: a central difference of ``⟨u, f(x + t v)⟩`` against
    ``⟨vjp(x, u), v⟩`` and ``⟨u, jvp(x, v)⟩``; each row keeps its worst pair.

    Returns the rows, and the VJP, JVP and realized direction of the first pair (for the adjoint check).
    """
    rows: dict[str, list[CheckResult]] = {}
    first: tuple[Any, Any, Any] = (None, None, None)
    for k, (u, v) in enumerate(probes):
        fp, fm, dp, dm = _direction_phis(fn, x, v, h, 1.0)
        f2p, f2m, _, _ = _direction_phis(fn, x, v, h, 2.0)
        veff = (dp - dm) / 2  # the direction the rounded points realize
        phis = tuple(float(np.sum(u * f)) for f in (f2m, fm, y0, fp, f2p))
        central = _five_point(phis[0], phis[1], phis[2], phis[3], phis[4], h)
        vjp_val = None if vjp_fn is None else _numpy(vjp_fn(x, u.astype(out_dtype)))
        jvp_val = None if jvp_fn is None else _numpy(jvp_fn(x, veff.astype(x.dtype)))
        if k == 0:
            first = (vjp_val, jvp_val, veff)
        # an error of atol in each entry of the VJP (of the JVP) moves the number by about atol·|v| (atol·|u|)
        checks: list[tuple[str, Any, Any, float]] = []
        if vjp_val is not None:
            a = float(np.sum(vjp_val * veff)) if vjp_val.shape == x.shape else None
            checks.append((f"vjp{label} (fast)", a, (vjp_val.shape, x.shape), o.atol * float(np.linalg.norm(veff))))
        if jvp_val is not None:
            a = float(np.sum(u * jvp_val)) if jvp_val.shape == y0.shape else None
            checks.append((f"jvp{label} (fast)", a, (jvp_val.shape, y0.shape), o.atol * float(np.linalg.norm(u))))
        for name, a, shapes, atol in checks:
            if a is None:
                rows.setdefault(name, []).append(_shape_failure(name, *shapes))
                continue
            kink = np.zeros((), dtype=bool)
            note = ""
            if np.isfinite(central) and _failing(np.array(a), np.array(central), o.rtol, atol):
                kink, left, right = _kinks(np.array(a), np.array(central), phis, (-2 * h, -h, 0.0, h, 2 * h),
                                           o.rtol, atol)
                kink = np.asarray(kink, dtype=bool).reshape(())
                note = _kink_note(kink, np.asarray(left).reshape(()), np.asarray(right).reshape(()), np.array(a))
            res = _compare(name, np.array(a), np.array(central), o.rtol, atol, kink, o.allow_kinks, note)
            rows.setdefault(name, []).append(res)
    results = []
    for name, found in rows.items():
        pool = [r for r in found if not r.ok] or found
        worst = max(pool, key=lambda r: r.max_rel_err)
        n_kinks = sum(r.kinks for r in found)
        note = worst.note or next((r.note for r in found if r.kinks), "")
        note = (note + "; " if note else "") + f"worst of {len(found)} random (u, v)"
        results.append(CheckResult(name, worst.max_abs_err, worst.max_rel_err, worst.worst_index, worst.expected,
                                   worst.got, all(r.ok for r in found), note, n_kinks, worst.kink_index))
    return results, first[0], first[1], first[2]


def _jvp_entries(fn: Callable, jvp_fn: Callable, x: np.ndarray, y0: np.ndarray, v: np.ndarray, h: float, o: _Opts,
                 ) -> tuple[CheckResult, np.ndarray, np.ndarray]:
    fp, fm, dp, dm = _direction_phis(fn, x, v, h, 1.0)
    f2p, f2m, _, _ = _direction_phis(fn, x, v, h, 2.0)
    veff = (dp - dm) / 2
    jvp_val = _numpy(jvp_fn(x, veff.astype(x.dtype)))
    numeric = _five_point(f2m, fm, y0, fp, f2p, h)
    if jvp_val.shape != numeric.shape:
        return _shape_failure("jvp", jvp_val.shape, numeric.shape), jvp_val, veff
    kink = np.zeros(numeric.shape, dtype=bool)
    note = ""
    fail = _failing(jvp_val, numeric, o.rtol, o.atol) & np.isfinite(numeric)
    if fail.any():
        kink, left, right = _kinks(jvp_val, numeric, (f2m, fm, y0, fp, f2p), (-2 * h, -h, 0.0, h, 2 * h),
                                   o.rtol, o.atol)
        kink = kink & fail
        note = _kink_note(kink, left, right, jvp_val)
    return _compare("jvp", jvp_val, numeric, o.rtol, o.atol, kink, o.allow_kinks, note), jvp_val, veff


# -- what f is -------------------------------------------------------------------------------------------------
def _layer_types() -> tuple[Any, ...]:
    from .nn.layers import Layer
    from .nn.model import Sequential

    return (Layer, Sequential)


def _resolve(f: Any, vjp: Any, jvp: Any, target: Any) -> tuple[Callable, Callable | None, Callable | None, Callable | None, int | None, str]:
    if isinstance(f, Activation):
        if target is not None:
            raise TypeError("target= goes with a loss or a composed head, not an activation")
        return f.forward, vjp or f.vjp, jvp or f.jvp, f.jacobian, f.axis, repr(f)
    if isinstance(f, (Loss, Composed)):
        if target is None:
            raise TypeError(f"gradcheck of {type(f).__name__} needs target=")
        return (
            lambda x: f(x, target),
            vjp or (lambda x, g: f.vjp(x, target, g)),
            jvp or (lambda x, v: f.jvp(x, target, v)),
            None,
            None,
            repr(f),
        )
    if isinstance(f, _layer_types()):
        if target is not None:
            raise TypeError("target= goes with a loss or a composed head, not a layer: check the layer alone, "
                            "or compose it into a function of x with its own vjp=")
        if jvp is not None:
            raise TypeError("jvp= does not go with a gradkit.nn layer: its backward() is the VJP under test")
        return (lambda x: f.forward(x), vjp or (lambda x, g: (f.forward(x), f.backward(g))[1]), None, None, None,
                _name(f))
    if callable(f):
        if vjp is None and jvp is None:
            raise TypeError("gradcheck of a plain function needs vjp=(x, g) -> array and/or jvp=(x, v) -> array")
        if target is not None:
            return (lambda x: f(x, target)), vjp, jvp, None, None, getattr(f, "__name__", repr(f))
        return f, vjp, jvp, None, None, getattr(f, "__name__", repr(f))
    raise TypeError("f must be an activation, a loss, a compose() head, a gradkit.nn layer or Sequential, or a "
                    f"callable; got {type(f).__name__}")


def _name(f: Any) -> str:
    """``repr(f)``, or the class name where a user's layer cannot say more (no ``config()``)."""
    try:
        return repr(f)
    except Exception:  # noqa: BLE001 - a repr that fails must not hide the check
        return type(f).__name__ + "()"


def _check_callable(value: Any, name: str) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be a callable ({name}(x, ...) -> array) or None; got {type(value).__name__}")


@seed_alias("gradkit.gradcheck")
def gradcheck(
    f: Activation | Loss | Composed | Callable[..., Any],
    x: ArrayLike,
    vjp: Callable[[Any, Any], Any] | None = None,
    jvp: Callable[[Any, Any], Any] | None = None,
    *,
    target: ArrayLike | None = None,
    rng: RNGLike = 0,
    eps: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    max_points: int = 2000,
    fast: bool = False,
    allow_kinks: bool = True,
) -> GradcheckReport:
    """Check the derivatives of ``f`` at ``x`` against central differences.

    Parameters
    ----------
    f
        An activation, a loss (with ``target=``), a :func:`~gradkit.compose` head
        (with ``target=``), a :mod:`gradkit.nn` layer or ``Sequential`` (its ``backward``: the
        input gradient and every parameter's gradient), or a plain function ``f(x)`` with
        ``vjp`` and/or ``jvp``.
    x
        The point, a real array. It keeps its floating dtype (integers become float64), and the
        check runs in that precision, or in the output's if that is coarser (a float32 layer).
        Cast ``x`` to float64 for the strictest check.
    vjp, jvp
        ``vjp(x, g)`` and ``jvp(x, v)``; they default to the object's own.
    target
        The target for a loss or a composed head.
    rng : None, int or numpy.random.Generator, default 0
        Source of the random upstream vector, direction and checked entries (SPEC 7): an int
        seeds ``numpy.random.default_rng`` (the default 0 makes the check repeatable), ``None``
        draws fresh entropy, a Generator is used as it is. ``seed=`` is its deprecated old name.
    eps : float, optional
        Relative step of the central differences: entry ``i`` moves by ``eps * max(1, |x_i|)``.
        Default ``∛ε`` of the working dtype (:func:`default_step`: ``6.1e-6`` in float64,
        ``4.9e-3`` in float32, ``0.099`` in float16).
    rtol, atol : float, optional
        Tolerances; an entry passes when ``|analytic - numeric| <= atol + rtol * |numeric|``.
        Default by working dtype (:data:`DEFAULT_TOLERANCES`): ``(1e-5, 1e-6)`` in float64,
        ``(1e-2, 1e-3)`` in float32, ``(0.2, 0.1)`` in float16.
    max_points : int, default 2000
        The VJP is checked on at most this many input entries (chosen at random), each costing
        two evaluations of ``f``.
    fast : bool, default False
        Check only ``uᵀJv`` for the random ``u`` and ``v``, from the VJP and from the JVP, against one
        central difference: two evaluations of ``f`` whatever the size of ``x`` (PyTorch's
        ``fast_mode``). It catches wrong derivatives but cannot say at which entry.
    allow_kinks : bool, default True
        Entries at a non-differentiable point (a kink: the one-sided derivatives differ and the
        analytic value is one of them or lies between) are counted and reported but do not fail
        the check. With ``False`` they fail it.

    Returns
    -------
    GradcheckReport
        ``.ok``, ``.max_abs_err``, ``.max_rel_err``, ``.worst_index``, ``.kinks``, and a table via ``print``.

    Examples
    --------
    The classic bug: softmax's "derivative" taken as its diagonal ``s(1 - s)``.

    >>> import numpy as np, gradkit as gk
    >>> sm = gk.Softmax()
    >>> wrong = lambda x, g: g * sm(x) * (1 - sm(x))
    >>> x = np.array([[0.3, -1.2, 2.0, 0.5]])
    >>> gk.gradcheck(sm, x, vjp=wrong).ok
    False
    >>> gk.gradcheck(sm, x).ok
    True

    ReLU at exactly 0 is a kink, reported and not counted as an error:

    >>> rep = gk.gradcheck(gk.ReLU(), np.array([-1.0, 0.0, 2.0]))
    >>> rep.ok, rep.kinks
    (True, 2)
    """
    rng = check_rng(rng)
    step = None if eps is None else check_positive(eps, "eps")
    rtol_ = None if rtol is None else check_positive(rtol, "rtol", allow_zero=True)
    atol_ = None if atol is None else check_positive(atol, "atol", allow_zero=True)
    if rtol_ == 0 and atol_ == 0:
        raise ValueError("rtol and atol must not both be 0")
    if check_int(max_points, "max_points") < 1:
        raise ValueError(f"max_points must be >= 1; got {max_points}")
    for flag, flag_name in ((fast, "fast"), (allow_kinks, "allow_kinks")):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{flag_name} must be True or False; got {flag!r} ({type(flag).__name__})")
    _check_callable(vjp, "vjp")
    _check_callable(jvp, "jvp")
    args = (f, x, vjp, jvp, target, rng, step, rtol_, atol_, int(max_points), bool(fast), bool(allow_kinks))
    act = f if isinstance(f, Activation) else getattr(f, "activation", None)
    if isinstance(act, Activation) and act.stochastic:  # one sample, held fixed while checking
        with act.frozen():  # type: ignore[attr-defined]
            return _gradcheck(*args)
    return _gradcheck(*args)


def _gradcheck(f: Any, x: Any, vjp: Any, jvp: Any, target: Any, rng: RNGLike, step: float | None,
               rtol: float | None, atol: float | None, max_points: int, fast: bool, allow_kinks: bool) -> GradcheckReport:
    fn, vjp_fn, jvp_fn, jac_fn, axis, name = _resolve(f, vjp, jvp, target)
    x = _point(x)
    rng = as_generator(rng)
    y0_raw = fn(x)
    y0 = _numpy(y0_raw)
    y_dtype = getattr(y0_raw, "dtype", np.float64)
    params = _layer_params(f)
    dtypes = [x.dtype, y_dtype] + [p.dtype for p in params.values()]
    work_eps = _working_eps(*_np_dtypes(dtypes))
    dtype = _dtype_name(work_eps)
    d_rtol, d_atol = DEFAULT_TOLERANCES[dtype]
    rtol = d_rtol if rtol is None else rtol
    atol = d_atol if atol is None else atol
    if rtol == 0 and atol == 0:
        raise ValueError("rtol and atol must not both be 0")
    x_eps = float(np.finfo(x.dtype).eps)
    if step is not None and step < 4 * x_eps:
        raise ValueError(f"eps must be at least 4 machine epsilons of x's dtype {x.dtype} ({4 * x_eps:.3g}), or "
                         f"x ± eps·max(1, |x|) rounds back to x; got {step:g} (the default for {dtype} is "
                         f"{work_eps ** (1.0 / 3.0):.3g})")
    o = _Opts(work_eps ** (1.0 / 3.0) if step is None else step, rtol, atol, max_points, allow_kinks)
    out_dtype = _np_dtypes([y_dtype])[0]
    out_dtype = out_dtype if out_dtype.kind == "f" else np.dtype(np.float64)
    u = rng.standard_normal(y0.shape).astype(out_dtype).astype(np.float64)  # representable in the output's dtype
    v = rng.standard_normal(x.shape)
    report = GradcheckReport(name, tuple(x.shape), rtol=rtol, atol=atol, dtype=dtype, step=o.step)
    phi0 = float(np.sum(u * y0))
    h_dir, v = o.step, v * np.maximum(1.0, np.abs(x))  # each entry moves by about step * max(1, |x_i|)

    if fast:
        probes = [(u, v)] + [_draw(rng, y0.shape, x, out_dtype) for _ in range(FAST_PROBES - 1)]
        results, vjp_val, jvp_val, veff = _fast(fn, x, y0, vjp_fn, jvp_fn, probes, out_dtype, h_dir, o)
        report.results.extend(results)
    else:
        vjp_val = None if vjp_fn is None else _numpy(vjp_fn(x, u.astype(out_dtype)))
        jvp_val, veff = None, v
        if vjp_val is not None:
            report.results.append(_vjp_entries("vjp", fn, vjp_val, x, u, phi0, rng, o))
        if jvp_fn is not None:
            res, jvp_val, veff = _jvp_entries(fn, jvp_fn, x, y0, v, h_dir, o)
            report.results.append(res)

    if vjp_val is not None and jvp_val is not None and vjp_val.shape == x.shape and jvp_val.shape == y0.shape:
        lhs = float(np.sum(jvp_val * u))
        rhs = float(np.sum(veff * vjp_val))
        report.results.append(_compare("adjoint", np.array(rhs), np.array(lhs), rtol, atol))

    if jac_fn is not None and axis is not None and jvp_val is not None and x.ndim > 0:
        report.results.append(_jacobian(jac_fn, x, axis, veff, jvp_val, rtol, atol))

    if params:
        report.results.extend(_param_checks(f, x, u, out_dtype, rng, o, fast))
    return report


def _np_dtypes(dtypes: list[Any]) -> list[np.dtype]:
    out = []
    for d in dtypes:
        try:
            out.append(np.dtype(d))
        except TypeError:  # a torch dtype (torch.float32): by its name
            tail = str(d).rsplit(".", 1)[-1]
            out.append(np.dtype(tail) if tail in ("float16", "float32", "float64") else np.dtype(np.float64))
    return out


def _jacobian(jac_fn: Callable, x: np.ndarray, axis: int, v: np.ndarray, jvp_val: np.ndarray, rtol: float,
              atol: float) -> CheckResult:
    ax = normalize_axis(axis, x.ndim)
    n = x.shape[ax]
    if x.size * n > JACOBIAN_MAX_ENTRIES:
        return CheckResult("jacobian", 0.0, 0.0, (), 0.0, 0.0, True,
                           f"skipped: the Jacobian would hold {x.size * n:,} entries (more than {JACOBIAN_MAX_ENTRIES:,})")
    jac = _numpy(jac_fn(x))
    if jac.shape != x.shape + (n,):
        return _shape_failure("jacobian", jac.shape, x.shape + (n,))
    rows = np.moveaxis(jac, ax, -2)
    jv = np.moveaxis(np.einsum("...ij,...j->...i", rows, np.moveaxis(v, ax, -1)), -1, ax)
    return _compare("jacobian", jv, jvp_val, rtol, atol)


def _layer_params(f: Any) -> dict[str, np.ndarray]:
    if isinstance(f, _layer_types()):
        return dict(f.params)
    return {}


def _param_checks(layer: Any, x: np.ndarray, u: np.ndarray, out_dtype: np.dtype, rng: np.random.Generator, o: _Opts,
                  fast: bool) -> list[CheckResult]:
    """One ``vjp <name>`` check per parameter of a layer: ``backward``'s ``grads[name]`` against differences."""
    results = []
    for pname, param in layer.params.items():
        saved = param.copy()

        def fn(theta: np.ndarray, param: np.ndarray = param) -> Any:
            param[...] = theta
            return layer.forward(x)

        def grad(theta: np.ndarray, g: Any, param: np.ndarray = param, pname: str = pname) -> np.ndarray:
            param[...] = theta
            layer.forward(x)
            layer.backward(g)
            return np.array(layer.grads[pname], dtype=np.float64)

        try:
            theta0 = saved.copy()
            y0 = _numpy(fn(theta0))
            if fast:
                probes = [_draw(rng, y0.shape, theta0, out_dtype) for _ in range(FAST_PROBES)]
                results.extend(_fast(fn, theta0, y0, grad, None, probes, out_dtype, o.step, o, f" {pname}")[0])
            else:
                got = grad(theta0, u.astype(out_dtype))
                results.append(_vjp_entries(f"vjp {pname}", fn, got, theta0, u, float(np.sum(u * y0)), rng, o))
        finally:
            param[...] = saved
            layer.forward(x)
    return results


def _draw(rng: np.random.Generator, y_shape: tuple[int, ...], x: np.ndarray, out_dtype: np.dtype,
          ) -> tuple[np.ndarray, np.ndarray]:
    """A random upstream ``u`` (representable in the output's dtype) and direction ``v`` (scaled per entry)."""
    u = rng.standard_normal(y_shape).astype(out_dtype).astype(np.float64)
    return u, rng.standard_normal(x.shape) * np.maximum(1.0, np.abs(x))
